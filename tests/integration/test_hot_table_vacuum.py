"""The leader vacuums run_queue itself once dead tuples pass the threshold."""

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
    row = await db.fetchrow("SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables "
                            "WHERE relname = 'run_queue'")
    assert row is not None
    return row["vacuum_count"], row["n_dead_tup"]


@contextlib.asynccontextmanager
async def one_connection_engine(database_url: str, **overrides: object) -> AsyncIterator[Engine]:
    """An engine whose writes all go through one backend, whose statistics _churn flushes."""
    one = await store_pool.create_pool(database_url, min_size=1, max_size=1)
    try:
        yield Engine(pool=one, signer=CredentialSigner(b"k" * 32),
                     settings=settings(database_url, **overrides))
    finally:
        await one.close()


async def test_vacuums_only_past_the_threshold(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    async with one_connection_engine(database_url, hot_table_vacuum_dead_tuples=500) as engine:
        await _churn(engine.pool, 100)
        assert await hot_table.vacuum_if_needed(engine) is False
        assert (await _vacuums(db))[0] == 0

        await _churn(engine.pool, 400)
        dead_before = await maintenance.hot_table_dead_tuples(engine.pool)
        assert dead_before >= 500
        assert await hot_table.vacuum_if_needed(engine) is True
        count, dead_after = await _vacuums(db)
        assert count == 1 and dead_after < dead_before


async def test_the_loop_keeps_going_and_stops(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    stop = asyncio.Event()
    async with one_connection_engine(database_url, hot_table_vacuum_dead_tuples=100,
                                     hot_table_vacuum_seconds=0.05) as engine:
        loop = asyncio.create_task(hot_table.vacuum_loop(engine, stop))
        await _churn(engine.pool, 200)
        for _ in range(100):
            if (await _vacuums(db))[0] >= 1:
                break
            await asyncio.sleep(0.05)
        assert (await _vacuums(db))[0] >= 1
        stop.set()
        await asyncio.wait_for(loop, 5)


async def test_zero_turns_it_off(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    async with one_connection_engine(database_url, hot_table_vacuum_dead_tuples=0) as engine:
        await _churn(engine.pool, 300)
        assert await maintenance.hot_table_dead_tuples(engine.pool) > 0
        assert await hot_table.vacuum_if_needed(engine) is False
        assert (await _vacuums(db))[0] == 0
