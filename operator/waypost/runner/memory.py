"""What the runner measures of its memory: the attempt's peak, and per step.

The process's peak resident set is Linux's ``VmHWM`` (``/proc/self/status``),
the high-water mark of this program's memory. Not ``ru_maxrss``: Linux carries
that across ``execve``, so a runner forked from a large engine process (the
process backend) would report the engine's size. Children the runner waited for
count with the peak of the largest (``RUSAGE_CHILDREN``). A step's figure is the
process peak at the step's end when the peak rose during the step (the step set
a new high), else the resident memory at its end (the step stayed below an
earlier high, which is all that can be said without sampling).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator

from waypost.sdk import protocol
from waypost.sdk.context import StepTracer

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss() -> int:
    """Peak resident bytes of this process or the largest child it waited for."""
    own = _status_kib("VmHWM")
    if own is None:  # not Linux: the best there is
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def current_rss() -> int:
    """Resident bytes of this process now (``/proc/self/statm``; else the peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return peak_rss()


class MeasuredSteps:
    """A :class:`StepTracer` that also measures each step's memory, then defers
    to ``inner`` (the spans)."""

    def __init__(self, inner: StepTracer) -> None:
        self.inner = inner
        self.steps: dict[str, int] = {}
        self._started = time.monotonic()

    def task_started(self) -> None:
        """The task function is about to run: its time counts from here (importing
        its module does not)."""
        self._started = time.monotonic()

    def traceparent(self) -> str:
        return self.inner.traceparent()

    @contextlib.contextmanager
    def step(self, key: str) -> Iterator[None]:
        before = peak_rss()
        with self.inner.step(key):
            try:
                yield
            finally:
                after = peak_rss()
                if key in self.steps or len(self.steps) < protocol.MAX_USAGE_STEPS:
                    self.steps[key] = after if after > before else current_rss()

    def skipped(self, key: str) -> None:
        self.inner.skipped(key)

    def checkpoint(self, key: str, size: int) -> None:
        self.inner.checkpoint(key, size)

    def usage(self) -> protocol.Usage:
        """The report sent with the outcome; ``task_seconds`` counts from when the
        task function started (:meth:`task_started`)."""
        return protocol.Usage(peak_rss_bytes=peak_rss(), steps=dict(self.steps),
                              task_seconds=round(time.monotonic() - self._started, 3))
