"""Cleaning of the hot table on demand (the engine decides when; see engine.hot_table)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from waypost.store.sql import bind, query


@dataclass(frozen=True)
class HotTableTuples:
    dead: int
    live: int


async def hot_table_tuples(db: asyncpg.Pool | asyncpg.Connection) -> HotTableTuples:
    """Dead and live tuples of run_queue (summed over its partitions)."""
    row = await db.fetchrow(query("hot_table_tuples"))
    assert row is not None
    return HotTableTuples(dead=int(row["dead"]), live=int(row["live"]))


async def vacuum_hot_table(db: asyncpg.Pool | asyncpg.Connection) -> None:
    await db.execute(query("vacuum_hot_table"))


async def rotate_hot_table(db: asyncpg.Pool | asyncpg.Connection, *,
                           lock_timeout_ms: int) -> int | None:
    """Rotate run_queue's generations (migration 0019): the rows copied, or None when
    the old generation stayed locked for ``lock_timeout_ms``."""
    moved: int | None = await db.fetchval(*bind("rotate_hot_table",
                                                lock_timeout_ms=lock_timeout_ms))
    return moved
