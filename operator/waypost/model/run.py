"""Runs, attempts, checkpoints and logs as the API shows them, and API request bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from waypost.model.base import ApiModel
from waypost.model.enums import AttemptStatus, FailureType, RequeueSpec, RunStatus, SpecChoice


class ErrorInfo(ApiModel):
    """Why an attempt or run failed."""

    type: FailureType
    message: str
    name: str | None = Field(None, description="Exception class name, for type=error.")
    traceback: str | None = None
    exit_code: int | None = None
    retryable: bool = True


class Attempt(ApiModel):
    attempt: int
    status: AttemptStatus
    memory_bytes: int
    worker: str | None = None
    error: ErrorInfo | None = None
    started_at: datetime
    finished_at: datetime | None = None


class Checkpoint(ApiModel):
    key: str
    data: Any
    attempt: int
    size_bytes: int
    created_at: datetime


class LogEntry(ApiModel):
    attempt: int
    ts: datetime
    level: str
    message: str
    fields: dict[str, Any] = Field(default_factory=dict)


class Run(ApiModel):
    """A run of a task: its state, payload, result or error."""

    id: str
    namespace: str
    task: str
    queue: str
    status: RunStatus
    priority: int
    attempt: int = Field(description="Number of the latest attempt (0 before the first).")
    max_attempts: int
    payload: Any = None
    result: Any = None
    error: ErrorInfo | None = None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    memory_bytes: int
    trace_id: str
    replay_of: str | None = None
    source: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    taskrun_name: str | None = Field(
        None, description="The TaskRun object that triggered this run, if any."
    )
    spec_choice: SpecChoice = Field(
        SpecChoice.TRIGGER,
        description="Which spec the run's attempts run: the Task's spec stored at trigger "
        "time (trigger), or what the last requeue chose: the Task's spec at requeue time "
        "(current) or the trigger-time spec again (original).",
    )
    spec_generation: int | None = Field(
        None,
        description="The Task generation whose spec the run runs (null for runs enqueued "
        "before waypost recorded it).",
    )
    attempts: list[Attempt] | None = None
    checkpoints: list[Checkpoint] | None = None


class TriggerRequest(ApiModel):
    """Body of a trigger: the payload and how the run queues."""

    payload: Any = None
    priority: int | None = Field(None, ge=-1000, le=1000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=256)
    concurrency_key: str | None = Field(None, min_length=1, max_length=256)


class RunList(ApiModel):
    runs: list[Run]
    next_cursor: int | None = None


class RequeueRequest(ApiModel):
    """Body of a requeue from the dead-letter queue (optional)."""

    spec: RequeueSpec = Field(
        RequeueSpec.CURRENT,
        description="current: run the Task's spec as it is now (a new image or new limits "
        "deployed since the run was triggered); original: run the spec stored when the run "
        "was triggered.",
    )


class ErrorBody(ApiModel):
    """Every error answer of the API."""

    class Detail(ApiModel):
        code: str
        message: str

    error: Detail
