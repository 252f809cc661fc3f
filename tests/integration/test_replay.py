"""POST /v1/runs/{id}/replay against a real coordinator, runner processes and Postgres:
resume after the chosen checkpoint with edited input, the audit record on both runs,
and bad input that creates nothing."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from examples import flaky, ledger, orders
from tests.factories import example_stack, wait_for_status
from waypost.model import from_sdk
from waypost.model.enums import RunStatus
from waypost.standalone import Standalone
from waypost.store import tasks

CHECKPOINT_LIMIT = 4096


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch,
                             limits={"checkpoint_bytes": CHECKPOINT_LIMIT}) as app:
        yield app


async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, json=body) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def finished_order(stack: Standalone, order_id: str = "o-1") -> str:
    status, run = await call("POST", f"{stack.url}/v1/tasks/default/process-order/trigger",
                             {"payload": {"orderId": order_id, "failPaymentOnAttempts": [1]}})
    assert status == 201
    await wait_for_status(stack.engine, run["id"], {RunStatus.SUCCEEDED})
    return str(run["id"])


def effects(run_id: str) -> Counter[str]:
    return Counter(e["effect"] for e in ledger.read(os.environ[ledger.LEDGER_ENV])
                   if e["run"] == run_id)


async def test_replay_resumes_after_the_checkpoint_with_edited_state(
    stack: Standalone,
) -> None:
    original = await finished_order(stack)
    status, replay = await call("POST", f"{stack.url}/v1/runs/{original}/replay", {
        "fromCheckpoint": "order-fetched",
        "payload": {"orderId": "o-1", "note": "replayed"},
        "checkpoints": {"order-fetched": {"id": "o-edited", "amountCents": 99, "items": []}},
    })
    assert status == 201, replay
    assert replay["replayOf"] == original and replay["source"] == "replay"
    assert replay["status"] == "queued" and replay["payload"]["note"] == "replayed"
    done = await wait_for_status(stack.engine, replay["id"], {RunStatus.SUCCEEDED})
    # The fetch did not run again: the replay resumed after the copied, edited checkpoint.
    assert effects(replay["id"]) == Counter({"charge": 1, "decrement_inventory": 1})
    assert done.result["orderId"] == "o-edited" and done.attempt == 1
    assert done.checkpoints is not None
    assert [(c.key, c.attempt) for c in done.checkpoints] == [
        ("order-fetched", 0), ("payment-complete", 1)]
    assert done.checkpoints[0].data == {"id": "o-edited", "amountCents": 99, "items": []}

    _, first = await call("GET", f"{stack.url}/v1/runs/{original}")
    _, second = await call("GET", f"{stack.url}/v1/runs/{replay['id']}")
    assert [r["runId"] for r in first["replays"]] == [replay["id"]]
    record = second["replay"]
    assert record == first["replays"][0]
    assert record["replayOf"] == original and record["fromCheckpoint"] == "order-fetched"
    assert record["requestedBy"] == "anonymous" and record["spec"] == "current"
    payload_ops = {(op["op"], op["path"]) for op in record["diff"]["payload"]}
    assert payload_ops == {("remove", "/failPaymentOnAttempts"), ("add", "/note")}
    checkpoint_ops = {op["path"]: op.get("value")
                      for op in record["diff"]["checkpoints"]["order-fetched"]}
    assert checkpoint_ops["/id"] == "o-edited" and checkpoint_ops["/amountCents"] == 99
    assert first["replay"] is None and second["replays"] == []

    # The replay is in both runs' event logs.
    for run_id in (original, replay["id"]):
        async with aiohttp.ClientSession() as http, http.get(
                f"{stack.url}/v1/runs/{run_id}/logs") as resp:
            assert resp.status == 200
        events = await stack.engine.pool.fetch(
            "SELECT data FROM run_events WHERE run_id = $1 AND kind = 'replay'",
            uuid.UUID(run_id))
        assert [e["data"]["replayRun"] for e in events] == [replay["id"]]


async def test_replay_from_scratch_with_the_original_spec_and_an_idempotency_key(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    original = await finished_order(stack, "o-2")
    # The Task changes after the run: more memory.
    changed = from_sdk.task_definition(orders.process_order.definition, namespace="default")
    bigger = changed.model_copy(update={"spec": changed.spec.model_copy(update={
        "resources": changed.spec.resources.model_copy(update={"memory": "512Mi"})})})
    await tasks.upsert(db, bigger)
    url = f"{stack.url}/v1/runs/{original}/replay"
    status, as_before = await call("POST", url, {"spec": "original",
                                                 "idempotencyKey": "again-1"})
    assert status == 201 and as_before["memoryBytes"] == 256 * 1024 * 1024
    status, same = await call("POST", url, {"spec": "original", "idempotencyKey": "again-1"})
    assert status == 200 and same["id"] == as_before["id"]
    status, current = await call("POST", url, {})
    assert status == 201 and current["memoryBytes"] == 512 * 1024 * 1024
    done = await wait_for_status(stack.engine, as_before["id"], {RunStatus.SUCCEEDED,
                                                                 RunStatus.RETRYING})
    # From scratch with the original payload: the fetch runs again.
    await wait_for_status(stack.engine, done.id, {RunStatus.SUCCEEDED})
    assert effects(as_before["id"])["fetch_order"] == 1
    _, first = await call("GET", f"{stack.url}/v1/runs/{original}")
    assert [r["runId"] for r in first["replays"]] == [as_before["id"], current["id"]]
    assert first["replays"][0]["diff"] == {} and first["replays"][0]["fromCheckpoint"] is None


async def counts(db: asyncpg.Pool) -> tuple[int, int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM run_replays) AS r,"
        " (SELECT count(*) FROM checkpoints) AS c")
    return row["runs"], row["r"], row["c"]


async def test_bad_replays_are_refused_and_create_nothing(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    original = await finished_order(stack, "o-3")
    await stack.register(flaky.sleepy)
    before = await counts(db)
    url = f"{stack.url}/v1/runs/{original}/replay"
    big = {"blob": "x" * CHECKPOINT_LIMIT}
    cases: list[tuple[str, Any, int, str]] = [
        # Well-formed, but not what this run holds: 409 (schemathesis counts a 400 for a
        # schema-valid body as a bug).
        (url, {"fromCheckpoint": "no-such-key"}, 409, "fromCheckpoint"),
        (url, {"fromCheckpoint": "order-fetched",
               "checkpoints": {"payment-complete": {}}}, 409, "checkpoints.payment-complete"),
        (url, {"checkpoints": {"order-fetched": {}}}, 409, "checkpoints.order-fetched"),
        (url, {"fromCheckpoint": "a\u0000b"}, 400, "fromCheckpoint"),
        (url, {"payload": {"k": "\ud800"}}, 400, "payload"),
        (url, {"fromCheckpoint": "order-fetched", "checkpoints": {"order-fetched": big}},
         413, "checkpoints.order-fetched"),
        (url, {"spec": "newest"}, 400, "spec"),
        (url, {"fromCheckpoint": ""}, 400, "fromCheckpoint"),
        (url, {"unknownField": 1}, 400, "unknownField"),
        (f"{stack.url}/v1/runs/00000000-0000-0000-0000-000000000000/replay", {}, 404, "no run"),
        (f"{stack.url}/v1/runs/nope/replay", {}, 400, "run id"),
    ]
    for target, body, want, words in cases:
        status, answer = await call("POST", target, body)
        assert status == want, (body, answer)
        assert words in answer["error"]["message"], (body, answer)
    # A run still queued or running (it sleeps 3 s) cannot be replayed.
    status, active = await call("POST", f"{stack.url}/v1/tasks/default/sleepy/trigger",
                                {"payload": {"seconds": 3}})
    status, answer = await call("POST", f"{stack.url}/v1/runs/{active['id']}/replay", {})
    assert status == 409 and "only a finished run" in answer["error"]["message"]
    before = (before[0] + 1, before[1], before[2])  # the sleepy run itself
    async with aiohttp.ClientSession() as http, http.post(
            url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    assert await counts(db) == before
