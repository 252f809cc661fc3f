"""Counters and histograms of runs, attempts and checkpoints (Prometheus naming).

They are fed from the run event log by the leader (:mod:`waypost.engine.telemetry`),
not from the code paths that change runs: every change writes its event in the same
transaction (migration 0012), whichever replica, statement or SQL function made it,
so the counts miss nothing and the hot path pays nothing. Only the leader counts;
other replicas export the series at zero until they lead. A new leader starts from
zero (Prometheus treats it as a counter reset), counting what happens from then on.

Durations and queue waits are differences of database timestamps; no runner clock
enters a metric.

Labels: ``task_namespace`` and ``task`` (not ``namespace``: Prometheus sets that one
to the scraped operator Pod's namespace) are bounded by :attr:`RunMetrics.max_tasks`
(Tasks are declared objects, but a cluster may hold many): past that many distinct
pairs, new ones are counted under ``task="_other"``. No label carries a run id,
a concurrency key or an error message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from waypost.store.telemetry import Tally

OTHER_TASK = "_other"

# Queue waits and run durations span milliseconds (a warm drain) to hours (backoff,
# long tasks).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
# Checkpoints: from a flag to the 1 MiB default limit and beyond (limits are settings).
BYTES_BUCKETS = (64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
                  4194304.0, 16777216.0)


class RunMetrics:
    """The series of one process, in a registry of their own (scraped at /metrics)."""

    def __init__(self, max_tasks: int = 200) -> None:
        self.max_tasks = max_tasks
        self._tasks: set[tuple[str, str]] = set()
        self.registry = CollectorRegistry()
        r = self.registry
        task = ["task_namespace", "task"]
        self.triggered = Counter(
            "waypost_runs_triggered", "Runs created, by how they were triggered "
            "(api, taskrun, schedule, replay, ...).", [*task, "source"], registry=r)
        self.finished = Counter(
            "waypost_runs_finished", "Runs that reached a final status "
            "(succeeded, failed, dead_lettered, cancelled).", [*task, "status"], registry=r)
        self.attempts = Counter(
            "waypost_attempts_finished", "Attempts that ended, by outcome: succeeded, "
            "cancelled, or the failure type (error, oom, timeout, lost, exit).",
            [*task, "outcome"], registry=r)
        self.oom_kills = Counter(
            "waypost_attempt_oom_kills", "Attempts killed for exceeding their memory limit.",
            task, registry=r)
        self.retries = Counter(
            "waypost_run_retries", "Failed attempts followed by a retry (the run went back "
            "to its queue after a backoff).", task, registry=r)
        self.dead_lettered = Counter(
            "waypost_runs_dead_lettered", "Runs moved to the dead-letter queue.", task,
            registry=r)
        self.queue_wait = Histogram(
            "waypost_queue_wait_seconds", "From when an attempt could be claimed (trigger, "
            "end of backoff) to its claim, on the database clock.", task,
            buckets=SECONDS_BUCKETS, registry=r)
        self.run_duration = Histogram(
            "waypost_run_duration_seconds", "From trigger to final status (queue waits and "
            "backoffs included), by final status.", [*task, "status"],
            buckets=SECONDS_BUCKETS, registry=r)
        self.attempt_duration = Histogram(
            "waypost_attempt_duration_seconds", "From claim to end of an attempt, by "
            "outcome.", [*task, "outcome"], buckets=SECONDS_BUCKETS, registry=r)
        self.checkpoint_size = Histogram(
            "waypost_checkpoint_size_bytes", "Size of written checkpoints (encoded JSON).",
            task, buckets=BYTES_BUCKETS, registry=r)
        # The series a Tally names (store.telemetry, telemetry.sql's 'series').
        self.series: dict[str, Counter | Histogram] = {
            "triggered": self.triggered, "finished": self.finished,
            "attempts": self.attempts, "oom_kills": self.oom_kills,
            "retries": self.retries, "dead_lettered": self.dead_lettered,
            "queue_wait": self.queue_wait, "run_duration": self.run_duration,
            "attempt_duration": self.attempt_duration,
            "checkpoint_size": self.checkpoint_size,
        }
        # A series' child by its label values, looked up once: prometheus_client's
        # labels() validates and locks on every call. Bounded as the labels are
        # (max_tasks pairs, a few statuses, outcomes and sources).
        self._children: dict[tuple[str, str, str, str | None], Any] = {}

    def task_labels(self, namespace: str, task: str) -> tuple[str, str]:
        """The (namespace, task) labels of a run: its own while fewer than
        ``max_tasks`` pairs were seen, else ``task="_other"`` (bounded cardinality)."""
        key = (namespace, task)
        if key in self._tasks:
            return key
        if len(self._tasks) < self.max_tasks:
            self._tasks.add(key)
            return key
        return (namespace, OTHER_TASK)

    def add(self, tallies: Iterable[Tally]) -> None:
        """Add what a page of the event log summed per series (the leader's reader,
        engine.telemetry): counters by their count; histograms by their count of
        observations in one bucket and those observations' sum."""
        for t in tallies:
            namespace, task = self.task_labels(t.namespace, t.task)
            key = (t.series, namespace, task, t.label)
            child: Any = self._children.get(key)
            if child is None:
                metric = self.series[t.series]
                values = (namespace, task) if t.label is None else (namespace, task, t.label)
                child = self._children[key] = metric.labels(*values)
            if t.bucket is None:
                child.inc(t.n)
            else:
                add_observations(child, t.bucket, t.n, t.total or 0.0)


def add_observations(child: Histogram, bucket: int, count: int, total: float) -> None:
    """Add ``count`` observations summing to ``total`` to bucket ``bucket`` of a
    histogram's child, as that many ``observe()`` calls would.

    prometheus_client has no call for this; it relies on its Histogram's layout (a
    value per bucket, non-cumulative, and one for the sum), which a unit test checks
    against observe() so that an upgrade that changes it fails there."""
    child._buckets[bucket].inc(count)
    child._sum.inc(total)
