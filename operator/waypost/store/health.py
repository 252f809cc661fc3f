"""Figures about the database that operators alert on (exported as metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from waypost.store.sql import query


@dataclass(frozen=True)
class StoreHealth:
    hot_dead_tuples: int
    hot_live_tuples: int
    hot_table_bytes: int
    # Age of the oldest open transaction holding a snapshot in this database.
    oldest_snapshot_seconds: float


async def schema_version(db: asyncpg.Pool | asyncpg.Connection) -> int:
    """The newest migration applied; raises UndefinedTableError before any."""
    version: int = await db.fetchval(query("schema_version"))
    return version


async def read(db: asyncpg.Pool | asyncpg.Connection) -> StoreHealth:
    r = await db.fetchrow(query("store_health"))
    assert r is not None
    return StoreHealth(
        hot_dead_tuples=int(r["hot_dead_tuples"]), hot_live_tuples=int(r["hot_live_tuples"]),
        hot_table_bytes=int(r["hot_table_bytes"] or 0),
        oldest_snapshot_seconds=float(r["oldest_snapshot_seconds"]),
    )
