"""Batch triggers, delayed runs and TTLs over HTTP against real Postgres (issue 13).

What is checked: a batch of 1,000 with 3 duplicate idempotency keys stores 997
runs in one go and answers every item in order; a bad item (or too many items,
or an unknown task) refuses the whole batch, names the item, and stores nothing;
a delayed run waits outside the hot table, is rescheduled and then runs in a real
runner process; a run past its ttl ends expired and never runs; bad delays and
ttls are refused with 400 naming the field.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from examples import hello
from tests.factories import api_only, example_stack, wait_for_status
from waypost.engine import control, waits
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.sdk.client import TriggerItem, WaypostClient
from waypost.sdk.errors import WaypostAPIError


async def _count(db: asyncpg.Pool, sql: str) -> int:
    value: int = await db.fetchval(sql)
    return value


async def test_batch_of_1000_with_three_duplicate_keys(database_url: str, db: asyncpg.Pool) -> None:
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        await app.register(hello.hello)
        items = [TriggerItem(payload={"name": f"n{i}"}, idempotency_key=f"k{i}",
                             priority=i % 3, concurrency_key=f"tenant-{i % 7}")
                 for i in range(997)]
        # Three items repeat keys of earlier ones (k0, k1, k2).
        items += [TriggerItem(payload={"name": f"dup{i}"}, idempotency_key=f"k{i}")
                  for i in range(3)]
        started = time.perf_counter()
        answer = await client.batch_trigger("hello", items)
        elapsed = time.perf_counter() - started
        assert len(answer) == 1000
        assert sum(r.new for r in answer) == 997
        for i in range(3):
            assert answer[997 + i].new is False
            assert answer[997 + i].id == answer[i].id
        assert len({r.id for r in answer}) == 997
        assert await _count(db, "SELECT count(*) FROM waypost.runs") == 997
        assert await _count(db, "SELECT count(*) FROM waypost.run_queue") == 997
        # Each item's own priority and concurrency key were stored.
        row = await db.fetchrow("SELECT priority, concurrency_key, payload FROM waypost.runs "
                                "WHERE id = $1", uuid.UUID(answer[5].id))
        assert (row["priority"], row["concurrency_key"]) == (2, "tenant-5")
        # The same batch again: nothing new, same runs in the same order.
        again = await client.batch_trigger("hello", items)
        assert [r.id for r in again] == [r.id for r in answer]
        assert not any(r.new for r in again)
        assert await _count(db, "SELECT count(*) FROM waypost.runs") == 997
    assert elapsed < 30


@pytest.mark.parametrize(("items", "status", "needle"), [
    ([{"payload": 1}] * 3 + [{"payload": 1, "priority": 5000}], 400, "items.3.priority"),
    ([{"payload": 1}, {"payload": 1, "delay": -1}], 400, "items.1.delay"),
    ([{"payload": 1}, {"payload": 1, "ttl": 0}], 400, "items.1"),
    ([{"payload": 1}, {"payload": 1, "ttl": "5m"}], 400, "items.1.ttl"),
    ([{"payload": 1}, {"payload": 1, "delay": 1, "runAt": "2030-01-01T00:00:00Z"}], 400,
     "items.1"),
    ([{"payload": 1}] * 1001, 400, "items"),
    ([], 400, "items"),
    ([{"payload": 1}, {"payload": "x" * 600_000}], 413, "items[1].payload"),
])
async def test_bad_batch_stores_nothing(
    database_url: str, db: asyncpg.Pool, items: list[dict[str, object]], status: int,
    needle: str,
) -> None:
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        await app.register(hello.hello)
        with pytest.raises(WaypostAPIError) as refused:
            await client.batch_trigger("hello", items)
        assert refused.value.status == status
        assert needle in refused.value.message
    assert await _count(db, "SELECT count(*) FROM waypost.runs") == 0


async def test_batch_of_unknown_task_is_404(database_url: str, db: asyncpg.Pool) -> None:
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        with pytest.raises(WaypostAPIError) as refused:
            await client.batch_trigger("nope", [TriggerItem(payload=1)])
        assert refused.value.status == 404
        assert "nope" in refused.value.message
    assert await _count(db, "SELECT count(*) FROM waypost.runs") == 0


async def test_delay_then_reschedule_runs_it(
    database_url: str, db: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch) as app, \
            WaypostClient(app.url) as client:
        handle = await client.trigger("hello", {"name": "later"}, delay="1h", ttl="2h")
        assert handle.status == "delayed"
        run = await client.get_run(handle.id)
        assert run["waiting"]["kind"] == "delay"
        # A delayed run is not in the hot table: the claim scan never sees it.
        assert await _count(db, "SELECT count(*) FROM waypost.run_queue") == 0
        await asyncio.sleep(1.0)
        assert (await client.get_run(handle.id))["status"] == "delayed"
        listed = await client.list_runs(status="delayed")
        assert [r["id"] for r in listed] == [handle.id]
        moved = await client.reschedule(handle.id, delay=0)
        assert moved["id"] == handle.id
        done = await wait_for_status(app.engine, handle.id, {RunStatus.SUCCEEDED}, timeout=60)
        assert done.result == {"greeting": "Hello, later!", "attempt": 1}
        # Rescheduling a run that is no longer delayed is refused.
        with pytest.raises(WaypostAPIError) as refused:
            await client.reschedule(handle.id, delay="5m")
        assert refused.value.status == 409


async def test_cancel_a_delayed_run(database_url: str) -> None:
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        await app.register(hello.hello)
        handle = await client.trigger("hello", None, run_at=datetime(2099, 1, 1, tzinfo=UTC))
        cancelled = await client.cancel(handle.id)
        assert cancelled["status"] == "cancelled"
        assert await waits.Waker(app.engine).pass_once() == (0, 0)
        assert (await client.get_run(handle.id))["status"] == "cancelled"


async def test_ttl_expiry_never_runs(database_url: str, db: asyncpg.Pool) -> None:
    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        await app.register(hello.hello)
        short = await client.trigger("hello", {"name": "short"}, ttl=0.5)
        # The ttl counts from the end of the delay: expires 0.5 s after the trigger.
        delayed = await client.trigger("hello", {"name": "d"}, delay=0.1, ttl=0.4)
        long = await client.trigger("hello", {"name": "long"}, ttl="1h")
        await asyncio.sleep(0.8)
        waker = waits.Waker(app.engine)
        woken, expired = await waker.pass_once()
        assert expired == 2
        for handle in (short, delayed):
            run = await control.get(app.engine, uuid.UUID(handle.id), details=True)
            assert run.status is RunStatus.EXPIRED
            assert run.error is not None and run.error.type == "expired"
            assert run.attempts == []
        assert (await client.get_run(long.id))["status"] == "queued"
        # Expired runs left the hot table; only the long one is claimable.
        assert await _count(db, "SELECT count(*) FROM waypost.run_queue") == 1
        counted = await client.list_runs(status="expired")
        assert {r["id"] for r in counted} == {short.id, delayed.id}
        del woken


@pytest.mark.parametrize(("body", "needle"), [
    ({"delay": -5}, "delay"),
    ({"delay": "soon"}, "delay"),
    ({"delay": 400 * 86400}, "delay"),
    ({"ttl": 0}, "ttl"),
    ({"ttl": -1}, "ttl"),
    ({"runAt": "2030-01-01T00:00:00"}, "runAt"),
    ({"delay": 5, "runAt": "2030-01-01T00:00:00Z"}, "runAt"),
    ({"delay": True}, "delay"),
    ({"delay": "10m"}, "delay"),
    ({"runAt": 1893456000}, "runAt"),
    ({"runAt": "2030-01-01"}, "runAt"),
])
async def test_bad_timing_is_refused(
    database_url: str, db: asyncpg.Pool, body: dict[str, object], needle: str
) -> None:
    async with api_only(database_url) as app:
        await app.register(hello.hello)
        async with aiohttp.ClientSession() as http, http.post(
                f"{app.url}/v1/tasks/default/hello/trigger", json=body) as resp:
            answer = await resp.json()
            assert resp.status == 400, answer
        assert needle in answer["error"]["message"]
    assert await _count(db, "SELECT count(*) FROM waypost.runs") == 0


async def test_trigger_request_with_delay_in_engine(database_url: str) -> None:
    async with api_only(database_url) as app:
        await app.register(hello.hello)
        run, created = await control.trigger(
            app.engine, "default", "hello",
            TriggerRequest(payload=None, delay=30, idempotency_key="once"))
        again, created_again = await control.trigger(
            app.engine, "default", "hello",
            TriggerRequest(payload=None, delay=30, idempotency_key="once"))
        assert created and not created_again
        assert again.id == run.id and run.status is RunStatus.DELAYED
        assert run.waiting is not None and run.waiting.until is not None


async def test_ttl_never_expires_a_run_that_started(database_url: str, db: asyncpg.Pool) -> None:
    """A run that started and waits to be retried is past its ttl's reach: the expiry
    drops its ttl row and leaves the run (and its hot row) alone."""
    from waypost.store import runs as store_runs

    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        await app.register(hello.hello)
        handle = await client.trigger("hello", None, ttl=0.3)
        (claimed,) = await store_runs.claim(db, limit=1, lease_seconds=60, worker="t")
        assert await store_runs.retry(db, claimed.run_id, claimed.claim_token,
                                      delay_seconds=0, error={"type": "error", "message": "x"},
                                      memory_bytes=claimed.memory_bytes)
        await asyncio.sleep(0.5)
        assert await waits.Waker(app.engine).pass_once() == (0, 0)
        assert (await client.get_run(handle.id))["status"] == "retrying"
        assert await _count(db, "SELECT count(*) FROM waypost.run_queue") == 1
        assert await _count(db, "SELECT count(*) FROM waypost.run_ttls") == 0


async def test_a_former_leader_wakes_and_expires_nothing(database_url: str,
                                                        db: asyncpg.Pool) -> None:
    """The waker is fenced on the leader epoch like the dispatcher: a replica whose
    epoch was superseded (frozen, partitioned) neither resumes nor expires runs; the
    current leader does both."""
    from waypost.store import leadership

    async with api_only(database_url) as app, WaypostClient(app.url) as client:
        await app.register(hello.hello)
        delayed = await client.trigger("hello", None, delay=0.1)
        doomed = await client.trigger("hello", None, ttl=0.2)
        await asyncio.sleep(0.5)  # both due now
        assert await leadership.record_epoch(db, 1, "replica-a")
        assert await leadership.record_epoch(db, 2, "replica-b")
        app.engine.leader_epoch = 1
        assert await waits.Waker(app.engine).pass_once() == (0, 0)
        assert (await client.get_run(delayed.id))["status"] == "delayed"
        assert (await client.get_run(doomed.id))["status"] == "queued"
        assert await _count(db, "SELECT count(*) FROM waypost.run_waits") == 1
        assert await _count(db, "SELECT count(*) FROM waypost.run_ttls") == 1
        app.engine.leader_epoch = 2
        assert await waits.Waker(app.engine).pass_once() == (1, 1)
        assert (await client.get_run(delayed.id))["status"] == "queued"
        assert (await client.get_run(doomed.id))["status"] == "expired"
        # A run due after the new leader's pass: the deposed replica leaves it too.
        later = await client.trigger("hello", None, delay=0.1)
        await asyncio.sleep(0.3)
        app.engine.leader_epoch = 1
        assert await waits.Waker(app.engine).pass_once() == (0, 0)
        assert (await client.get_run(later.id))["status"] == "delayed"


async def test_a_delayed_or_ttl_trigger_joins_the_callers_trace(
    database_url: str, db: asyncpg.Pool
) -> None:
    """A traceparent makes the run a child of the caller's span with a delay, runAt or
    ttl too (those take the batch enqueue, not the plain trigger's statement)."""
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with api_only(database_url) as app:
        await app.register(hello.hello)
        made = []
        for request, flags in ((TriggerRequest(payload={}, delay=3600), "01"),
                               (TriggerRequest(payload={}, ttl=3600), "00")):
            run, created = await control.trigger(
                app.engine, "default", "hello", request,
                traceparent=f"00-{trace_id}-{span_id}-{flags}")
            assert created
            made.append(run.id)
        plain, _ = await control.trigger(app.engine, "default", "hello",
                                         TriggerRequest(payload={}, delay=3600))
    rows = {str(r["id"]): r for r in await db.fetch(
        "SELECT id, status, trace_id, parent_span_id, parent_sampled FROM waypost.runs")}
    delayed, ttl = rows[str(made[0])], rows[str(made[1])]
    assert delayed["status"] == "delayed" and ttl["status"] == "queued"
    assert (delayed["trace_id"], delayed["parent_span_id"], delayed["parent_sampled"]) == (
        trace_id, span_id, True)
    assert (ttl["trace_id"], ttl["parent_span_id"], ttl["parent_sampled"]) == (
        trace_id, span_id, False)
    # Without one, its trace starts here.
    assert rows[str(plain.id)]["trace_id"] != trace_id
    assert rows[str(plain.id)]["parent_span_id"] is None
