"""Attempt events folded into status rows (migration 0025) on a real Postgres.

The claim's `status: running` row carries the attempt's start and a success's
`status: succeeded` row the attempt's end. The readers give back every event with
a cursor of its own, in the order they were written, and a read resumed from any
event's cursor gets exactly the events after it, whatever the page size."""

from __future__ import annotations

import uuid

import asyncpg

from tests.factories import enqueue, register_task
from waypost.engine.metrics import BYTES_BUCKETS, SECONDS_BUCKETS
from waypost.sdk.tracing import trace_sampler
from waypost.store import events, runs, telemetry
from waypost.store.events import Cursor, Event
from waypost.store.pool import RawJson

MEMORY = 512 * 1024 * 1024


async def drain_with_one_retry(db: asyncpg.Pool, n: int) -> list[uuid.UUID]:
    """``n`` runs claimed together (one statement folds several rows), each failing
    its first attempt, claimed together again and completed together."""
    await register_task(db)
    run_ids = [await enqueue(db) for _ in range(n)]
    first = await runs.claim(db, limit=n, lease_seconds=60, worker="w1")
    assert sorted(c.run_id for c in first) == sorted(run_ids)
    for c in first:
        assert await runs.retry(db, c.run_id, c.claim_token, delay_seconds=0,
                                error={"type": "error", "message": "boom"}, memory_bytes=MEMORY)
    second = await runs.claim(db, limit=n, lease_seconds=60, worker="w2")
    assert sorted(c.run_id for c in second) == sorted(run_ids)
    acked = await runs.complete_many(
        db, [(c.run_id, c.claim_token, RawJson(f'{{"n": {i}}}')) for i, c in enumerate(second)])
    assert sorted(acked) == sorted(run_ids)
    return run_ids


def shape(found: list[Event]) -> list[tuple[str, object, int | None]]:
    return [(e.kind, e.data.get("status"), e.attempt) for e in found]


async def test_folded_attempt_events_read_back_in_order_with_cursors_of_their_own(
    db: asyncpg.Pool,
) -> None:
    run_ids = await drain_with_one_retry(db, 4)
    everyone, _ = await events.everyone_after(db, events.START, run_ids=run_ids, limit=1000)
    cursors = [e.cursor for e in everyone]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    for i, run_id in enumerate(run_ids):
        found, _ = await events.for_run(db, run_id, events.START)
        assert found == [e for e in everyone if e.run_id == run_id]
        assert shape(found) == [
            ("status", "queued", 0),
            ("status", "running", 1), ("attempt_started", None, 1),
            ("attempt_finished", "failed", 1), ("status", "retrying", 1),
            ("status", "running", 2), ("attempt_started", None, 2),
            ("attempt_finished", "succeeded", 2), ("status", "succeeded", 2),
        ]
        # Each folded event sits right beside the row it came in, in its transaction.
        assert found[2].cursor == Cursor(found[1].cursor.tx, found[1].cursor.id + 1)
        assert found[7].cursor == Cursor(found[8].cursor.tx, found[8].cursor.id - 1)
        # The data is what the attempt rows' own events held, and only that.
        assert found[1].data == {"status": "running", "previous": "queued"}
        # (a run running again still shows its last attempt's error, as before)
        assert found[5].data == {"status": "running", "previous": "retrying",
                                 "error": {"type": "error", "message": "boom"}}
        assert found[2].data["worker"] == "w1" and found[6].data["worker"] == "w2"
        for started in (found[2], found[6]):
            assert set(started.data) == {"memoryBytes", "worker", "queueWaitMs"}
            assert started.data["queueWaitMs"] >= 0
        assert set(found[7].data) == {"status", "memoryBytes", "durationMs"}
        assert found[7].data["memoryBytes"] == found[6].data["memoryBytes"]
        assert found[8].data["previous"] == "running"
        assert set(found[8].data) == {"status", "previous", "result"}
        assert found[8].data["result"] in ({"n": j} for j in range(len(run_ids)))
        assert found[3].ts == found[4].ts and found[7].ts == found[8].ts  # one transaction
        # Resumed from any event, a read gets exactly the events after it.
        for j, e in enumerate(found):
            rest, _ = await events.for_run(db, run_id, e.cursor)
            assert rest == found[j + 1:], (i, j)
        starts, _ = await events.for_run(db, run_id, events.START, kinds=["attempt_started"])
        assert starts == [found[2], found[6]]
        ends, _ = await events.for_run(db, run_id, events.START, kinds=["attempt_finished"])
        assert ends == [found[3], found[7]]
        statuses, _ = await events.for_run(db, run_id, events.START, kinds=["status"])
        assert statuses == [e for e in found if e.kind == "status"]
    # Every page size reads the same log, each event once.
    for limit in (1, 2, 3, 7):
        paged: list[Event] = []
        cursor = events.START
        while True:
            page, cursor = await events.everyone_after(db, cursor, run_ids=run_ids, limit=limit)
            if not page:
                break
            paged.extend(page)
        assert paged == everyone, limit
    # What is stored: no attempt start, and an attempt end only for the failure.
    stored = await db.fetch(
        "SELECT kind, count(*) AS n FROM waypost.run_events WHERE run_id = ANY($1) "
        "GROUP BY kind", run_ids)
    assert {r["kind"]: r["n"] for r in stored} == {"status": 5 * len(run_ids),
                                                   "attempt_finished": len(run_ids)}


async def test_the_leaders_pages_unfold_the_attempt_events(db: asyncpg.Pool) -> None:
    run_ids = await drain_with_one_retry(db, 3)
    n = len(run_ids)

    async def read(limit: int) -> tuple[dict[tuple[str, str | None], int],
                                         list[telemetry.Signal]]:
        sums: dict[tuple[str, str | None], int] = {}
        spans: list[telemetry.Signal] = []
        cursor = events.START
        while True:
            page = await telemetry.page_after(db, cursor, limit=limit,
                                              spans=trace_sampler({}),
                                              second_bounds=SECONDS_BUCKETS,
                                              byte_bounds=BYTES_BUCKETS)
            for t in page.tallies:
                sums[t.series, t.label] = sums.get((t.series, t.label), 0) + t.n
            spans.extend(telemetry.decode_spans(page.spans))
            if page.events < limit:
                return sums, spans
            assert page.cursor > cursor
            cursor = page.cursor

    sums, spans = await read(2000)
    assert sums[("attempts", "succeeded")] == n and sums[("attempts", "error")] == n
    assert sums[("attempt_duration", "succeeded")] == n
    assert sums[("queue_wait", None)] == 2 * n  # both attempts' starts, folded
    assert sums[("finished", "succeeded")] == n and sums[("retries", None)] == n
    cursors = [s.cursor for s in spans]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    for run_id in run_ids:
        mine = [(s.kind, s.status, s.attempt) for s in spans if s.run_id == run_id]
        assert mine == [("attempt_started", None, 1), ("attempt_started", None, 2),
                        ("status", "succeeded", 2)]
    assert all(s.available_at is not None and s.available_at <= s.ts
               for s in spans if s.kind == "attempt_started")
    # Pages cut anywhere, even between a row and the event folded into it, add up
    # to the same.
    for limit in (1, 2, 5):
        assert await read(limit) == (sums, spans), limit
