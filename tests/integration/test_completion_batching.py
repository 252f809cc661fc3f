"""Concurrent runner completions share statements and stay fenced, on a real Postgres."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.factories import enqueue, register_task
from waypost.engine import attempts
from waypost.engine.core import Engine
from waypost.engine.credentials import AttemptIdentity
from waypost.engine.errors import AttemptSuperseded
from waypost.model.settings import Settings
from waypost.store import runs


async def test_many_runners_completing_at_once(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    ids = [await enqueue(db) for _ in range(60)]
    engine = await Engine.open(Settings(database_url=database_url), migrate_schema=False)
    writes: list[int] = []
    write = engine.completions._write

    async def counting_write(acks):  # type: ignore[no-untyped-def]
        writes.append(len(acks))
        return await write(acks)

    engine.completions._write = counting_write
    try:
        claimed = await runs.claim(engine.pool, limit=100, lease_seconds=30, worker="w")
        assert {c.run_id for c in claimed} == set(ids)
        stale = AttemptIdentity(run_id=claimed[0].run_id,
                                claim_token=claimed[0].claim_token + 10_000)
        results = await asyncio.gather(
            *(attempts.complete(engine, AttemptIdentity(run_id=c.run_id, claim_token=c.claim_token),
                                {"n": i})
              for i, c in enumerate(claimed)),
            attempts.complete(engine, stale, "zombie"),
            return_exceptions=True)
    finally:
        await engine.close()

    assert results[:60] == [None] * 60
    assert isinstance(results[60], AttemptSuperseded)
    assert sum(writes) == 61 and len(writes) < 61, f"writes per batch: {writes}"
    rows = await db.fetch("SELECT id, status, result FROM runs")
    assert {r["status"] for r in rows} == {"succeeded"}
    by_id = {r["id"]: r["result"] for r in rows}
    assert [by_id[c.run_id] for c in claimed] == [{"n": i} for i in range(60)]
    assert await db.fetchval("SELECT count(*) FROM run_queue") == 0
    assert await db.fetchval(
        "SELECT count(*) FROM attempts WHERE status = 'succeeded' AND finished_at IS NOT NULL"
    ) == 60


async def test_a_dead_database_fails_the_completions_and_keeps_the_runs(
    database_url: str, db: asyncpg.Pool
) -> None:
    await register_task(db)
    run_id = await enqueue(db)
    engine = await Engine.open(Settings(database_url=database_url), migrate_schema=False)
    [c] = await runs.claim(engine.pool, limit=1, lease_seconds=30, worker="w")
    await engine.pool.close()  # the database goes away for this engine
    with pytest.raises(asyncpg.InterfaceError):
        await attempts.complete(
            engine, AttemptIdentity(run_id=run_id, claim_token=c.claim_token), 1)
    assert await db.fetchval("SELECT status FROM runs WHERE id = $1", run_id) == "running"
