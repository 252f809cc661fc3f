"""The TaskRun resource and the status blocks of Task and TaskRun.

A ``TaskRun`` is a trigger made with kubectl or GitOps: its spec says which
Task to run with which payload; its status mirrors the run kept in Postgres.
There is no ``phase`` field (the Kubernetes API conventions advise against
one): like Tekton, a ``Succeeded`` condition summarises the run, ``Unknown``
while it is queued, running or waiting to retry, then ``True`` or ``False``,
and its reason says which. ``kubectl wait --for=condition=Succeeded`` works.

These models are the source of the CRD schemas (:mod:`waypost.model.crd`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from waypost.model.base import ApiModel
from waypost.model.enums import FailureType, RunStatus
from waypost.model.inputs import JsonValue, SafeText
from waypost.model.task import NAME_PATTERN
from waypost.sdk.durations import DURATION_PATTERN

# The Kubernetes API conventions' shape of a condition reason (metav1.Condition).
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
MAX_KEY_LENGTH = 256

SUCCEEDED = "Succeeded"
"""Type of a TaskRun's summary condition."""
READY = "Ready"
"""Type of a Task's summary condition."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class TaskRunReason(StrEnum):
    """Reason of a TaskRun's ``Succeeded`` condition: where its run is."""

    QUEUED = "Queued"
    RUNNING = "Running"
    RETRYING = "Retrying"  # waiting out its backoff before the next attempt
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # a failure that is not retried (AbortRun, unloadable entrypoint)
    DEAD_LETTERED = "DeadLettered"  # retries exhausted; a person can requeue it
    CANCELLED = "Cancelled"
    WAITING = "Waiting"  # suspended: sleeping, waiting for a token or for child runs
    DELAYED = "Delayed"  # spec.delay or spec.runAt has not come yet
    EXPIRED = "Expired"  # it did not start within spec.ttl; it never ran
    # Not a run state: no run exists because the TaskRun cannot be enqueued
    # (its Task does not exist, or the replay names an unknown run). A schema
    # cannot check this, so the controller reports it here.
    TASK_NOT_FOUND = "TaskNotFound"
    INVALID = "Invalid"

    @classmethod
    def from_run_status(cls, status: RunStatus) -> TaskRunReason:
        return _REASON_OF_STATUS[status]

    @property
    def condition_status(self) -> ConditionStatus:
        """``Unknown`` while the run may still succeed, then ``True`` or ``False``."""
        if self is TaskRunReason.SUCCEEDED:
            return ConditionStatus.TRUE
        if self in (TaskRunReason.QUEUED, TaskRunReason.RUNNING, TaskRunReason.RETRYING,
                    TaskRunReason.WAITING, TaskRunReason.DELAYED,
                    TaskRunReason.TASK_NOT_FOUND):
            # A TaskRun created just before its Task is not failed yet.
            return ConditionStatus.UNKNOWN
        return ConditionStatus.FALSE


_REASON_OF_STATUS: dict[RunStatus, TaskRunReason] = {
    RunStatus.QUEUED: TaskRunReason.QUEUED,
    RunStatus.RUNNING: TaskRunReason.RUNNING,
    RunStatus.RETRYING: TaskRunReason.RETRYING,
    RunStatus.SUCCEEDED: TaskRunReason.SUCCEEDED,
    RunStatus.FAILED: TaskRunReason.FAILED,
    RunStatus.DEAD_LETTERED: TaskRunReason.DEAD_LETTERED,
    RunStatus.CANCELLED: TaskRunReason.CANCELLED,
    RunStatus.WAITING: TaskRunReason.WAITING,
    RunStatus.DELAYED: TaskRunReason.DELAYED,
    RunStatus.EXPIRED: TaskRunReason.EXPIRED,
}

WAITING = "Waiting"
"""Type of a TaskRun's condition that says whether, and for what, its run waits."""


class WaitingReason(StrEnum):
    """Reason of a TaskRun's ``Waiting`` condition."""

    SLEEPING = "Sleeping"  # ctx.wait_for / ctx.wait_until
    WAITING_FOR_TOKEN = "WaitingForToken"  # ctx.wait_for_token
    WAITING_FOR_CHILDREN = "WaitingForChildren"  # ctx.trigger_and_wait
    DELAYED = "Delayed"  # spec.delay / spec.runAt
    RESUMED = "Resumed"  # status False: it waited, and no longer does

    @classmethod
    def of_wait(cls, kind: str) -> WaitingReason:
        return {"sleep": cls.SLEEPING, "token": cls.WAITING_FOR_TOKEN,
                "children": cls.WAITING_FOR_CHILDREN, "delay": cls.DELAYED}[kind]


class TaskReason(StrEnum):
    """Reason of a Task's ``Ready`` condition."""

    SYNCED = "Synced"  # the definition is stored; runs can be enqueued
    INVALID = "Invalid"  # the spec passed the schema but not the model's checks
    INVALID_SCHEDULE = "InvalidSchedule"  # a schedule's cron or timezone is malformed
    STORE_UNAVAILABLE = "StoreUnavailable"  # Postgres could not be reached; retried
    DELETING = "Deleting"  # queued runs are being cancelled


class Condition(ApiModel):
    """One observation of the resource, as metav1.Condition defines it."""

    type: str = Field(
        ..., pattern=CONDITION_TYPE_PATTERN, max_length=316,
        description="Type of condition in CamelCase, for example Succeeded or Ready.",
    )
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    reason: str = Field(
        ..., pattern=REASON_PATTERN, min_length=1, max_length=1024,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        "", max_length=32768, description="Human-readable details of the last transition."
    )
    last_transition_time: datetime = Field(
        ..., description="When the condition last changed status (not reason or message)."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation this condition was set for."
    )


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of that type, if there is one."""
    return next((c for c in conditions if c.type == type_), None)


_CONDITIONS_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def _conditions_field() -> Any:
    return Field(
        default_factory=list,
        max_length=32,
        description="Observations of the resource's state; at most one per type.",
        json_schema_extra=_CONDITIONS_EXTRA,
    )


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Conditions with ``new`` in place of the one of its type.

    ``lastTransitionTime`` only moves when the status changes, as the API
    conventions ask; a new reason or message alone keeps the old time.
    """
    old = find_condition(conditions, new.type)
    if old is None:
        return [*conditions, new]
    if old.status == new.status:
        new = new.model_copy(update={"last_transition_time": old.last_transition_time})
    return [new if c.type == new.type else c for c in conditions]


def succeeded_condition(
    reason: TaskRunReason, message: str, *, now: datetime, generation: int | None = None
) -> Condition:
    """A TaskRun's ``Succeeded`` condition for a reason; its status follows from it."""
    return Condition(
        type=SUCCEEDED,
        status=reason.condition_status,
        reason=reason,
        message=message[:32768],
        last_transition_time=now,
        observed_generation=generation,
    )


class TaskRef(ApiModel):
    """The Task to run, in the TaskRun's namespace."""

    name: str = Field(
        ..., pattern=NAME_PATTERN, min_length=1, max_length=63, description="Name of the Task."
    )


class Replay(ApiModel):
    """Run a finished run again from one of its checkpoints, with edited input."""

    from_run: str = Field(
        ..., min_length=1, max_length=64, description="Id of the run to replay."
    )
    from_checkpoint: str | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Resume right after this checkpoint of that run; from the start when "
        "omitted.",
    )
    payload: JsonValue = Field(
        None, description="Payload of the replay; when omitted, the TaskRun's payload if it "
        "has one, else the original run's.",
    )
    checkpoints: dict[str, JsonValue] | None = Field(
        None, description="Edited data of copied checkpoints, by key.",
    )
    spec: Literal["current", "original"] = Field(
        "current", description="Run the Task's current spec, or the one the original ran.",
    )


class TaskRunSpec(ApiModel):
    """A request to run a Task once. Immutable once created."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "self == oldSelf",
        "message": "spec is immutable: a TaskRun is one trigger; create a new TaskRun",
    }]})

    task_ref: TaskRef
    payload: JsonValue = Field(
        None,
        description="Input of the task function, any JSON value. Its size is limited by the "
        "coordinator (and by the API server's object size), not by this schema.",
    )
    priority: int | None = Field(
        None, ge=-1000, le=1000,
        description="Higher runs first; the Task's queue.defaultPriority when omitted.",
    )
    idempotency_key: SafeText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Runs with the same key for the same Task are one run; the TaskRun's uid "
        "when omitted.",
    )
    concurrency_key: SafeText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Groups runs (a tenant, a user) for the queue's perKeyConcurrency limit.",
    )
    replay: Replay | None = None
    delay: str | None = Field(
        None, pattern=DURATION_PATTERN, max_length=64,
        description="Start no earlier than this long after the TaskRun is created, like "
        "\"90s\", \"10m\", \"1h30m\"; the run is Delayed until then.")
    run_at: datetime | None = Field(
        None, description="Start no earlier than this time; the run is Delayed until then.")
    ttl: str | None = Field(
        None, pattern=DURATION_PATTERN, max_length=64,
        description="When the run has not started this long after the TaskRun is created, "
        "it ends Expired and never runs (like \"1h\").")


class TaskRunError(ApiModel):
    """Why the run's last attempt failed."""

    type: FailureType
    message: str = Field("", max_length=32768)
    exit_code: int | None = Field(None, description="Exit code of the runner, when it exited.")
    oom_killed: bool = Field(False, description="The attempt was killed for exceeding its memory.")


class TaskRunStatus(ApiModel):
    """The run as the operator last saw it in Postgres."""

    conditions: list[Condition] = _conditions_field()
    observed_generation: int | None = Field(None, ge=0)
    run_id: str | None = Field(None, description="Id of the run in waypost's store.")
    attempt: int | None = Field(None, ge=0, description="Number of the latest attempt.")
    start_time: datetime | None = Field(None, description="When the first attempt started.")
    completion_time: datetime | None = Field(None, description="When the run finished.")
    last_checkpoint: str | None = Field(
        None, max_length=MAX_KEY_LENGTH, description="Key of the latest checkpoint."
    )
    result: Any = Field(None, description="Return value of the task function.")
    error: TaskRunError | None = None
    pod_name: str | None = Field(None, description="Pod of the latest attempt.")
    trace_id: str | None = Field(None, description="W3C trace id of the run.")
    waiting_until: datetime | None = Field(
        None, description="While the run waits: when its sleep or delay ends, or its token "
        "times out.")
    waiting_for_token: str | None = Field(
        None, max_length=64, description="While the run waits for a token: its id.")
    waiting_for_children: list[str] | None = Field(
        None, max_length=1000,
        description="While the run waits for child runs: their ids (they have no TaskRun).")

    def succeeded(self) -> Condition | None:
        return find_condition(self.conditions, SUCCEEDED)


class TaskStatus(ApiModel):
    """The Task as the operator last saw it: sync state, queue and pool figures."""

    conditions: list[Condition] = _conditions_field()
    observed_generation: int | None = Field(None, ge=0)
    queue_depth: int | None = Field(None, ge=0, description="Runs waiting in the queue.")
    running: int | None = Field(None, ge=0, description="Runs with an attempt running now.")
    warm_pods: int | None = Field(None, ge=0, description="Idle warm Pods of this Task.")
    last_schedule_time: datetime | None = Field(
        None, description="When a schedule last triggered a run."
    )
    next_schedule_time: datetime | None = Field(
        None, description="When a schedule triggers the next run."
    )

    def ready(self) -> Condition | None:
        return find_condition(self.conditions, READY)
