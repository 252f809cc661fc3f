"""Pre-warming plans from queue depth and recent run rate, with a fake clock."""

from __future__ import annotations

import uuid

from waypost.engine import prewarm
from waypost.engine.clock import FakeClock
from waypost.engine.prewarm import RESERVE_MIN_RATE, Demand, plan
from waypost.engine.warm import PoolMember, RateTracker

A, B, C = ("default", "a"), ("default", "b"), ("default", "c")


def member(task: tuple[str, str], idle: bool) -> PoolMember:
    return PoolMember(uuid.uuid4(), task, idle, 0.0)


def test_nothing_runs_nothing_is_warmed() -> None:
    clock = FakeClock()
    assert plan([Demand(A, 5, 0), Demand(B, 5, 0)], [], RateTracker(), clock.monotonic(),
                max_total=50) == {}


def test_queue_depth_warms_up_to_max_warm() -> None:
    clock = FakeClock()
    rates = RateTracker()
    # Three runs wait behind one that runs (a concurrency limit of 1): two more runners
    # would take the task to maxWarm 3.
    members = [member(A, idle=False)]
    assert plan([Demand(A, 3, 3)], members, rates, clock.monotonic(), max_total=50) == {A: 2}
    # The ones already idle (or still starting) count: nothing more.
    members += [member(A, idle=True), member(A, idle=True)]
    assert plan([Demand(A, 3, 3)], members, rates, clock.monotonic(), max_total=50) == {}
    # Off for this task: never.
    assert plan([Demand(A, 0, 9)], [], rates, clock.monotonic(), max_total=50) == {}


def test_a_frequent_task_keeps_one_runner_until_its_rate_decays() -> None:
    clock = FakeClock()
    rates = RateTracker(half_life=60.0)
    for _ in range(30):  # 30 runs over a minute
        rates.record(A, clock.monotonic())
        clock.advance(2.0)
    rates.record(B, clock.monotonic())  # one run: not frequent
    assert rates.rate(A, clock.monotonic()) >= RESERVE_MIN_RATE
    assert plan([Demand(A, 5, 0), Demand(B, 5, 0)], [], rates, clock.monotonic(),
                max_total=50) == {A: 1}
    # A runner busy with a run is the reserve too: runs one after another need one.
    assert plan([Demand(A, 5, 0)], [member(A, idle=False)], rates, clock.monotonic(),
                max_total=50) == {}
    assert plan([Demand(A, 5, 0)], [member(A, idle=True)], rates, clock.monotonic(),
                max_total=50) == {}
    # Ten minutes without a run: the rate has decayed, the pool may go to zero.
    clock.advance(600.0)
    assert rates.rate(A, clock.monotonic()) < RESERVE_MIN_RATE
    assert plan([Demand(A, 5, 0)], [], rates, clock.monotonic(), max_total=50) == {}


def test_the_global_cap_is_shared_busiest_first_and_never_evicts() -> None:
    clock = FakeClock()
    rates = RateTracker()
    for _ in range(50):
        rates.record(B, clock.monotonic())
    for _ in range(5):
        rates.record(C, clock.monotonic())
    demands = [Demand(A, 5, 4), Demand(B, 5, 4), Demand(C, 5, 4)]
    # Room for 6 of the 12 wanted: B (busiest) gets all 4, C (next) the other 2.
    assert plan(demands, [], rates, clock.monotonic(), max_total=6) == {B: 4, C: 2}
    # Retired runners whose process has not ended yet still hold their room.
    full = [member(A, idle=True) for _ in range(6)]
    assert plan(demands, full, rates, clock.monotonic(), max_total=6) == {}


def test_runners_kept_on_the_rate_alone_leave_room_for_demand() -> None:
    clock = FakeClock()
    rates = RateTracker()
    D = ("default", "d")
    for key in (A, B, C):
        for _ in range(10):
            rates.record(key, clock.monotonic())
    frequent = [Demand(A, 5, 0), Demand(B, 5, 0), Demand(C, 5, 0)]
    # A cap of 3: the reserves take two places, never the last one.
    assert plan(frequent, [], rates, clock.monotonic(), max_total=3) == {A: 1, B: 1}
    # Another task's attempt finds the last place free and stays warm there; had it
    # evicted one of the reserves instead, that place is refilled, the last one not.
    members = [member(B, idle=True)]
    assert plan([*frequent, Demand(D, 5, 0)], members, rates, clock.monotonic(),
                max_total=3) == {A: 1}
    members.append(member(A, idle=True))
    assert plan(frequent, members, rates, clock.monotonic(), max_total=3) == {}
    # Runs that wait are demand, not a guess: they may take the last place.
    assert plan([Demand(C, 5, 1)], members, rates, clock.monotonic(), max_total=3) == {C: 1}
    # The headroom grows with the cap.
    assert [prewarm.reserve_headroom(n) for n in (1, 3, 10, 50)] == [1, 1, 1, 5]
