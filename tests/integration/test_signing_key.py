"""Every replica ends up with the same credential signing key, even when they start together."""

from __future__ import annotations

import asyncio

import asyncpg

from waypost.store import keys


async def test_a_replica_racing_another_insert_reads_the_winners_key(db: asyncpg.Pool) -> None:
    winner_key = b"w" * 32
    async with db.acquire() as winner:
        tx = winner.transaction()
        await tx.start()
        await winner.execute("INSERT INTO signing_keys (id, key) VALUES (1, $1)", winner_key)
        # The loser's INSERT … ON CONFLICT now waits on the winner's uncommitted row.
        loser = asyncio.create_task(keys.signing_key(db))
        await asyncio.sleep(0.2)
        assert not loser.done()
        await tx.commit()
        assert await asyncio.wait_for(loser, 10) == winner_key


async def test_many_replicas_starting_at_once_share_one_key(db: asyncpg.Pool) -> None:
    found = await asyncio.gather(*(keys.signing_key(db) for _ in range(8)))
    assert len(set(found)) == 1
    assert len(found[0]) == 32
    assert await db.fetchval("SELECT count(*) FROM signing_keys") == 1
