"""The one interruptible sleep of the operator's loops, and the reconnect pause."""

from __future__ import annotations

import asyncio
import time

from waypost import aiotime
from waypost.engine.clock import FakeClock


async def test_the_time_runs_out_when_no_event_is_set() -> None:
    stop = asyncio.Event()
    started = time.monotonic()
    assert await aiotime.sleep(0.05, stop) is False
    assert time.monotonic() - started >= 0.045


async def test_any_event_ends_the_wait_at_once() -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, wake.set)
    started = time.monotonic()
    assert await aiotime.sleep(30, stop, wake) is True
    assert time.monotonic() - started < 5
    assert not stop.is_set()


async def test_an_event_already_set_does_not_wait() -> None:
    stop = asyncio.Event()
    stop.set()
    clock = FakeClock()
    assert await aiotime.sleep(30, stop, sleeper=clock.sleep) is True
    assert clock.monotonic() == 0.0


async def test_an_injected_clock_does_the_sleeping_and_nothing_is_left_pending() -> None:
    clock = FakeClock()
    before = len(asyncio.all_tasks())
    assert await aiotime.sleep(12.5, asyncio.Event(), sleeper=clock.sleep) is False
    assert clock.monotonic() == 12.5
    assert len(asyncio.all_tasks()) == before


async def test_cancelling_the_sleeper_cancels_its_waiters() -> None:
    before = len(asyncio.all_tasks())
    sleeping = asyncio.ensure_future(aiotime.sleep(30, asyncio.Event()))
    await asyncio.sleep(0.01)
    sleeping.cancel()
    await asyncio.gather(sleeping, return_exceptions=True)
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


def test_reconnect_delay_doubles_from_one_second_up_to_its_ceiling() -> None:
    assert [aiotime.reconnect_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert aiotime.reconnect_delay(3, ceiling=2.5) == 2.5
