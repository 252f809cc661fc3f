"""Warm-pool eviction order: least recently used first, boosted by each task's run rate.

Time is a fake monotonic clock (plain floats): no sleeping.
"""

from __future__ import annotations

import uuid

import pytest

from waypost.engine.clock import FakeClock
from waypost.engine.credentials import CredentialSigner, InvalidCredential
from waypost.engine.warm import IdleRunner, RateTracker, eviction_order, fingerprint
from waypost.model.task import TaskSpec

A, B, C = ("default", "a"), ("default", "b"), ("default", "c")


def runner(task: tuple[str, str], last_used: float) -> IdleRunner:
    return IdleRunner(uuid.uuid4(), task, last_used)


def test_plain_lru_without_runs() -> None:
    clock = FakeClock()
    rates = RateTracker()
    old, mid, new = runner(A, 10.0), runner(B, 20.0), runner(C, 30.0)
    order = eviction_order([new, old, mid], rates, clock.monotonic())
    assert order == [old.runner_id, mid.runner_id, new.runner_id]


def test_a_busy_task_outlives_a_more_recent_idle_one() -> None:
    clock = FakeClock()
    rates = RateTracker(half_life=60.0)
    start = clock.monotonic()
    # Task A ran 120 times over the last two minutes; task C once.
    for _ in range(120):
        rates.record(A, clock.monotonic())
        clock.advance(1.0)
    rates.record(C, clock.monotonic())
    now = clock.monotonic()
    busy_but_older = runner(A, start + 60.0)   # idle for a minute
    quiet_recent = runner(C, now - 5.0)        # idle for five seconds
    assert eviction_order([busy_but_older, quiet_recent], rates, now) == [
        quiet_recent.runner_id, busy_but_older.runner_id]


def test_the_boost_fades_when_a_task_stops_running() -> None:
    clock = FakeClock()
    rates = RateTracker(half_life=60.0)
    for _ in range(120):
        rates.record(A, clock.monotonic())
        clock.advance(0.5)
    hot = rates.rate(A, clock.monotonic())
    clock.advance(600.0)  # ten half-lives later
    assert rates.rate(A, clock.monotonic()) < hot / 1000
    now = clock.monotonic()
    a_runner, c_runner = runner(A, now - 100.0), runner(C, now - 50.0)
    assert eviction_order([c_runner, a_runner], rates, now)[0] == a_runner.runner_id


def test_rate_is_runs_per_minute() -> None:
    clock = FakeClock()
    rates = RateTracker(half_life=30.0)
    for _ in range(600):  # 1 run/s for 10 minutes: steady state
        rates.record(B, clock.monotonic())
        clock.advance(1.0)
    assert rates.rate(B, clock.monotonic()) == pytest.approx(60.0, rel=0.05)


def test_fingerprint_changes_with_what_matters() -> None:
    spec = TaskSpec.model_validate({"entrypoint": "m:f", "image": "img:1"})
    base = fingerprint("ns", "t", spec, 512)
    assert fingerprint("ns", "t", spec, 512) == base
    assert fingerprint("ns", "t", spec, 1024) != base  # an OOM retry's bigger limit
    assert fingerprint("ns", "u", spec, 512) != base
    for change in ({"image": "img:2"}, {"entrypoint": "m:g"}, {"env": {"X": "1"}},
                   {"envFrom": [{"secretRef": {"name": "s"}}]}):
        changed = TaskSpec.model_validate({"entrypoint": "m:f", "image": "img:1", **change})
        assert fingerprint("ns", "t", changed, 512) != base, change
    # What does not change the runner (retry policy, queue) keeps the fingerprint.
    retry = TaskSpec.model_validate({"entrypoint": "m:f", "image": "img:1",
                                     "retry": {"maxAttempts": 9}})
    assert fingerprint("ns", "t", retry, 512) == base


def test_runner_credentials_are_distinct_from_attempt_credentials() -> None:
    signer = CredentialSigner(b"k" * 32)
    rid = uuid.uuid4()
    token = signer.issue_runner(rid)
    assert signer.verify_runner(token) == rid
    with pytest.raises(InvalidCredential):
        signer.verify(token)
    with pytest.raises(InvalidCredential):
        signer.verify_runner(signer.issue(rid, 7))
    with pytest.raises(InvalidCredential):
        CredentialSigner(b"x" * 32).verify_runner(token)
