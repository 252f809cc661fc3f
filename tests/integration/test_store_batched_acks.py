"""Batched acknowledgements (runs.complete_many, runs.ack_and_claim): each run fenced
on its own token, and a backlog does not change which runs a claim takes."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.factories import enqueue, register_task
from waypost.store import runs
from waypost.store.pool import RawJson


async def test_complete_many_is_fenced_per_run(db: asyncpg.Pool) -> None:
    await register_task(db)
    a, b, c = [await enqueue(db) for _ in range(3)]
    claimed = {x.run_id: x for x in await runs.claim(db, limit=3, lease_seconds=30, worker="w")}
    acks = [(a, claimed[a].claim_token, RawJson('{"n":1}')),
            (b, claimed[b].claim_token + 1000, RawJson('{"n":2}')),  # stale token
            (c, claimed[c].claim_token, RawJson('{"n":3}'))]
    assert sorted(await runs.complete_many(db, acks)) == sorted([a, c])
    assert await runs.complete_many(db, acks) == []  # twice: nothing is current any more
    got = {r: await runs.get(db, r) for r in (a, b, c)}
    assert got[a] is not None and got[a].status == "succeeded" and got[a].result == {"n": 1}
    assert got[b] is not None and got[b].status == "running"
    assert got[c] is not None and got[c].result == {"n": 3}
    attempts = await runs.list_attempts(db, a)
    assert [x.status for x in attempts] == ["succeeded"]


async def test_ack_and_claim_commits_acks_with_the_next_claim(db: asyncpg.Pool) -> None:
    await register_task(db, maxConcurrency=2)
    ids = [await enqueue(db) for _ in range(3)]
    first = await runs.claim(db, limit=10, lease_seconds=30, worker="w")
    assert [x.run_id for x in first] == ids[:2]  # the limit holds the third back
    acked, second = await runs.ack_and_claim(
        db, acks=[(x.run_id, x.claim_token, RawJson("null")) for x in first],
        limit=10, lease_seconds=30, worker="w")
    # the acks freed both slots inside the same transaction, so the third is claimed
    assert sorted(acked) == sorted(ids[:2])
    assert [x.run_id for x in second] == ids[2:]
    acked, third = await runs.ack_and_claim(
        db, acks=[(second[0].run_id, second[0].claim_token, RawJson("null"))],
        limit=10, lease_seconds=30, worker="w")
    assert acked == [ids[2]] and third == []  # nothing to claim: the ack still commits
    assert (await runs.status_counts(db)) == {"succeeded": 3}


async def test_claim_takes_the_head_of_a_large_unanalysed_backlog(db: asyncpg.Pool) -> None:
    await register_task(db)
    await runs.enqueue_bulk(
        db, namespace="default", task="t", run_ids=[uuid.uuid4() for _ in range(3000)],
        priorities=[None] * 3000, payloads=[RawJson("{}")] * 3000,
        idempotency_keys=[None] * 3000, concurrency_keys=[None] * 3000,
        trace_ids=["0" * 32] * 3000, source="test")
    urgent = await enqueue(db, priority=9)
    claimed = await runs.claim(db, limit=5, lease_seconds=30, worker="w")
    assert claimed[0].run_id == urgent and len(claimed) == 5
    seqs = [await db.fetchval("SELECT seq FROM runs WHERE id = $1", x.run_id)
            for x in claimed[1:]]
    assert seqs == sorted(seqs)


async def test_parallel_claims_of_an_unlimited_queue_take_different_runs(
    db: asyncpg.Pool,
) -> None:
    await register_task(db)
    ids = {await enqueue(db) for _ in range(40)}
    results = await asyncio.gather(
        *[runs.claim(db, limit=10, lease_seconds=30, worker=f"w{i}") for i in range(6)]
    )
    claimed = [x.run_id for r in results for x in r]
    assert len(claimed) == len(set(claimed))  # no run twice
    assert set(claimed) <= ids
    rest = await runs.claim(db, limit=100, lease_seconds=30, worker="late")
    assert len(claimed) + len(rest) == 40
    tokens = [x.claim_token for r in results for x in r] + [x.claim_token for x in rest]
    assert len(set(tokens)) == 40


async def test_a_queue_that_gains_a_limit_is_not_claimed_unlocked(db: asyncpg.Pool) -> None:
    await register_task(db)
    await enqueue(db)
    async with db.acquire() as conn, conn.transaction():
        # The two steps of claim_runs (migration 0024), with another session between them.
        gates = await conn.fetch("SELECT * FROM claim_gates(NULL, 10)")
        queue_id = await conn.fetchval(
            "SELECT id FROM queues WHERE namespace = 'default' AND name = 't'")
        # No limit: no gate lock, and admit_heads is to check it still has none.
        assert [(r["queue_id"], r["reserve"]) for r in gates] == [(queue_id, None)]
        await register_task(db, maxConcurrency=1)  # another session adds a limit meanwhile
        admitted = await conn.fetch(
            "SELECT * FROM admit_heads($1, $2, $3, 10)", [queue_id], [None], [10])
        assert admitted == []
    assert len(await runs.claim(db, limit=10, lease_seconds=30, worker="w")) == 1
