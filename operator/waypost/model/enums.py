"""States, failure types and condition reasons, as string enums."""

from __future__ import annotations

from enum import StrEnum

# Runners report it too: defined with the runner protocol, named here with the others.
from waypost.sdk.protocol import FailureType

__all__ = ["AttemptStatus", "FailureType", "MissedRunPolicy", "RunStatus"]


class RunStatus(StrEnum):
    """Where a run is in its life: active (ACTIVE_STATUSES) or final."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"  # waiting out its backoff before the next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a failure that must not be retried (AbortRun, bad entrypoint)
    DEAD_LETTERED = "dead_lettered"  # retries exhausted; can be requeued by a person
    CANCELLED = "cancelled"
    DELAYED = "delayed"  # triggered with a delay or runAt that has not come yet
    WAITING = "waiting"  # suspended: sleeping, waiting for a token or for child runs
    EXPIRED = "expired"  # did not start within its ttl; never ran

    @property
    def is_final(self) -> bool:
        return self not in ACTIVE_STATUSES


#: Statuses of runs that have not ended (waiting and delayed runs hold no worker).
ACTIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING,
                             RunStatus.DELAYED, RunStatus.WAITING})


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"  # the task waits (sleep, token, child runs); not a failure


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
