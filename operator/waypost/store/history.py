"""History retention: finished runs removed with everything recorded about them.

The engine decides when and with which cutoffs (engine/history.py); each call here
removes one batch in its own short transaction, so a pass never holds a lock long.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from waypost.store.sql import bind


async def expire_finished(db: asyncpg.Pool | asyncpg.Connection, *, now: datetime,
                          default_seconds: float, batch: int) -> list[str]:
    """Remove up to ``batch`` finished runs past their Task's retention at ``now``;
    returns the status of each run removed."""
    rows = await db.fetch(*bind("expire_finished_runs", now=now,
                                default_seconds=default_seconds, batch=batch))
    return [r["status"] for r in rows]


async def expire_dead_letters(db: asyncpg.Pool | asyncpg.Connection, *, cutoff: datetime,
                              batch: int) -> int:
    """Remove up to ``batch`` dead-lettered runs that ended before ``cutoff``."""
    rows = await db.fetch(*bind("expire_dead_letters", cutoff=cutoff, batch=batch))
    return len(rows)
