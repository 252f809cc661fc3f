"""History retention against the real store, with a fake clock.

Runs are finished through the store's own statements (claim, complete, fail,
checkpoint, log), then the engine's retention pass is run at chosen moments of a
fake clock: what is due goes with everything recorded about it, what is not (a
longer retention, a dead letter, a run still active, a dead letter requeued) stays.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from tests import factories
from waypost.engine import history
from waypost.engine.clock import FakeClock
from waypost.engine.core import Engine
from waypost.model.enums import RequeueSpec, RunStatus
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.store import checkpoints, logs, runs, sql, tasks
from waypost.store.pool import RawJson

HOUR = 3600.0
DAY = 24 * HOUR
# Tables that hold something about a run, each keyed by run_id.
RECORDS = ("attempts", "checkpoints", "run_logs", "run_events")


@pytest.fixture
async def clock(db: asyncpg.Pool) -> FakeClock:
    # The store stamps finished_at with the database clock: start the fake one there.
    now: datetime = await db.fetchval("SELECT now()")
    return FakeClock(start=now)


@pytest.fixture
async def engine(database_url: str, clock: FakeClock) -> AsyncIterator[Engine]:
    # Batches of 2, so a pass needs several statements for what it removes.
    opened = await Engine.open(
        factories.settings(database_url, history_retention_batch=2), clock=clock,
        migrate_schema=False, pool_size=4)
    yield opened
    await opened.close()


async def _task(db: asyncpg.Pool, name: str, retain_for: str | None) -> None:
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello",
                                    "history": {"retainFor": retain_for}})
    await tasks.upsert(db, TaskDefinition(namespace="default", name=name, spec=spec))


async def _claim_all(db: asyncpg.Pool) -> dict[uuid.UUID, int]:
    claimed = await runs.claim(db, limit=100, lease_seconds=600, worker="test")
    return {c.run_id: c.claim_token for c in claimed}


async def _records(db: asyncpg.Pool, run_id: uuid.UUID) -> dict[str, int]:
    found = {t: await db.fetchval(f"SELECT count(*) FROM {t} WHERE run_id = $1", run_id)
             for t in RECORDS}
    found["runs"] = await db.fetchval("SELECT count(*) FROM runs WHERE id = $1", run_id)
    return found


async def _exists(db: asyncpg.Pool, *run_ids: uuid.UUID) -> list[bool]:
    return [await db.fetchval("SELECT count(*) FROM runs WHERE id = $1", r) == 1
            for r in run_ids]


async def test_retention_expires_due_runs_with_their_records_and_keeps_the_rest(
    db: asyncpg.Pool, engine: Engine, clock: FakeClock
) -> None:
    await _task(db, "short", "1h")
    await _task(db, "plain", None)  # the installation's default: 7 days
    short_ok, short_failed, *short_extra = [await factories.enqueue(db, "short")
                                            for _ in range(5)]
    plain_ok, dead, requeued = [await factories.enqueue(db, "plain") for _ in range(3)]
    tokens = await _claim_all(db)
    assert len(tokens) == 8
    # What a run records while it runs: a checkpoint and a log line.
    now = clock.now()
    assert await checkpoints.write(db, short_ok, tokens[short_ok], "step", RawJson('{"a": 1}'))
    assert await logs.append(db, short_ok, tokens[short_ok],
                             [(now, "info", "hello", {}, None)])
    acked = await runs.complete_many(
        db, [(r, tokens[r], RawJson("1")) for r in (short_ok, plain_ok, *short_extra)])
    assert len(acked) == 5
    assert await runs.finish_failed(db, short_failed, tokens[short_failed],
                                    error={"type": "error", "message": "x"},
                                    status=RunStatus.FAILED)
    for run_id in (dead, requeued):
        assert await runs.finish_failed(db, run_id, tokens[run_id],
                                        error={"type": "error", "message": "x"},
                                        status=RunStatus.DEAD_LETTERED)
    # Still active, whatever the clock says: one running, one queued.
    running = await factories.enqueue(db, "short")
    assert set(await _claim_all(db)) == {running}
    queued = await factories.enqueue(db, "short")
    before = await _records(db, short_ok)
    # (Log lines live in run_events since migration 0012; run_logs is the old table.)
    assert all(before[t] >= 1 for t in ("runs", "attempts", "checkpoints", "run_events")), before
    assert await db.fetchval("SELECT count(*) FROM run_events WHERE run_id = $1 AND kind = 'log'",
                             short_ok) == 1

    # Within every retention: nothing goes.
    clock.advance(30 * 60)
    assert await history.expire(engine) == {}

    # Past the hour of "short": its five finished runs go (three batches of 2), with
    # their attempts, checkpoints, logs and events; nothing else does.
    clock.advance(HOUR)
    assert await history.expire(engine) == {"succeeded": 4, "failed": 1}
    assert await _records(db, short_ok) == {t: 0 for t in (*RECORDS, "runs")}
    assert await _exists(db, short_failed, *short_extra) == [False] * 4
    assert await _exists(db, plain_ok, dead, requeued, queued, running) == [True] * 5

    # Past 7 days: the default retention takes "plain"'s succeeded run; the dead
    # letters stay (their own, longer retention), so do the active runs.
    clock.advance(7 * DAY)
    assert await history.expire(engine) == {"succeeded": 1}
    assert await _exists(db, plain_ok) == [False]
    assert await _exists(db, dead, requeued, queued, running) == [True] * 4

    # A person requeues one dead letter; past 30 days only the other one goes.
    assert await runs.requeue(db, requeued, RequeueSpec.ORIGINAL)
    clock.advance(23 * DAY)
    assert await history.expire(engine) == {"dead_lettered": 1}
    assert await _exists(db, dead, requeued, queued, running) == [False, True, True, True]
    assert await db.fetchval("SELECT status FROM runs WHERE id = $1", requeued) == "queued"
    # And a second pass finds nothing left to do.
    assert await history.expire(engine) == {}


async def test_zero_retentions_keep_history_forever(
    database_url: str, db: asyncpg.Pool, clock: FakeClock
) -> None:
    engine = await Engine.open(
        factories.settings(database_url, history_retain_seconds="0",
                           dead_letter_retain_seconds="0"),
        clock=clock, migrate_schema=False, pool_size=2)
    try:
        await _task(db, "plain", None)
        await _task(db, "short", "1h")
        kept, dead, gone = [await factories.enqueue(db, t) for t in ("plain", "plain", "short")]
        tokens = await _claim_all(db)
        assert len(await runs.complete_many(
            db, [(r, tokens[r], RawJson("1")) for r in (kept, gone)])) == 2
        assert await runs.finish_failed(db, dead, tokens[dead],
                                        error={"type": "error", "message": "x"},
                                        status=RunStatus.DEAD_LETTERED)
        clock.advance(365 * DAY)
        # A Task's own retention still applies; the installation keeps everything else.
        assert await history.expire(engine) == {"succeeded": 1}
        assert await _exists(db, kept, dead, gone) == [True, True, False]
    finally:
        await engine.close()


async def test_a_retention_pass_reads_only_what_is_due(
    db: asyncpg.Pool, engine: Engine, clock: FakeClock
) -> None:
    """The statement walks runs_expirable per Task: with a big kept history and one
    due run, it touches the due run's index entries, not the history it keeps."""
    await _task(db, "plain", None)
    await _task(db, "short", "1h")
    # 2,000 finished runs of "plain" (kept 7 days) and one of "short".
    ids = [uuid.uuid4() for _ in range(2000)]
    assert await runs.enqueue_bulk(
        db, namespace="default", task="plain", run_ids=ids, priorities=[None] * len(ids),
        payloads=[RawJson("{}")] * len(ids), idempotency_keys=[None] * len(ids),
        concurrency_keys=[None] * len(ids), trace_ids=["0" * 32] * len(ids),
        source="test") == len(ids)
    due = await factories.enqueue(db, "short")
    while claimed := await runs.claim(db, limit=500, lease_seconds=600, worker="t"):
        await runs.complete_many(db, [(c.run_id, c.claim_token, RawJson("1")) for c in claimed])
    await db.execute("ANALYZE runs")
    clock.advance(2 * HOUR)
    statement = sql.statement("expire_finished_runs")
    # EXPLAIN ANALYZE runs the statement: this is the retention pass itself.
    plan = _decoded(await db.fetchval(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + statement.text,
        *statement.args({"now": clock.now(),
                         "default_seconds": engine.settings.history_retain_seconds,
                         "batch": 1000})))
    assert await _exists(db, due) == [False]
    assert await db.fetchval("SELECT count(*) FROM runs") == len(ids)
    scans = [s for s in _scans(plan[0]["Plan"]) if s.get("Relation Name") == "runs"]
    expirable = [s for s in scans if "runs_expirable" in _indexes(s)]
    # One probe of runs_expirable per Task, as an index scan or (a small table: the
    # planner's choice) a bitmap scan of it; the kept history of "plain" is not read.
    assert len(expirable) == 1 and expirable[0]["Actual Loops"] == 2, scans
    assert sum(int(s["Actual Rows"]) * int(s["Actual Loops"]) for s in expirable) <= 1
    assert all(s["Node Type"] != "Seq Scan" for s in scans), [
        (s["Node Type"], s.get("Index Name"), s.get("Actual Rows"), s.get("Actual Loops"))
        for s in scans]


def _decoded(value: Any) -> Any:
    # The pool decodes json results already; a plain connection would not.
    return json.loads(value) if isinstance(value, str) else value


def _indexes(scan: dict[str, Any]) -> set[str]:
    """The indexes a scan of a relation reads: its own, or its bitmap's."""
    found = {scan["Index Name"]} if "Index Name" in scan else set()
    for child in scan.get("Plans", []):
        if child["Node Type"].startswith("Bitmap"):
            found |= _indexes(child)
    return found


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if "Relation Name" in node else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found
