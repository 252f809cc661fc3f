"""States, failure types and condition reasons, as string enums."""

from __future__ import annotations

from enum import StrEnum

# Runners report it too: defined with the runner protocol, named here with the others.
from waypost.sdk.protocol import FailureType

__all__ = ["AttemptStatus", "FailureType", "MissedRunPolicy", "RunStatus"]


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


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SpecChoice(StrEnum):
    """Which spec a run's attempts run."""

    TRIGGER = "trigger"  # the Task's spec stored when the run was triggered
    CURRENT = "current"  # requeued with the Task's spec at requeue time
    ORIGINAL = "original"  # requeued with the trigger-time spec again


class RequeueSpec(StrEnum):
    """The spec a requeue from the dead-letter queue gives the run."""

    CURRENT = "current"
    ORIGINAL = "original"


class MissedRunPolicy(StrEnum):
    SKIP = "Skip"
    CATCHUP = "Catchup"
