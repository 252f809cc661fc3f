"""Queue limits under load: maxConcurrency and the per-key limit, with two dispatchers.

Two ``Dispatcher`` instances, each over its own ``Engine`` (its own connection
pool, as two operator processes would have), claim from the same database at
once. Attempts run on ``InMemoryBackend``: an ``ExecutionBackend`` that does not
start a process but sleeps briefly and then completes the attempt through
``engine.attempts.complete`` (the same fenced call the runner's HTTP completion
makes). That keeps 500 runs fast; the claim path, the limits and the completion
are the real ones, all in the real Postgres. The running count is sampled from
the database (``store.runs.running_counts``) throughout the drain.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from tests.factories import InMemoryBackend, register_task, settings
from waypost.engine.core import Engine
from waypost.engine.dispatcher import Dispatcher
from waypost.store import maintenance, runs
from waypost.store import pool as store_pool
from waypost.store.pool import RawJson


async def enqueue_many(
    db: asyncpg.Pool, task: str, keys: Sequence[str | None], namespace: str = "default"
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in keys]
    inserted = await runs.enqueue_bulk(
        db, namespace=namespace, task=task, run_ids=ids, priorities=[None] * len(ids),
        payloads=[RawJson("{}")] * len(ids), idempotency_keys=[None] * len(ids),
        concurrency_keys=list(keys), trace_ids=[secrets.token_hex(16) for _ in ids],
        source="test",
    )
    assert inserted == len(ids)
    return ids


class TwoDispatchers:
    """Two engines (own pools) with a dispatcher and an in-memory backend each."""

    def __init__(self, database_url: str, work_seconds: float, slots: int = 10,
                 **overrides: Any) -> None:
        self.database_url = database_url
        self.work_seconds = work_seconds
        self.slots = slots
        self.overrides = overrides
        self.shared: dict[str, Any] = {}

    async def __aenter__(self) -> TwoDispatchers:
        self.engines: list[Engine] = []
        self.backends: list[InMemoryBackend] = []
        self.dispatchers: list[Dispatcher] = []
        self.stop = asyncio.Event()
        for i in range(2):
            engine = await Engine.open(
                settings(self.database_url, **{
                    "worker_name": f"dispatcher-{i}", "claim_batch": 10,
                    "poll_interval_seconds": 0.05, "heartbeat_interval_seconds": 10.0,
                    **self.overrides}),
                migrate_schema=False,
            )
            backend = InMemoryBackend(engine, slots=self.slots, work_seconds=self.work_seconds,
                                      shared=self.shared)
            self.engines.append(engine)
            self.backends.append(backend)
            self.dispatchers.append(Dispatcher(engine, backend))
        self.loops = [asyncio.get_running_loop().create_task(d.run(self.stop))
                      for d in self.dispatchers]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.loops, return_exceptions=True)
        for backend in self.backends:
            await backend.close()
        for engine in self.engines:
            await engine.close()


async def drain(
    db: asyncpg.Pool, ids: Sequence[uuid.UUID], timeout: float,
) -> list[dict[tuple[str, str, str | None], int]]:
    """Sample running counts from the database until every run in ``ids`` succeeded."""
    samples: list[dict[tuple[str, str, str | None], int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        samples.append(await runs.running_counts(db))
        done = await db.fetchval(
            "SELECT count(*) FROM runs WHERE id = ANY($1::uuid[]) AND status = 'succeeded'",
            list(ids))
        if done == len(ids):
            return samples
        assert loop.time() < deadline, f"only {done} of {len(ids)} runs succeeded in {timeout}s"
        await asyncio.sleep(0.002)


async def test_max_concurrency_holds_with_two_dispatchers(
    database_url: str, db: asyncpg.Pool
) -> None:
    await register_task(db, "bounded", maxConcurrency=3)
    ids = await enqueue_many(db, "bounded", [None] * 500)

    async with TwoDispatchers(database_url, work_seconds=0.005) as stack:
        samples = await drain(db, ids, timeout=120)

    per_sample = [sum(n for (_, q, _), n in s.items() if q == "bounded") for s in samples]
    assert len(per_sample) > 100, "too few samples to say anything about the drain"
    assert max(per_sample) <= 3, f"the database showed {max(per_sample)} running at once"
    assert max(per_sample) == 3, "the limit was never reached: the test proves nothing"
    assert stack.shared["peak"][("queue", "default", "bounded")] <= 3
    # Both dispatchers took part; every run ran exactly once.
    started = [len(b.started) for b in stack.backends]
    assert all(n > 0 for n in started), f"claims per dispatcher: {started}"
    assert sum(started) == 500
    assert sorted(r for b in stack.backends for r in b.started) == sorted(ids)
    counts = await db.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
    assert {r["status"]: r["n"] for r in counts} == {"succeeded": 500}
    assert await db.fetchval("SELECT count(*) FROM attempts WHERE status = 'succeeded'") == 500
    assert await db.fetchval("SELECT count(*) FROM run_queue") == 0


async def test_limits_hold_while_both_dispatchers_rotate_the_hot_table(
    database_url: str, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Both dispatchers clean run_queue every 50 ms past 100 dead tuples, so the table
    rotates (migration 0019) again and again under their claims: a queue limit and a
    per-key limit stay exact, and every run runs exactly once."""
    await register_task(db, "bounded", maxConcurrency=3)
    await register_task(db, "tenanted", perKeyConcurrency=1)
    ids = [*await enqueue_many(db, "bounded", [None] * 300),
           *await enqueue_many(db, "tenanted", ["A", "B"] * 100)]

    caplog.set_level(logging.INFO, logger="waypost.engine.hot_table")
    # The dispatchers rotate only past 4 dead rows per live one (vacuum is cheaper
    # while a backlog is live), which a quick drain on a quiet machine reaches once
    # at its end at most; a third party rotates all along so that claims always meet
    # rotations, whatever the machine's speed.
    moved_by_rotator: list[int] = []
    stop = asyncio.Event()

    async def rotate_all_along() -> None:
        while not stop.is_set():
            moved = await maintenance.rotate_hot_table(db, lock_timeout_ms=50)
            if moved is not None:
                moved_by_rotator.append(moved)
            await asyncio.sleep(0.05)

    async with TwoDispatchers(database_url, work_seconds=0.003,
                              hot_table_vacuum_dead_tuples=100,
                              hot_table_vacuum_seconds=0.05) as stack:
        rotator = asyncio.create_task(rotate_all_along())
        try:
            samples = await drain(db, ids, timeout=180)
        finally:
            stop.set()
            await rotator

    bounded = [sum(n for (_, q, _), n in s.items() if q == "bounded") for s in samples]
    assert max(bounded) <= 3 and max(bounded) == 3
    for key in ("A", "B"):
        assert max(s.get(("default", "tenanted", key), 0) for s in samples) == 1
    assert sorted(r for b in stack.backends for r in b.started) == sorted(ids)
    assert await db.fetchval("SELECT count(*) FROM attempts") == 500
    rotated = [getattr(r, "rows_moved", 0) for r in caplog.records
               if r.getMessage() == "rotated run_queue"] + moved_by_rotator
    assert len(rotated) >= 2, "the table did not rotate under the claims: the test proves nothing"
    assert any(moved > 0 for moved in rotated), "no active run was copied"


async def test_per_key_limit_and_no_starvation(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db, "tenanted", perKeyConcurrency=1)
    a_ids = await enqueue_many(db, "tenanted", ["A"] * 400)
    # B and C arrive after A's whole backlog: older runs are claimed first, so
    # only the per-key limit can let them through early.
    b_ids = await enqueue_many(db, "tenanted", ["B"] * 5)
    c_ids = await enqueue_many(db, "tenanted", ["C"] * 5)
    all_ids = [*a_ids, *b_ids, *c_ids]

    async with TwoDispatchers(database_url, work_seconds=0.003) as stack:
        samples = await drain(db, all_ids, timeout=180)

    for key in ("A", "B", "C"):
        most = max(s.get(("default", "tenanted", key), 0) for s in samples)
        assert most <= 1, f"key {key} had {most} runs running at once"
        assert stack.shared["peak"][("key", key)] <= 1
    assert max(s.get(("default", "tenanted", "A"), 0) for s in samples) == 1
    assert all(len(b.started) > 0 for b in stack.backends)

    others_done = await db.fetchval(
        "SELECT max(finished_at) FROM runs WHERE concurrency_key IN ('B', 'C')")
    a_done_by_then = await db.fetchval(
        "SELECT count(*) FROM runs WHERE concurrency_key = 'A' AND finished_at <= $1",
        others_done)
    assert a_done_by_then < 80, (
        f"{a_done_by_then} of A's 400 runs finished before the last of B and C: "
        "the backlog of one key delayed the others")
    statuses = await db.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"succeeded": 410}


async def test_same_task_name_in_two_namespaces_keeps_separate_limits(
    database_url: str, db: asyncpg.Pool
) -> None:
    """Queues are keyed by (namespace, name): Task `hello` in namespace a
    (maxConcurrency 1) and Task `hello` in namespace b (maxConcurrency 5) each keep
    their own limit, and applying one never overwrites the other's."""
    await register_task(db, "hello", namespace="a", maxConcurrency=1)
    await register_task(db, "hello", namespace="b", maxConcurrency=5)
    stored = await db.fetch("SELECT namespace, name, max_concurrency FROM queues ORDER BY 1")
    assert [tuple(r) for r in stored] == [("a", "hello", 1), ("b", "hello", 5)]
    a_ids = await enqueue_many(db, "hello", [None] * 40, namespace="a")
    b_ids = await enqueue_many(db, "hello", [None] * 200, namespace="b")

    async with TwoDispatchers(database_url, work_seconds=0.01) as stack:
        samples = await drain(db, [*a_ids, *b_ids], timeout=180)

    def most(namespace: str) -> int:
        return max(sum(n for (ns, q, _), n in s.items() if (ns, q) == (namespace, "hello"))
                   for s in samples)

    assert len(samples) > 50, "too few samples to say anything about the drain"
    assert most("a") == 1, f"namespace a ran {most('a')} at once (limit 1)"
    assert most("b") == 5, f"namespace b peaked at {most('b')} running (limit 5)"
    assert stack.shared["peak"][("queue", "a", "hello")] == 1
    assert stack.shared["peak"][("queue", "b", "hello")] <= 5
    statuses = await db.fetch(
        "SELECT namespace, status, count(*) AS n FROM runs GROUP BY 1, 2 ORDER BY 1")
    assert [tuple(r) for r in statuses] == [("a", "succeeded", 40), ("b", "succeeded", 200)]


async def test_wide_limits_hold_while_two_dispatchers_claim_in_lanes(
    database_url: str, db: asyncpg.Pool
) -> None:
    """Limits far from binding are claimed in lanes, several claimers at once
    (migration 0024); as the running count nears the limit, claims switch to the
    exclusive gate. maxConcurrency 230 and a per-key limit of 210 on one hot key, with
    100 other keys beside it, are reached and never exceeded by two dispatchers with
    300 slots each."""
    await register_task(db, "wide", maxConcurrency=230)
    await register_task(db, "hot", perKeyConcurrency=210)
    wide_keys = [f"tenant-{i % 100}" for i in range(1200)]
    ids = [*await enqueue_many(db, "wide", wide_keys),
           *await enqueue_many(db, "hot", ["H"] * 900 + [f"k{i}" for i in range(100)])]

    async with TwoDispatchers(database_url, work_seconds=0.5, slots=300,
                              claim_batch=50) as stack:
        samples = await drain(db, ids, timeout=300)

    wide = [sum(n for (_, q, _), n in s.items() if q == "wide") for s in samples]
    hot = [s.get(("default", "hot", "H"), 0) for s in samples]
    assert max(wide) <= 230, f"the database showed {max(wide)} running at once (limit 230)"
    assert max(hot) <= 210, f"key H had {max(hot)} running at once (limit 210)"
    assert max(wide) == 230 and max(hot) == 210, (
        f"a limit was never reached ({max(wide)}, {max(hot)}): the test proves nothing")
    assert stack.shared["peak"][("queue", "default", "wide")] <= 230
    assert stack.shared["peak"][("key", "H")] <= 210
    assert all(len(b.started) > 0 for b in stack.backends)
    assert sorted(r for b in stack.backends for r in b.started) == sorted(ids)
    assert await db.fetchval("SELECT count(*) FROM attempts WHERE status = 'succeeded'") == 2200


async def _claim_in_open_transaction(conn: asyncpg.Connection, limit: int) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT run_id FROM claim_runs('{}', '{}', '{}', $1::integer, 30, 'w', NULL)", limit)
    return [r["run_id"] for r in rows]


@pytest.mark.parametrize("limit", ["maxConcurrency", "perKeyConcurrency"])
async def test_lanes_admit_in_parallel_within_their_reserve_then_the_gate_tops_up(
    database_url: str, db: asyncpg.Pool, limit: str
) -> None:
    """Four claimers hold the four lanes of a queue at once, each admitting 50 while
    none has committed; a fifth finds no lane free and takes nothing. Once the
    running count nears the limit, one claim holds the queue's gate alone and fills
    it exactly: 300 running, not one more."""
    await register_task(db, "wide", **{limit: 300})
    await enqueue_many(db, "wide", ["A"] * 600)
    assert len(await runs.claim(db, limit=50, lease_seconds=30, worker="w")) == 50
    assert len(await runs.claim(db, limit=30, lease_seconds=30, worker="w")) == 30

    conns = [await store_pool.connect(database_url) for _ in range(5)]
    try:
        txs = [conn.transaction() for conn in conns]
        for tx in txs:
            await tx.start()
        # None of these commits before the last has claimed.
        taken = [await _claim_in_open_transaction(conn, 50) for conn in conns]
        assert [len(t) for t in taken] == [50, 50, 50, 50, 0]
        assert len({r for t in taken for r in t}) == 200
        for tx in txs:
            await tx.commit()
    finally:
        for conn in conns:
            await conn.close()

    assert await db.fetchval("SELECT count(*) FROM run_queue WHERE state = 'running'") == 280
    assert len(await runs.claim(db, limit=50, lease_seconds=30, worker="w")) == 20
    assert await runs.claim(db, limit=50, lease_seconds=30, worker="w") == []
    assert await db.fetchval("SELECT count(*) FROM run_queue WHERE state = 'running'") == 300


async def test_the_gate_tops_up_a_hot_key_and_walks_the_other_keys(db: asyncpg.Pool) -> None:
    """Near a per-key limit the claim holds the gate: the hot key gets exactly its
    remaining places, and the runs of another key queued behind the hot key's backlog
    fill the rest of the batch (admit_by_key)."""
    await register_task(db, "hot", perKeyConcurrency=300)
    hot = await enqueue_many(db, "hot", ["H"] * 400)
    other = await enqueue_many(db, "hot", ["B"] * 30)
    # 280 of H running, the oldest runs, in lanes and then under the gate.
    for n in (50, 50, 50, 50, 50, 30):
        assert len(await runs.claim(db, limit=n, lease_seconds=30, worker="w")) == n
    assert await runs.running_counts(db) == {("default", "hot", "H"): 280}
    claimed = [c.run_id for c in await runs.claim(db, limit=50, lease_seconds=30, worker="w")]
    assert len([r for r in claimed if r in set(hot)]) == 20
    assert sorted(r for r in claimed if r not in set(hot)) == sorted(other)
    assert await runs.running_counts(db) == {("default", "hot", "H"): 300,
                                             ("default", "hot", "B"): 30}
