"""States, failure types and condition reasons, as string enums."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its life. The first three are active; the rest are final."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"  # waiting out its backoff before the next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a failure that must not be retried (AbortRun, bad entrypoint)
    DEAD_LETTERED = "dead_lettered"  # retries exhausted; can be requeued by a person
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING)


class FailureType(StrEnum):
    """Why an attempt ended without a result."""

    ERROR = "error"  # the task raised
    OOM = "oom"  # killed for exceeding its memory limit
    TIMEOUT = "timeout"  # ran past the task's maxDuration
    LOST = "lost"  # heartbeats stopped, Pod deleted, node lost
    EXIT = "exit"  # the runner process exited without reporting
    CANCELLED = "cancelled"


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class MissedRunPolicy(StrEnum):
    SKIP = "Skip"
    CATCHUP = "Catchup"
