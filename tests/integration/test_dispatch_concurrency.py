"""A claim batch's starts run side by side on a backend that allows it.

Creating a Pod is two API calls; started one after another, the last attempt of
a burst waited for every Pod before it. A backend with ``start_concurrency``
(:class:`waypost.engine.backend.ConcurrentStarts`) gets that many starts at
once; one without it keeps one at a time. Nothing here waits for time: each
start waits until the expected number of starts are in flight together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.factories import enqueue, register_task, settings
from waypost.engine.backend import AttemptLaunch, ConcurrentStarts, ExitHandler
from waypost.engine.dispatcher import Dispatcher
from waypost.standalone import Standalone

# Generous: the test passes as soon as the starts overlap; this only bounds a failure.
OVERLAP_DEADLINE = 60.0


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Standalone]:
    app = await Standalone(settings(database_url), dispatch=False).start()
    try:
        yield app
    finally:
        await app.stop()


@dataclass
class OverlapBackend:
    """Each start holds until ``together`` starts are in flight at once (or the
    batch has no more to come), and records the most seen together."""

    together: int
    expected: int
    name: str = "overlap"
    start_timeout_seconds: float = 60.0
    in_flight: int = 0
    most: int = 0
    started: list[uuid.UUID] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def set_exit_handler(self, handler: ExitHandler) -> None:
        pass

    def free_slots(self) -> int:
        return 50 - len(self.started)

    async def start(self, launch: AttemptLaunch) -> None:
        async with self._changed:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.started.append(launch.run_id)
            self._changed.notify_all()
            remaining = self.expected - len(self.started) + self.in_flight
            await asyncio.wait_for(self._changed.wait_for(
                lambda: self.in_flight >= min(self.together, remaining)),
                OVERLAP_DEADLINE)
            self.in_flight -= 1

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        pass

    async def close(self) -> None:
        pass


@dataclass
class ConcurrentOverlapBackend(OverlapBackend):
    start_concurrency: int = 3


async def test_a_batch_starts_side_by_side_up_to_the_backends_width(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    await register_task(db, "burst")
    runs = [await enqueue(db, "burst") for _ in range(7)]
    backend = ConcurrentOverlapBackend(together=3, expected=len(runs))
    assert isinstance(backend, ConcurrentStarts)
    dispatcher = Dispatcher(stack.engine, backend)
    try:
        assert await dispatcher.dispatch_once() == len(runs)
    finally:
        await dispatcher.close()
    assert sorted(backend.started) == sorted(runs)
    assert backend.most == 3  # side by side, never more than the width


async def test_a_backend_without_a_width_starts_one_at_a_time_in_claim_order(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    await register_task(db, "burst")
    runs = [await enqueue(db, "burst", priority=p) for p in range(4)]
    backend = OverlapBackend(together=1, expected=len(runs))
    assert not isinstance(backend, ConcurrentStarts)
    dispatcher = Dispatcher(stack.engine, backend)
    try:
        assert await dispatcher.dispatch_once() == len(runs)
    finally:
        await dispatcher.close()
    assert backend.most == 1
    assert backend.started == list(reversed(runs))  # highest priority first
