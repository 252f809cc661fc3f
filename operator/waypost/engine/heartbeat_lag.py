"""How long this process has recently taken to record a heartbeat.

A heartbeat is evidence of life from the moment it reaches the coordinator, but the
lease it renews is written only when its statement runs. On a busy machine (CPU
starved, the store's pool saturated) that takes seconds: measured at load 40, 2 s on
average and up to 12 s, longer than a 1 s heartbeat's 3 s window. That delay is the
coordinator's, not the runner's, so the reaper adds the recent delay to its
allowance before it calls an attempt lost, the way Lifeguard (HashiCorp's SWIM
extension) scales its timeouts by the local node's own health. A runner that stops
beating is still noticed: its beats stop arriving, whatever the allowance.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from collections.abc import Iterator

from waypost.engine.clock import Clock

# How long a slow recording keeps widening the allowance.
WINDOW_SECONDS = 60.0


class HeartbeatLag:
    """The longest time a heartbeat took to be recorded here (arrival to commit)
    within the last :data:`WINDOW_SECONDS`, heartbeats still in flight included."""

    def __init__(self, clock: Clock, window: float = WINDOW_SECONDS) -> None:
        self._clock = clock
        self._window = window
        self._ids = itertools.count()
        self._in_flight: dict[int, float] = {}
        # (when recorded, how long it took): appended in time order.
        self._recent: deque[tuple[float, float]] = deque()

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Time one heartbeat's recording (the block that writes its lease)."""
        key = next(self._ids)
        started = self._in_flight[key] = self._clock.monotonic()
        try:
            yield
        finally:
            del self._in_flight[key]
            now = self._clock.monotonic()
            self._recent.append((now, now - started))

    def seconds(self) -> float:
        """The recent delay: the slowest recording in the window, or the age of the
        oldest heartbeat still being recorded, whichever is longer."""
        now = self._clock.monotonic()
        while self._recent and self._recent[0][0] < now - self._window:
            self._recent.popleft()
        oldest = min(self._in_flight.values(), default=now)
        return max(now - oldest, max((d for _, d in self._recent), default=0.0))
