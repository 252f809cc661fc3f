"""The run page's timeline: attempts, backoff waits and checkpoints on one time axis.

A pure function of a run's records and the current time; the template only draws
what it returns (positions are percentages of the axis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from waypost.model.enums import FailureType
from waypost.model.run import Attempt, Checkpoint, Run


@dataclass(frozen=True)
class Segment:
    """A stretch of the axis: ``left`` and ``width`` in percent."""

    left: float
    width: float
    seconds: float


@dataclass(frozen=True)
class Mark:
    """A checkpoint on its attempt's row, with the time since the previous mark (or
    since the attempt started): the gap between checkpoints."""

    key: str
    attempt: int
    left: float
    at: datetime
    size_bytes: int
    gap: Segment


@dataclass(frozen=True)
class Bar:
    """One attempt: when it ran, how it ended, its checkpoints, and the backoff wait
    before the next attempt."""

    attempt: int
    status: str
    span: Segment
    started_at: datetime
    finished_at: datetime | None
    failure: FailureType | None
    exit_code: int | None
    oom: bool
    memory_bytes: int
    message: str | None
    marks: list[Mark] = field(default_factory=list)
    wait_after: Segment | None = None


@dataclass(frozen=True)
class Tick:
    left: float
    label: str


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    seconds: float
    queue_wait: Segment | None
    bars: list[Bar]
    ticks: list[Tick]
    # Checkpoints written by no attempt of this run: carried over by a replay.
    carried: list[Checkpoint]


def _nice_step(seconds: float, ticks: int = 5) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    raw = max(seconds / ticks, 1e-3)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(f * power for f in (1.0, 2.0, 5.0, 10.0) if raw <= f * power)


def duration_label(seconds: float) -> str:
    """A short human duration: 850ms, 4.2s, 3m 10s, 2h 05m."""
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def build(run: Run, attempts: Sequence[Attempt], checkpoints: Sequence[Checkpoint],
          now: datetime) -> Timeline:
    """Lay out ``run``'s attempts and checkpoints from its creation to its end (or now)."""
    start = run.created_at
    ends = [run.finished_at or now]
    ends += [a.finished_at or now for a in attempts]
    ends += [c.created_at for c in checkpoints]
    end = max([*ends, start + timedelta(milliseconds=1)])
    total = (end - start).total_seconds()

    def pos(t: datetime) -> float:
        return min(100.0, max(0.0, (t - start).total_seconds() / total * 100))

    def segment(a: datetime, b: datetime) -> Segment:
        left = pos(a)
        return Segment(left, max(pos(b) - left, 0.0), max((b - a).total_seconds(), 0.0))

    by_attempt: dict[int, list[Checkpoint]] = {}
    for c in checkpoints:
        by_attempt.setdefault(c.attempt, []).append(c)
    numbers = {a.attempt for a in attempts}
    carried = [c for c in checkpoints if c.attempt not in numbers]

    bars: list[Bar] = []
    ordered = sorted(attempts, key=lambda a: a.attempt)
    for i, a in enumerate(ordered):
        finish = a.finished_at or now
        marks = []
        previous = a.started_at
        for c in sorted(by_attempt.get(a.attempt, []), key=lambda c: c.created_at):
            marks.append(Mark(c.key, c.attempt, pos(c.created_at), c.created_at, c.size_bytes,
                              segment(previous, c.created_at)))
            previous = c.created_at
        wait = None
        if i + 1 < len(ordered) and a.finished_at is not None:
            wait = segment(a.finished_at, ordered[i + 1].started_at)
        elif a.finished_at is not None and run.status == "retrying":
            wait = segment(a.finished_at, now)
        error = a.error
        bars.append(Bar(
            attempt=a.attempt, status=a.status.value, span=segment(a.started_at, finish),
            started_at=a.started_at, finished_at=a.finished_at,
            failure=error.type if error else None, exit_code=error.exit_code if error else None,
            oom=error is not None and error.type == FailureType.OOM,
            memory_bytes=a.memory_bytes, message=error.message if error else None,
            marks=marks, wait_after=wait,
        ))
    queue_wait = segment(start, ordered[0].started_at) if ordered else segment(start, end)
    step = _nice_step(total)
    ticks = [Tick(min(100.0, n * step / total * 100), duration_label(n * step))
             for n in range(int(total // step) + 1)]
    return Timeline(start, end, total, queue_wait, bars, ticks, carried)
