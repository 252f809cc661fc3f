"""Leader election with client-go's algorithm, on a fake clock and an in-memory Lease."""

from __future__ import annotations

import pytest

from waypost.controller.leader import (
    ElectionTiming,
    InMemoryLeaseStore,
    LeaderElector,
    LeaseConflict,
    LeaseRecord,
)
from waypost.engine.clock import FakeClock


def _pair() -> tuple[FakeClock, InMemoryLeaseStore, LeaderElector, LeaderElector, list[str]]:
    clock = FakeClock()
    store = InMemoryLeaseStore()
    events: list[str] = []

    def cb(name: str, what: str):  # type: ignore[no-untyped-def]
        async def record(epoch: int) -> None:
            events.append(f"{name} {what} {epoch}")
        return record

    a = LeaderElector(store, "a", clock, on_started=cb("a", "started"),
                      on_stopped=cb("a", "stopped"))
    b = LeaderElector(store, "b", clock, on_started=cb("b", "started"),
                      on_stopped=cb("b", "stopped"))
    return clock, store, a, b, events


async def test_first_replica_takes_the_lease_and_the_other_waits() -> None:
    clock, store, a, b, events = _pair()
    await a.step()
    await b.step()
    assert a.is_leader and not b.is_leader
    assert events == ["a started 0"]
    assert store.record is not None and store.record.holder == "a"
    for _ in range(20):  # a keeps renewing: b never takes over
        clock.advance(2)
        await a.step()
        await b.step()
    assert a.is_leader and not b.is_leader


async def test_frozen_leader_steps_down_before_the_lease_can_expire() -> None:
    clock, store, a, b, events = _pair()
    await a.step()
    await b.step()  # b observes the record now
    # a freezes: no renewals. b judges expiry by its own elapsed time since it saw
    # the record change: not before 15 s.
    clock.advance(9.9)
    assert a.is_leader
    clock.advance(0.2)  # past the 10 s renew deadline: a no longer counts as leader
    assert not a.is_leader
    await b.step()
    assert not b.is_leader  # 10.1 s < 15 s lease: still a's
    clock.advance(5)
    await b.step()
    assert b.is_leader and b.epoch == 1  # leaseTransitions is the epoch
    # a wakes up: its renewal finds b holding the lease and it stops its work.
    await a.step()
    assert not a.is_leader
    assert events == ["a started 0", "b started 1", "a stopped 0"]
    assert store.record is not None and store.record.transitions == 1


async def test_expiry_ignores_the_holders_clock() -> None:
    """A renewTime written by a machine whose clock runs far ahead must not keep the
    lease alive: only local elapsed time since the record changed counts."""
    clock = FakeClock()
    store = InMemoryLeaseStore()
    from datetime import timedelta

    far_future = clock.now() + timedelta(days=365)
    await store.create(LeaseRecord("skewed", 15, far_future, far_future, 3))
    b = LeaderElector(store, "b", clock)
    await b.step()
    assert not b.is_leader
    clock.advance(15.1)
    await b.step()
    assert b.is_leader and b.epoch == 4


async def test_release_lets_a_successor_take_over_at_once() -> None:
    clock, _store, a, b, events = _pair()
    await a.step()
    await b.step()
    await a.release()
    assert not a.is_leader
    clock.advance(1.5)  # the released lease lasts 1 s
    await b.step()
    assert b.is_leader
    assert events == ["a started 0", "a stopped 0", "b started 1"]


async def test_conflicting_updates_do_not_both_win() -> None:
    store = InMemoryLeaseStore()
    first = await store.create(LeaseRecord("x", 15, None, None, 0))
    await store.update(first)
    with pytest.raises(LeaseConflict):
        await store.update(first)  # stale resourceVersion


def test_timing_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        ElectionTiming(lease_duration=10, renew_deadline=10, retry_period=2)


async def test_a_leader_is_known_to_the_leader_and_to_followers_while_the_lease_lives() -> None:
    """What the operator's /readyz waits for."""
    clock, _store, a, b, _events = _pair()
    assert not a.leader_known and not b.leader_known  # nothing observed yet
    await a.step()
    await b.step()
    assert a.leader_known and b.leader_known  # a leads; b saw a's live lease
    clock.advance(14.9)  # a froze: its lease still lives for both of them
    assert b.leader_known and a.leader_known and not a.is_leader
    clock.advance(0.2)
    assert not b.leader_known and not a.leader_known  # expired: no leader known
    await b.step()
    assert b.is_leader and b.leader_known
