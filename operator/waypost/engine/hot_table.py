"""The leader vacuums the hot table itself when autovacuum is too slow for it.

Every run leaves three dead row versions in ``run_queue`` (claim, completion and
the insert's index entries). Autovacuum only looks at a database every
``autovacuum_naptime`` (60 s by default, a server-wide setting a platform team
may not own); at a few hundred runs per second the table and its indexes grow to
hold a minute of dead rows, and claims walk them. So the dispatcher checks the
dead-tuple count every ``hot_table_vacuum_seconds`` and vacuums the table once
it exceeds ``hot_table_vacuum_dead_tuples``. A vacuum of this small table takes
milliseconds; it cannot remove rows an open transaction may still see, which is
what the ``WaypostLongTransaction`` alert is for.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from waypost import aiotime
from waypost.engine.core import Engine
from waypost.store import maintenance
from waypost.store import pool as store_pool

log = logging.getLogger("waypost.engine.hot_table")


async def vacuum_if_needed(engine: Engine) -> bool:
    """Vacuum run_queue if it holds more dead tuples than the threshold; True if it did."""
    threshold = engine.settings.hot_table_vacuum_dead_tuples
    if threshold <= 0:
        return False
    dead = await maintenance.hot_table_dead_tuples(engine.pool)
    if dead < threshold:
        return False
    await maintenance.vacuum_hot_table(engine.pool)
    log.info("vacuumed run_queue", extra={"dead_tuples": dead})
    return True


async def vacuum_loop(engine: Engine, stop: asyncio.Event) -> None:
    """Run ``vacuum_if_needed`` every ``hot_table_vacuum_seconds`` until ``stop``."""
    interval = engine.settings.hot_table_vacuum_seconds
    while not stop.is_set():
        try:
            await vacuum_if_needed(engine)
        except (*store_pool.UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
            # Not this loop's job to report outages (the dispatcher does); try later.
            log.warning("could not vacuum run_queue: %s", exc)
        await aiotime.sleep(interval, stop)
