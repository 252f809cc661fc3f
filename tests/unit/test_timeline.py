"""The run page's timeline geometry: attempts, backoff waits, checkpoints and gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from waypost.coordinator import timeline
from waypost.model.enums import AttemptStatus, FailureType, RunStatus
from waypost.model.run import Attempt, Checkpoint, ErrorInfo, Run

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
MIB = 1024 * 1024


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(status: RunStatus, finished: float | None) -> Run:
    return Run(id="r", namespace="default", task="t", queue="t", status=status, priority=0,
               attempt=2, max_attempts=3, memory_bytes=64 * MIB, trace_id="0" * 32,
               source="api", created_at=T0, finished_at=at(finished) if finished else None)


def checkpoint(key: str, attempt: int, seconds: float) -> Checkpoint:
    return Checkpoint(key=key, data={}, attempt=attempt, size_bytes=10, created_at=at(seconds))


def test_attempts_waits_and_checkpoints_on_one_axis() -> None:
    attempts = [
        Attempt(attempt=1, status=AttemptStatus.FAILED, memory_bytes=64 * MIB,
                started_at=at(1), finished_at=at(4),
                error=ErrorInfo(type=FailureType.OOM, message="killed", exit_code=137)),
        Attempt(attempt=2, status=AttemptStatus.SUCCEEDED, memory_bytes=128 * MIB,
                started_at=at(6), finished_at=at(10)),
    ]
    saved = [checkpoint("a", 1, 2), checkpoint("b", 1, 3), checkpoint("c", 2, 9),
             checkpoint("carried", 7, -5)]
    t = timeline.build(run(RunStatus.SUCCEEDED, 10), attempts, saved, now=at(99))
    assert t.start == T0  # the carried checkpoint (older than the run) is clamped
    assert t.end == at(10) and t.seconds == 10  # a finished run ends at its finish, not now
    assert t.queue_wait == timeline.Segment(0, 10, 1)
    first, second = t.bars
    assert (first.span.left, first.span.width) == (10, 30)
    assert first.oom and first.failure == FailureType.OOM and first.exit_code == 137
    assert first.memory_bytes == 64 * MIB
    assert first.wait_after == timeline.Segment(40, 20, 2)  # the backoff wait
    assert [(m.key, m.left, m.gap.seconds) for m in first.marks] == [("a", 20, 1), ("b", 30, 1)]
    assert [(m.key, m.left, m.gap.seconds) for m in second.marks] == [("c", 90, 3)]
    assert second.wait_after is None and not second.oom
    assert [c.key for c in t.carried] == ["carried"]
    assert [tick.label for tick in t.ticks] == ["0", "2.0s", "4.0s", "6.0s", "8.0s", "10s"]


def test_an_active_run_extends_to_now_and_shows_its_pending_backoff() -> None:
    attempts = [Attempt(attempt=1, status=AttemptStatus.FAILED, memory_bytes=MIB,
                        started_at=at(0), finished_at=at(2),
                        error=ErrorInfo(type=FailureType.ERROR, message="x"))]
    t = timeline.build(run(RunStatus.RETRYING, None), attempts, [], now=at(4))
    assert t.seconds == 4
    assert t.bars[0].wait_after == timeline.Segment(50, 50, 2)
    running = [Attempt(attempt=1, status=AttemptStatus.RUNNING, memory_bytes=MIB,
                       started_at=at(1))]
    t = timeline.build(run(RunStatus.RUNNING, None), running, [], now=at(5))
    assert t.bars[0].span == timeline.Segment(20, 80, 4) and t.bars[0].finished_at is None


def test_a_run_that_never_started_is_all_queue_wait() -> None:
    t = timeline.build(run(RunStatus.QUEUED, None), [], [], now=at(3))
    assert t.bars == [] and t.queue_wait == timeline.Segment(0, 100, 3)


@pytest.mark.parametrize(("seconds", "label"), [
    (0.25, "250ms"), (4.25, "4.2s"), (42, "42s"), (190, "3m 10s"), (7500, "2h 05m")])
def test_duration_labels(seconds: float, label: str) -> None:
    assert timeline.duration_label(seconds) == label
