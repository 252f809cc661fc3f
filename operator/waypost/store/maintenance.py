"""Vacuum of the hot table on demand (the engine decides when; see engine.hot_table)."""

from __future__ import annotations

import asyncpg

from waypost.store.sql import query


async def hot_table_dead_tuples(db: asyncpg.Pool | asyncpg.Connection) -> int:
    n: int = await db.fetchval(query("hot_table_dead_tuples"))
    return n


async def vacuum_hot_table(db: asyncpg.Pool | asyncpg.Connection) -> None:
    await db.execute(query("vacuum_hot_table"))
