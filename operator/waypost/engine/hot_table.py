"""The leader keeps the hot table small itself: by rotation, or by vacuum.

Every run leaves dead row versions in ``run_queue`` (its claim and its
completion), and their entries at the head of ``run_queue_ready`` are what every
claim walks before it finds a ready row. Autovacuum only looks at a database
every ``autovacuum_naptime`` (60 s by default, a server-wide setting a platform
team may not own), so the dispatcher checks the dead-tuple count every
``hot_table_vacuum_seconds`` and cleans the table once it exceeds
``hot_table_vacuum_dead_tuples``:

* by **rotation** (migration 0019) when the table holds few live rows next to
  its dead ones (at most one per ``ROTATE_DEAD_PER_LIVE`` dead tuples, the usual
  case: a few ready and running runs): the live rows are copied into the other
  generation and the old one is truncated. This works while another transaction
  holds an old snapshot, which vacuum cannot: a vacuum may not remove a row
  version any open snapshot might still need, so under a long REPEATABLE READ
  transaction the table grew without bound and claims slowed to minutes. It is
  also cheaper than a vacuum: it copies a few rows instead of scanning the table
  and its indexes.
* by **vacuum** when many runs are waiting (a backlog: copying them all would
  cost more than vacuuming), or when the old generation stayed locked for
  ``ROTATE_LOCK_TIMEOUT_MS`` (an autovacuum of it, a pg_dump of the schema).
  The lock wait is the longest a rotation can hold up claims.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import asyncpg

from waypost import aiotime
from waypost.engine.core import Engine
from waypost.store import maintenance
from waypost.store import pool as store_pool

log = logging.getLogger("waypost.engine.hot_table")

# Rotate only while copying the live rows costs at most a quarter of what the dead
# ones cost every claim: a backlog of ready runs is left to vacuum.
ROTATE_DEAD_PER_LIVE = 4
# How long a rotation waits for the old generation's lock; claims that arrive
# meanwhile queue behind it, so this is the most a rotation delays them.
ROTATE_LOCK_TIMEOUT_MS = 100

Cleaning = Literal["rotated", "vacuumed"]


async def clean_if_needed(engine: Engine) -> Cleaning | None:
    """Rotate or vacuum run_queue if it holds more dead tuples than the threshold;
    what was done, or None."""
    threshold = engine.settings.hot_table_vacuum_dead_tuples
    if threshold <= 0:
        return None
    tuples = await maintenance.hot_table_tuples(engine.pool)
    if tuples.dead < threshold:
        return None
    if tuples.live * ROTATE_DEAD_PER_LIVE <= tuples.dead:
        moved = await maintenance.rotate_hot_table(engine.pool,
                                                   lock_timeout_ms=ROTATE_LOCK_TIMEOUT_MS)
        if moved is not None:
            log.info("rotated run_queue", extra={"dead_tuples": tuples.dead,
                                                  "rows_moved": moved})
            return "rotated"
        log.info("run_queue's old generation is locked; vacuuming instead",
                 extra={"dead_tuples": tuples.dead})
    await maintenance.vacuum_hot_table(engine.pool)
    log.info("vacuumed run_queue", extra={"dead_tuples": tuples.dead, "live_tuples": tuples.live})
    return "vacuumed"


async def clean_loop(engine: Engine, stop: asyncio.Event) -> None:
    """Run ``clean_if_needed`` every ``hot_table_vacuum_seconds`` until ``stop``."""
    interval = engine.settings.hot_table_vacuum_seconds
    while not stop.is_set():
        try:
            await clean_if_needed(engine)
        except (*store_pool.UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
            # Not this loop's job to report outages (the dispatcher does); try later.
            log.warning("could not clean run_queue: %s", exc)
        await aiotime.sleep(interval, stop)
