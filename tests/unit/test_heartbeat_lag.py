"""The reaper's allowance for this coordinator's own slowness (engine.heartbeat_lag)."""

from __future__ import annotations

import pytest

from waypost.engine.clock import FakeClock
from waypost.engine.heartbeat_lag import HeartbeatLag


def test_the_lag_is_the_slowest_recent_recording_or_the_oldest_in_flight() -> None:
    clock = FakeClock()
    lag = HeartbeatLag(clock, window=60.0)
    assert lag.seconds() == 0.0
    with lag.timing():
        clock.advance(4.5)
        # Still being recorded: its age counts already.
        assert lag.seconds() == 4.5
    clock.advance(1.0)
    with lag.timing():
        clock.advance(0.01)
    assert lag.seconds() == 4.5  # the slow one, within the window
    clock.advance(59.0)
    assert lag.seconds() == pytest.approx(0.01)  # the slow one has left the window
    clock.advance(60.0)
    assert lag.seconds() == 0.0


def test_a_failed_recording_counts_too() -> None:
    clock = FakeClock()
    lag = HeartbeatLag(clock)
    try:
        with lag.timing():
            clock.advance(2.0)
            raise RuntimeError("store unavailable")
    except RuntimeError:
        pass
    assert lag.seconds() == 2.0
