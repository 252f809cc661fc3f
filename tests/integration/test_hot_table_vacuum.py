"""The leader cleans run_queue itself once dead tuples pass the threshold: by rotation
when few rows are live, by vacuum when a backlog waits (test_hot_table_rotation.py
has the rotation itself and the long transaction)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg

from tests.factories import register_task, settings
from waypost.engine import hot_table
from waypost.engine.core import Engine
from waypost.engine.credentials import CredentialSigner
from waypost.store import maintenance, runs
from waypost.store import pool as store_pool
from waypost.store.pool import RawJson


async def _churn(db: asyncpg.Pool, n: int) -> None:
    """n runs through the hot table: each leaves dead row versions behind."""
    await runs.enqueue_bulk(
        db, namespace="default", task="t", run_ids=[uuid.uuid4() for _ in range(n)],
        priorities=[None] * n, payloads=[RawJson("{}")] * n, idempotency_keys=[None] * n,
        concurrency_keys=[None] * n, trace_ids=["0" * 32] * n, source="test")
    claimed = await runs.claim(db, limit=n, lease_seconds=30, worker="w")
    await runs.complete_many(db, [(c.run_id, c.claim_token, RawJson("null")) for c in claimed])
    # Statistics reach the shared counters when a backend flushes them; force it.
    await db.execute("SELECT pg_stat_force_next_flush()")
    await db.execute("SELECT 1")


async def _vacuums(db: asyncpg.Pool) -> tuple[int, int]:
    """Vacuums of the current generation's partition and dead tuples of both."""
    await db.execute("SELECT pg_stat_clear_snapshot()")
    row = await db.fetchrow(
        "SELECT max(vacuum_count) FILTER (WHERE relname = 'run_queue_' || "
        "current_hot_generation()) AS vacuums, sum(n_dead_tup)::int AS dead "
        "FROM pg_stat_user_tables WHERE relname IN ('run_queue_0', 'run_queue_1')")
    assert row is not None
    return row["vacuums"], row["dead"]


@contextlib.asynccontextmanager
async def one_connection_engine(database_url: str, **overrides: object) -> AsyncIterator[Engine]:
    """An engine whose writes all go through one backend, whose statistics _churn flushes."""
    one = await store_pool.create_pool(database_url, min_size=1, max_size=1)
    try:
        yield Engine(pool=one, signer=CredentialSigner(b"k" * 32),
                     settings=settings(database_url, **overrides))
    finally:
        await one.close()


async def _generation(db: asyncpg.Pool) -> int:
    g: int = await db.fetchval("SELECT current_hot_generation()")
    return g


async def test_rotates_only_past_the_threshold(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    async with one_connection_engine(database_url, hot_table_vacuum_dead_tuples=500) as engine:
        await _churn(engine.pool, 100)
        assert await hot_table.clean_if_needed(engine) is None
        assert await _generation(db) == 0

        await _churn(engine.pool, 400)
        dead_before = (await maintenance.hot_table_tuples(engine.pool)).dead
        assert dead_before >= 500
        # Every run finished: nothing live to copy, so the table is rotated, not vacuumed.
        assert await hot_table.clean_if_needed(engine) == "rotated"
        assert await _generation(db) == 1
        await engine.pool.execute("SELECT 1")  # the rotation's statistics reach the counters
        vacuums, dead_after = await _vacuums(db)
        assert vacuums == 0 and dead_after == 0
        assert await db.fetchval("SELECT pg_relation_size('run_queue_0')") == 0


async def test_a_backlog_is_vacuumed_not_copied(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    async with one_connection_engine(database_url, hot_table_vacuum_dead_tuples=500) as engine:
        await _churn(engine.pool, 300)
        # 600 dead tuples, and a backlog of 400 ready runs: copying them would cost
        # more than a vacuum.
        await runs.enqueue_bulk(
            engine.pool, namespace="default", task="t",
            run_ids=[uuid.uuid4() for _ in range(400)], priorities=[None] * 400,
            payloads=[RawJson("{}")] * 400, idempotency_keys=[None] * 400,
            concurrency_keys=[None] * 400, trace_ids=["0" * 32] * 400, source="test")
        await engine.pool.execute("SELECT pg_stat_force_next_flush()")
        await engine.pool.execute("SELECT 1")
        tuples = await maintenance.hot_table_tuples(engine.pool)
        assert tuples.dead >= 500 and tuples.live * hot_table.ROTATE_DEAD_PER_LIVE > tuples.dead
        assert await hot_table.clean_if_needed(engine) == "vacuumed"
        assert await _generation(db) == 0
        count, dead_after = await _vacuums(db)
        assert count == 1 and dead_after < tuples.dead
        assert await db.fetchval("SELECT count(*) FROM run_queue WHERE state = 'ready'") == 400


async def test_the_loop_keeps_going_and_stops(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    stop = asyncio.Event()
    async with one_connection_engine(database_url, hot_table_vacuum_dead_tuples=100,
                                     hot_table_vacuum_seconds=0.05) as engine:
        loop = asyncio.create_task(hot_table.clean_loop(engine, stop))
        for expected in (1, 0):  # two rounds: it keeps going after the first
            await _churn(engine.pool, 200)
            for _ in range(100):
                if await _generation(db) == expected:
                    break
                await asyncio.sleep(0.05)
            assert await _generation(db) == expected
        stop.set()
        await asyncio.wait_for(loop, 5)


async def test_zero_turns_it_off(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    async with one_connection_engine(database_url, hot_table_vacuum_dead_tuples=0) as engine:
        await _churn(engine.pool, 300)
        assert (await maintenance.hot_table_tuples(engine.pool)).dead > 0
        assert await hot_table.clean_if_needed(engine) is None
        assert (await _vacuums(db))[0] == 0
        assert await _generation(db) == 0
