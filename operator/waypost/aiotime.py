"""Interruptible waits for the operator's loops, in one place.

Every long-running loop (dispatcher, scheduler, status mirror, leader
election, hot-table vacuum) pauses between passes and must stop at once when
told to, or wake early when there is work. :func:`sleep` is that pause, as
kopf's ``aiotime.sleep`` is kopf's: sleep a delay or until any of the given
events is set, whichever comes first. :func:`reconnect_delay` is the one pause
before trying an unreachable store again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from waypost.sdk.retry import backoff_delay

#: A clock's sleep (``Clock.sleep``), so a fake clock can stand in for time.
Sleeper = Callable[[float], Awaitable[None]]

#: Ceiling of :func:`reconnect_delay`, in seconds.
RECONNECT_MAX_SECONDS = 30.0


async def sleep(seconds: float, *wakeups: asyncio.Event,
                sleeper: Sleeper = asyncio.sleep) -> bool:
    """Wait ``seconds``, or until one of ``wakeups`` is set, whichever is first.

    Returns whether an event ended the wait (``True`` also when one was set
    already: then it does not wait at all), ``False`` when the time ran out.
    ``sleeper`` waits out the time (a clock's ``sleep`` in tests).
    """
    if any(event.is_set() for event in wakeups):
        return True
    timer = asyncio.ensure_future(sleeper(max(0.0, seconds)))
    waiters = [asyncio.ensure_future(event.wait()) for event in wakeups]
    try:
        await asyncio.wait([timer, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (timer, *waiters):
            waiter.cancel()
        # Collected so that no "task was destroyed but it is pending" is left behind.
        await asyncio.gather(timer, *waiters, return_exceptions=True)
    return any(event.is_set() for event in wakeups)


def reconnect_delay(failures: int, ceiling: float = RECONNECT_MAX_SECONDS) -> float:
    """Pause before trying again after ``failures`` (≥ 1) failures in a row to
    reach a dependency: 1 s, doubling, at most ``ceiling``."""
    return backoff_delay(failures, initial=1.0, factor=2.0, maximum=ceiling)
