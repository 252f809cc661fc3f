"""run_queue's rotation (migration 0019) against the real Postgres: what it keeps, how it
gives way to a lock, and claims while a long REPEATABLE READ transaction is open."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from typing import Any

import asyncpg

from tests.factories import register_task
from tests.integration.test_hot_table_vacuum import one_connection_engine
from waypost.engine import hot_table
from waypost.store import maintenance, runs
from waypost.store.pool import RawJson

HOT_COLUMNS = ("run_id, seq, queue_id, concurrency_key, priority, state, available_at, attempt, "
               "claim_token, lease_expires_at, cancel_requested")


async def _enqueue(db: asyncpg.Pool | asyncpg.Connection, n: int, *, task: str = "t",
                   priorities: list[int | None] | None = None) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    inserted = await runs.enqueue_bulk(
        db, namespace="default", task=task, run_ids=ids,
        priorities=priorities or [None] * n, payloads=[RawJson("{}")] * n,
        idempotency_keys=[None] * n, concurrency_keys=[None] * n,
        trace_ids=[secrets.token_hex(16) for _ in ids], source="test")
    assert inserted == n
    return ids


async def _hot_rows(db: asyncpg.Pool) -> dict[uuid.UUID, dict[str, Any]]:
    rows = await db.fetch(f"SELECT {HOT_COLUMNS} FROM run_queue")
    return {r["run_id"]: dict(r) for r in rows}


async def _generation(db: asyncpg.Pool) -> int:
    g: int = await db.fetchval("SELECT current_hot_generation()")
    return g


async def test_rotation_keeps_every_active_run_as_it_was(db: asyncpg.Pool) -> None:
    await register_task(db)
    ids = await _enqueue(db, 30, priorities=[i % 3 for i in range(30)])
    running = await runs.claim(db, limit=5, lease_seconds=60, worker="w")
    delayed = await _enqueue(db, 1)
    await db.execute("UPDATE run_queue SET available_at = now() + interval '1 hour' "
                     "WHERE run_id = $1", delayed[0])
    before = await _hot_rows(db)
    assert len(before) == 31

    assert await maintenance.rotate_hot_table(db, lock_timeout_ms=1000) == 31
    assert await _generation(db) == 1
    assert await _hot_rows(db) == before  # every column, tokens and leases included
    assert await db.fetchval("SELECT count(*) FROM run_queue_0") == 0
    assert await db.fetchval("SELECT count(*) FROM run_queue_1") == 31

    # The running attempts carry on where they are: heartbeat and completion find them.
    for c in running:
        assert await runs.heartbeat(db, c.run_id, c.claim_token, 60) is False
    acked = await runs.complete_many(db, [(c.run_id, c.claim_token, RawJson("1"))
                                          for c in running])
    assert sorted(acked) == sorted(c.run_id for c in running)
    # New runs go to the new generation, and claims keep the queue's order (priority,
    # then age) across rows that were moved and rows that were not.
    late = await _enqueue(db, 1, priorities=[2])
    assert await db.fetchval("SELECT generation FROM run_queue WHERE run_id = $1",
                             late[0]) == 1
    claimed = await runs.claim(db, limit=100, lease_seconds=60, worker="w")
    order = await db.fetch(
        "SELECT id FROM runs WHERE id = ANY($1::uuid[]) AND id <> ALL($2::uuid[]) "
        "ORDER BY priority DESC, seq", [*ids, *late], [c.run_id for c in running])
    assert [c.run_id for c in claimed] == [r["id"] for r in order]
    assert delayed[0] not in {c.run_id for c in claimed}

    # And back: the second rotation returns to generation 0 with what is still active.
    assert await maintenance.rotate_hot_table(db, lock_timeout_ms=1000) == 27
    assert await _generation(db) == 0
    assert await db.fetchval("SELECT count(*) FROM run_queue_1") == 0


async def test_rotation_gives_way_to_a_lock_on_the_old_generation(db: asyncpg.Pool) -> None:
    """A pg_dump of the schema holds ACCESS SHARE on every table until it ends: the
    rotation waits its lock timeout, changes nothing, and claims go on."""
    await register_task(db)
    await _enqueue(db, 10)
    async with db.acquire() as dump:
        tx = dump.transaction(isolation="repeatable_read")
        await tx.start()
        await dump.execute("LOCK TABLE run_queue_0 IN ACCESS SHARE MODE")
        loop = asyncio.get_running_loop()
        t = loop.time()
        assert await maintenance.rotate_hot_table(db, lock_timeout_ms=200) is None
        assert 0.15 < loop.time() - t < 5
        assert await _generation(db) == 0
        assert len(await runs.claim(db, limit=4, lease_seconds=60, worker="w")) == 4
        await tx.rollback()
    assert await db.fetchval("SELECT count(*) FROM run_queue_0") == 10
    assert await maintenance.rotate_hot_table(db, lock_timeout_ms=1000) == 10


async def test_a_writer_that_read_the_old_generation_loses_nothing(db: asyncpg.Pool) -> None:
    """An enqueue that chose the old generation before the switch and commits after the
    rotation started: the rotation waits for it, and its run is copied over."""
    await register_task(db)
    await _enqueue(db, 3)
    async with db.acquire() as writer:
        tx = writer.transaction()
        await tx.start()
        (late,) = await _enqueue(writer, 1)  # uncommitted, in generation 0
        rotation = asyncio.create_task(maintenance.rotate_hot_table(db, lock_timeout_ms=10_000))
        await asyncio.sleep(0.3)
        assert not rotation.done()  # waiting for the writer's lock
        await tx.commit()
    assert await rotation == 4
    assert await db.fetchval("SELECT generation FROM run_queue WHERE run_id = $1", late) == 1
    assert await db.fetchval("SELECT count(*) FROM run_queue") == 4


async def _ready_probe_buffers(db: asyncpg.Pool) -> int:
    """Buffers one claim's probe of the ready index touches (the head of the queue)."""
    plan = await db.fetchval(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT run_id FROM run_queue r "
        "WHERE r.queue_id = (SELECT id FROM queues LIMIT 1) AND r.state = 'ready' "
        "AND r.available_at <= now() ORDER BY r.priority DESC, r.seq LIMIT 1")
    # The pool decodes json itself; a plain connection returns the text.
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


async def test_claims_stay_exact_and_cheap_while_a_long_transaction_is_open(
    database_url: str, db: asyncpg.Pool
) -> None:
    """With a REPEATABLE READ transaction holding its snapshot throughout, vacuum can
    remove nothing: the head of the ready index fills with entries of claimed runs
    that every claim walks. Rotation empties it all the same, and every run is
    claimed exactly once."""
    await register_task(db)
    async with db.acquire() as report, one_connection_engine(
            database_url, hot_table_vacuum_dead_tuples=1000) as engine:
        tx = report.transaction(isolation="repeatable_read")
        await tx.start()
        await report.fetchval("SELECT count(*) FROM runs")  # takes the snapshot
        assert await db.fetchval(
            "SELECT backend_xmin IS NOT NULL FROM pg_stat_activity WHERE pid = $1",
            report.get_server_pid())

        claimed: list[uuid.UUID] = []
        enqueued: list[uuid.UUID] = []

        async def churn(rounds: int) -> None:
            for _ in range(rounds):
                enqueued.extend(await _enqueue(engine.pool, 200))
                batch = await runs.claim(engine.pool, limit=200, lease_seconds=60, worker="w")
                claimed.extend(c.run_id for c in batch)
                await runs.complete_many(engine.pool, [(c.run_id, c.claim_token,
                                                        RawJson("null")) for c in batch])

        # Without cleaning: 3,000 runs leave 6,000 dead tuples that vacuum cannot remove.
        await churn(15)
        await maintenance.vacuum_hot_table(engine.pool)
        await engine.pool.execute("SELECT pg_stat_force_next_flush()")
        await engine.pool.execute("SELECT 1")
        assert (await maintenance.hot_table_tuples(engine.pool)).dead >= 6000
        walked_before = await _ready_probe_buffers(db)

        # With the leader's cleaning after every 1,000 runs: bounded, snapshot or not.
        rotations = 0
        sizes: list[int] = []
        for _ in range(6):
            await churn(5)
            await engine.pool.execute("SELECT pg_stat_force_next_flush()")
            await engine.pool.execute("SELECT 1")
            if await hot_table.clean_if_needed(engine) == "rotated":
                rotations += 1
            sizes.append(await db.fetchval(
                "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('run_queue')"))
        walked_after = await _ready_probe_buffers(db)
        assert await report.fetchval("SELECT count(*) FROM runs") == 0  # snapshot still held
        await tx.rollback()

    assert rotations == 6
    assert walked_before > 10 * walked_after, (walked_before, walked_after)
    assert max(sizes[1:]) <= 2 * sizes[0], sizes  # no growth from round to round
    assert sorted(claimed) == sorted(enqueued)  # every run claimed, none twice
    assert await db.fetchval("SELECT count(*) FROM runs WHERE status = 'succeeded'") == 9000
    assert await db.fetchval("SELECT count(*) FROM attempts") == 9000
