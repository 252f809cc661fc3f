"""Priority bumps and idempotency keys, through the engine and the HTTP API.

Runs are claimed by a real ``Dispatcher`` with one slot on the in-memory backend
of ``test_queue_limits`` (it completes attempts through ``attempts.complete``),
so the order in which runs start is exactly the claim order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.factories import InMemoryBackend, register_task, settings, wait_for_status
from waypost.engine import control
from waypost.engine.dispatcher import Dispatcher
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.sdk.client import WaypostClient
from waypost.sdk.errors import WaypostAPIError
from waypost.standalone import Standalone


async def post(url: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Standalone]:
    """Engine and coordinator over HTTP, without a dispatcher: the test starts one."""
    app = await Standalone(settings(database_url), dispatch=False).start()
    try:
        yield app
    finally:
        await app.stop()


async def test_bumped_runs_start_before_older_lower_priority_runs(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    await register_task(db, "ordered")
    engine = stack.engine
    older = [(await control.trigger(engine, "default", "ordered", TriggerRequest()))[0].id
             for _ in range(4)]
    by_engine, _ = await control.trigger(engine, "default", "ordered", TriggerRequest())
    by_http, _ = await control.trigger(engine, "default", "ordered", TriggerRequest(priority=-5))

    bumped = await control.bump(engine, uuid.UUID(by_engine.id))
    assert bumped.priority == 1  # one above the highest waiting priority (0)
    status, body = await post(f"{stack.url}/v1/runs/{by_http.id}/bump")
    assert status == 200, body
    assert body["id"] == by_http.id and body["priority"] == 2

    backend = InMemoryBackend(engine, slots=1, work_seconds=0.01)
    dispatcher = Dispatcher(engine, backend)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop().create_task(dispatcher.run(stop))
    try:
        expected = [by_http.id, by_engine.id, *older]
        for run_id in expected:
            await wait_for_status(engine, run_id, {RunStatus.SUCCEEDED}, timeout=30)
    finally:
        stop.set()
        await loop
        await backend.close()

    assert [str(r) for r in backend.started] == expected
    rows = await db.fetch("SELECT id::text FROM runs ORDER BY started_at, seq")
    assert [r["id"] for r in rows] == expected
    starts = await db.fetch("SELECT started_at FROM runs ORDER BY started_at")
    assert len({r["started_at"] for r in starts}) == len(expected)  # one at a time

    # A run that is no longer waiting cannot be bumped; the answer says why.
    status, body = await post(f"{stack.url}/v1/runs/{by_http.id}/bump")
    assert status == 409
    error = body["error"]
    assert error["code"] == "invalid_state" and "succeeded" in error["message"]


async def test_same_idempotency_key_twice_is_one_run(stack: Standalone, db: asyncpg.Pool) -> None:
    await register_task(db, "ordered")
    url = f"{stack.url}/v1/tasks/default/ordered/trigger"
    body = {"payload": {"orderId": "o-42"}, "idempotencyKey": "order-42"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as first:
            assert first.status == 201, await first.text()
            created = await first.json()
        # The same request again (keys in another order): the same run.
        async with http.post(url, data=b'{"idempotencyKey": "order-42", "payload": '
                             b'{"orderId": "o-42"}}',
                             headers={"Content-Type": "application/json"}) as second:
            assert second.status == 200, await second.text()
            repeated = await second.json()
        assert repeated["id"] == created["id"]
        assert repeated["payload"] == {"orderId": "o-42"}

        # The key with another payload, priority or concurrency key: a conflict that
        # names the run holding the key, and the new payload is not silently dropped.
        for change, named in (({"payload": {"orderId": "different"}}, "payload"),
                              ({"priority": 7}, "priority (7, the run has 0)"),
                              ({"concurrencyKey": "tenant-1"}, "concurrencyKey")):
            async with http.post(url, json={**body, **change}) as conflict:
                assert conflict.status == 409, await conflict.text()
                error = (await conflict.json())["error"]
            assert error["code"] == "idempotency_conflict"
            assert error["runId"] == created["id"]
            assert error["message"] == (
                f"idempotency key 'order-42' belongs to run {created['id']}, triggered with a "
                f'different {named}; use a new key, or "idempotencyConflict": '
                '"returnExisting" to get that run')
        # Opting in returns the existing run as it is.
        async with http.post(url, json={**body, "payload": {"orderId": "different"},
                                        "idempotencyConflict": "returnExisting"}) as opted:
            assert opted.status == 200, await opted.text()
            existing = await opted.json()
        assert existing["id"] == created["id"] and existing["payload"] == {"orderId": "o-42"}
        # The SDK client: the same two ways.
        async with WaypostClient(stack.url) as client:
            with pytest.raises(WaypostAPIError) as refused:
                await client.trigger("ordered", {"orderId": "sdk"}, idempotency_key="order-42")
            assert refused.value.status == 409 and refused.value.code == "idempotency_conflict"
            handle = await client.trigger("ordered", {"orderId": "sdk"},
                                          idempotency_key="order-42", return_existing=True)
            assert handle.id == created["id"] and not handle.created

        # Ten triggers at once with a fresh key: one creates, nine find it.
        racing = {"payload": None, "idempotencyKey": "race"}

        async def trigger() -> tuple[int, str]:
            async with http.post(url, json=racing) as resp:
                return resp.status, (await resp.json())["id"]

        results = await asyncio.gather(*[trigger() for _ in range(10)])
        # Without a key every trigger is a new run.
        async with http.post(url, json={"payload": None}) as plain:
            assert plain.status == 201

    assert sorted(status for status, _ in results) == [200] * 9 + [201]
    assert len({run_id for _, run_id in results}) == 1
    assert await db.fetchval(
        "SELECT count(*) FROM runs WHERE idempotency_key = 'order-42'") == 1
    assert await db.fetchval("SELECT count(*) FROM runs WHERE idempotency_key = 'race'") == 1
    assert await db.fetchval("SELECT count(*) FROM runs") == 3
    assert await db.fetchval("SELECT count(*) FROM run_queue") == 3

    # The key is scoped to (namespace, task): another task may use it.
    await register_task(db, "other")
    run, created_again = await control.trigger(
        stack.engine, "default", "other", TriggerRequest(idempotency_key="order-42"))
    assert created_again and run.id != created["id"]
