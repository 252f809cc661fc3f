"""The leader epoch in the store, which every leader-only write checks."""

from __future__ import annotations

import asyncpg

from waypost.store.sql import bind, query


async def record_epoch(db: asyncpg.Pool | asyncpg.Connection, epoch: int, holder: str) -> bool:
    """Store ``epoch`` as current; False when a newer epoch is already stored."""
    return await db.fetchrow(*bind("record_leader_epoch", epoch=epoch, holder=holder)) is not None


async def current(db: asyncpg.Pool | asyncpg.Connection) -> tuple[int, str] | None:
    row = await db.fetchrow(query("current_leader"))
    return None if row is None else (int(row["epoch"]), str(row["holder"]))
