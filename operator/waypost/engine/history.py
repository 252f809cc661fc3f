"""History retention: the leader removes finished runs once they expired.

A finished run (succeeded, failed, cancelled) is kept for its Task's
``spec.history.retainFor``, else the installation's ``history_retain_seconds``
(7 days); a dead-lettered run waits for a person for ``dead_letter_retain_seconds``
(30 days) unless it is requeued or deleted first. Removing a run removes its
attempts, checkpoints, logs and events with it; a TaskRun keeps the final status
it mirrored (the mirror patches only runs that change, and a resumed TaskRun
handler leaves a run it no longer finds alone).

A pass is a series of small batches, each its own short transaction that locks
only the rows it removes (SKIP LOCKED), so claims, which never touch finished
runs, are never blocked by it. Cutoffs come from the engine's clock, so tests
expire history with a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import timedelta

import asyncpg

from waypost import aiotime
from waypost.engine.core import Engine
from waypost.store import history
from waypost.store import pool as store_pool

log = logging.getLogger("waypost.engine.history")

# A pass stops after this many batches and lets the next pass continue, so one
# huge backlog (a retention shortened from 30 days to 1) never monopolises the loop.
MAX_BATCHES_PER_PASS = 1000


async def expire(engine: Engine) -> Counter[str]:
    """One retention pass; returns how many runs were removed per status."""
    settings = engine.settings
    now = engine.clock.now()
    removed: Counter[str] = Counter()
    batch = settings.history_retention_batch
    for _ in range(MAX_BATCHES_PER_PASS):
        statuses = await history.expire_finished(
            engine.pool, now=now, default_seconds=settings.history_retain_seconds, batch=batch)
        removed.update(statuses)
        if len(statuses) < batch:
            break
    if settings.dead_letter_retain_seconds > 0:
        cutoff = now - timedelta(seconds=settings.dead_letter_retain_seconds)
        for _ in range(MAX_BATCHES_PER_PASS):
            n = await history.expire_dead_letters(engine.pool, cutoff=cutoff, batch=batch)
            removed["dead_lettered"] += n
            if n < batch:
                break
    removed = +removed  # without zero counts
    if removed:
        log.info("expired history", extra={"runs": dict(removed)})
    return removed


async def retention_loop(engine: Engine, stop: asyncio.Event) -> None:
    """Run :func:`expire` every ``history_retention_interval_seconds`` until ``stop``."""
    interval = engine.settings.history_retention_interval_seconds
    while not stop.is_set():
        try:
            await expire(engine)
        except (*store_pool.UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
            # The dispatcher reports outages; retention simply tries again later.
            log.warning("could not expire history: %s", exc)
        await aiotime.sleep(interval, stop)
