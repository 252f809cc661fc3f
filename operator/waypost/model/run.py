"""Runs, attempts, checkpoints and logs as the API shows them, and API request bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from waypost.model.base import ApiModel
from waypost.model.enums import AttemptStatus, FailureType, RequeueSpec, RunStatus, SpecChoice
from waypost.model.inputs import (
    MAX_INTEGER,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    ApiJson,
    ApiText,
)
from waypost.sdk import durations


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    return value


def _rfc3339(value: Any) -> Any:
    # A date-time as JSON Schema means it (RFC 3339: date, "T", time, offset), not the
    # Unix timestamps or bare dates pydantic would also take.
    if not isinstance(value, str):
        if isinstance(value, datetime):
            return value
        raise ValueError("expected an RFC 3339 date-time string, like 2030-01-01T09:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an RFC 3339 date-time, like 2030-01-01T09:00:00Z") from None
    if len(value) < 11 or value[10] not in "Tt" or parsed.tzinfo is None:
        raise ValueError("expected an RFC 3339 date-time with a timezone, like "
                         "2030-01-01T09:00:00Z")
    return parsed


ApiTime = Annotated[datetime, BeforeValidator(_rfc3339)]
"""A time with its timezone, as RFC 3339 text."""


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null (leave it out instead)")
    return value


# Durations in the HTTP API are seconds, a JSON number, so that the schema says
# exactly what is accepted (the SDK and the CLI turn "10m" or a timedelta into
# seconds before sending). TaskRun specs take text (spec.delay: "10m").
Seconds = Annotated[float, Field(ge=0, le=durations.MAX_DURATION_SECONDS, allow_inf_nan=False,
                                 strict=True), BeforeValidator(_no_bool)]
"""Seconds, 0 to a year."""
PositiveSeconds = Annotated[float,
                            Field(gt=0, le=durations.MAX_DURATION_SECONDS, allow_inf_nan=False,
                                  strict=True), BeforeValidator(_no_bool)]
"""Seconds, more than 0, at most a year."""


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
    """One log line of a run, as ``GET /v1/runs/{id}/logs`` shows it."""

    cursor: str = Field(description="Position in the run's event log; pass it as ?cursor= "
                                    "to read the lines after this one.")
    run_id: str
    attempt: int
    step: str | None = Field(None, description="The ctx.step that was running, if any.")
    ts: datetime
    level: str
    message: str
    fields: dict[str, Any] = Field(default_factory=dict)


class LogPage(ApiModel):
    """A page of log lines, oldest first."""

    entries: list[LogEntry]
    next_cursor: str = Field(description="Where the next page (or a later poll) starts.")


class StreamEnd(ApiModel):
    """Data of the ``end`` event that closes a followed log stream."""

    status: RunStatus = Field(description="The run's final status.")


class RunEvent(ApiModel):
    """One entry of a run's event log: what the SSE streams send as ``data``.

    ``kind`` is ``status`` (data: status, previous, error, result),
    ``attempt_started`` (memoryBytes, worker), ``attempt_finished`` (status,
    failureType, message, exitCode, oomKilled, memoryBytes, durationMs),
    ``checkpoint`` (key, sizeBytes, seq: the version; with ``checkpointData=1`` also
    data, the stored JSON, or superseded: true when a later write of the key replaced
    it), ``log`` (level, message, fields, step) or ``replay`` (the audit record).
    """

    id: str = Field(description="The event's cursor; the SSE id, for Last-Event-ID.")
    run_id: str
    namespace: str
    task: str
    kind: str
    attempt: int | None = None
    ts: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class ReplayRecord(ApiModel):
    """The audit record of a replay: who asked, when, from which run and checkpoint,
    and what was changed (RFC 6902 JSON patches against the original)."""

    run_id: str = Field(description="The replay (the new run).")
    replay_of: str = Field(description="The run it replays.")
    from_checkpoint: str | None = Field(
        None, description="The replay resumed after this checkpoint; null: from the start.")
    spec: RequeueSpec = Field(
        description="Whether the replay runs the Task's current spec or the original run's.")
    requested_by: str = Field(description="Who asked: the API token, a TaskRun, anonymous.")
    requested_at: datetime
    diff: dict[str, Any] = Field(
        description="{payload: patch, checkpoints: {key: patch}}: JSON patches (RFC 6902) "
                    "from the original's payload and checkpoints to the replay's; only what "
                    "changed.")


class WaitInfo(ApiModel):
    """What a waiting or delayed run waits for."""

    kind: Literal["delay", "sleep", "token", "children"] = Field(
        description="delay: a delayed start (delay/runAt); sleep: ctx.wait_for/wait_until; "
        "token: ctx.wait_for_token; children: ctx.trigger_and_wait.")
    step_key: str | None = Field(None, description="The wait's key in the task (its "
                                                   "checkpoint once it ends).")
    until: datetime | None = Field(
        None, description="When a delay or sleep ends, or a token wait times out.")
    token_id: str | None = None
    children: list[str] | None = Field(None, description="The child runs waited for.")
    children_active: int | None = Field(None, description="How many of them have not ended.")


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
    parent_run_id: str | None = Field(
        None, description="The run that started this one with ctx.trigger_and_wait.")
    waiting: WaitInfo | None = Field(
        None, description="What the run waits for, while it is waiting or delayed.")
    attempts: list[Attempt] | None = None
    checkpoints: list[Checkpoint] | None = None
    replay: ReplayRecord | None = Field(
        None, description="How this run was made, when it is a replay (with details).")
    replays: list[ReplayRecord] | None = Field(
        None, description="The replays of this run, oldest first (with details).")
    warnings: list[str] | None = Field(
        None, description="Why parts of the run are shown as placeholders (stored data that "
        "cannot be rendered as JSON)."
    )


def _whole_number(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; true and "5" stay refused (strict).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _iso_time(value: Any) -> Any:
    # RFC 3339 text, as the schema's date-time says; not the Unix timestamps (numbers)
    # pydantic would also take.
    if not isinstance(value, (str, datetime)):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


BodyTime = Annotated[datetime, BeforeValidator(_iso_time)]

# Whole numbers and booleans of a JSON body, as its schema says: true is not 1 and 0
# is not false (pydantic's lax mode would take both); 5.0 is an integer.
BodyInt = Annotated[StrictInt, BeforeValidator(_whole_number)]
MAX_ATTEMPT = 2**31 - 1  # attempts are a Postgres integer


# Both given (not null) is refused: the schema says so, so that a client (or a fuzzer)
# can tell by the schema alone. One of them null counts as not given.
_DELAY_OR_RUN_AT: dict[str, Any] = {"not": {
    "required": ["delay", "runAt"],
    "properties": {"delay": {"not": {"type": "null"}}, "runAt": {"not": {"type": "null"}}}}}


class TriggerRequest(ApiModel):
    """Body of a trigger: the payload and how the run queues."""

    model_config = ConfigDict(json_schema_extra=_DELAY_OR_RUN_AT)

    payload: ApiJson = Field(None, description="Input of the task function, any JSON value.")
    priority: Annotated[StrictInt, Field(ge=-1000, le=1000),
                        BeforeValidator(_whole_number)] | None = Field(
        None, description="Higher runs first; the queue's default when omitted.")
    idempotency_key: ApiText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Triggers with the same key for the same task are one run.",
    )
    concurrency_key: ApiText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Groups runs (a tenant, a user) for the queue's per-key limit.",
    )
    idempotency_conflict: Literal["error", "returnExisting"] = Field(
        "error",
        description="When the idempotency key belongs to a run triggered with a different "
        "payload, priority or concurrency key: `error` answers 409 idempotency_conflict "
        "(with the existing run's id), `returnExisting` answers 200 with the existing run.",
    )
    delay: Seconds | None = Field(
        None, description="Start no earlier than this many seconds after the trigger; the "
        "run is `delayed` until then.")
    run_at: ApiTime | None = Field(
        None, description="Start no earlier than this time (with a timezone); the run is "
        "`delayed` until then.")
    ttl: PositiveSeconds | None = Field(
        None, description="When the run has not started this many seconds after it became "
        "ready to start (the trigger, or the end of its delay), it ends `expired` and never "
        "runs.")

    @model_validator(mode="after")
    def _timing(self) -> TriggerRequest:
        check_timing(self.delay, self.run_at)
        return self


def check_timing(delay: float | None, run_at: datetime | None) -> None:
    """The rules shared by every trigger with a delay or runAt."""
    if delay is not None and run_at is not None:
        raise ValueError("give delay or runAt, not both")
    if run_at is not None and run_at.tzinfo is None:
        raise ValueError("runAt needs a timezone (e.g. Z)")


class BatchItem(ApiModel):
    """One run of a batch trigger."""

    model_config = ConfigDict(json_schema_extra=_DELAY_OR_RUN_AT)

    payload: ApiJson = Field(None, description="Input of the task function, any JSON value.")
    priority: Annotated[StrictInt, Field(ge=-1000, le=1000),
                        BeforeValidator(_whole_number)] | None = Field(
        None, description="Higher runs first; the queue's default when omitted.")
    idempotency_key: ApiText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="An item whose key is taken returns the run that holds it (new: false).")
    concurrency_key: ApiText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Groups runs (a tenant, a user) for the queue's per-key limit.")
    delay: Seconds | None = Field(None, description="As in a single trigger.")
    run_at: ApiTime | None = Field(None, description="As in a single trigger.")
    ttl: PositiveSeconds | None = Field(None, description="As in a single trigger.")

    @model_validator(mode="after")
    def _timing(self) -> BatchItem:
        check_timing(self.delay, self.run_at)
        return self


MAX_BATCH_ITEMS = 1000


class BatchTriggerRequest(ApiModel):
    """Body of ``POST /v1/tasks/{namespace}/{task}/batch``: up to 1,000 runs of one task,
    stored all together or (when any item is refused) not at all."""

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchRun(ApiModel):
    """One item's run in a batch answer (same order as the items)."""

    id: str
    new: bool = Field(description="False: the item's idempotency key returned an existing run.")
    status: RunStatus


class BatchTriggerResult(ApiModel):
    runs: list[BatchRun]
    created: int = Field(description="How many runs are new.")


class RescheduleRequest(ApiModel):
    """Body of ``POST /v1/runs/{id}/reschedule``: a delayed run's new start."""

    delay: Annotated[Seconds | SkipJsonSchema[None], BeforeValidator(_not_null)] = Field(
        None, description="Seconds from now (0: start now).")
    run_at: Annotated[ApiTime | SkipJsonSchema[None], BeforeValidator(_not_null)] = Field(
        None, description="At this time (with a timezone).")

    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["delay"]}, {"required": ["runAt"]}]})

    @model_validator(mode="after")
    def _one(self) -> RescheduleRequest:
        if (self.delay is None) == (self.run_at is None):
            raise ValueError("give exactly one of delay and runAt")
        check_timing(self.delay, self.run_at)
        return self


class CancelQuery(ApiModel):
    """Query parameters of a cancel."""

    model_config = ConfigDict(extra="ignore")

    children: Literal["cancel", "detach"] = Field(
        "cancel", description="cancel (default): the run's active child runs are cancelled "
        "too; detach: they go on.")


CheckpointKey = Annotated[ApiText, Field(min_length=1, max_length=MAX_KEY_LENGTH)]


class ReplayRequest(ApiModel):
    """Body of ``POST /v1/runs/{id}/replay``: run a finished run again, resuming after
    one of its checkpoints, with edited input."""

    from_checkpoint: CheckpointKey | None = Field(
        None,
        description="Copy the original's checkpoints up to and including this one, so the "
                    "replay resumes right after it; null: start from scratch.")
    payload: ApiJson = Field(None, description="The replay's payload; the original's when "
                                               "omitted.")
    checkpoints: dict[CheckpointKey, ApiJson] | None = Field(
        None, description="Edited data of copied checkpoints, by key (each key must be one "
                          "of those copied).")
    spec: RequeueSpec = Field(
        RequeueSpec.CURRENT,
        description="Run the Task's current spec, or the one the original ran.")
    idempotency_key: ApiText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Asking again with the same key returns the first replay.")


class BulkFilter(ApiModel):
    """Which runs a bulk action takes: every condition given must hold (a window with
    ``since`` at or after ``until`` takes none)."""

    namespace: ApiText | None = Field(None, min_length=1, max_length=MAX_NAME_LENGTH)
    task: ApiText | None = Field(None, min_length=1, max_length=MAX_NAME_LENGTH)
    statuses: list[RunStatus] | None = Field(
        None, min_length=1, description="Only runs in one of these statuses.")
    since: BodyTime | None = Field(None, description="Created at or after this time.")
    until: BodyTime | None = Field(None, description="Created before this time.")
    error_type: FailureType | None = Field(
        None, description="Only runs whose last error is of this type (oom, timeout, ...).")
    dead_lettered: StrictBool = Field(False, description="Only dead-lettered runs.")

    @model_validator(mode="after")
    def _times_have_zones(self) -> BulkFilter:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a timezone (e.g. Z)")
        return self


class BulkReplayOptions(ApiModel):
    """How a bulk replay replays each run (their payloads are kept)."""

    from_checkpoint: CheckpointKey | None = None
    spec: RequeueSpec = RequeueSpec.CURRENT


class BulkRequeueOptions(ApiModel):
    """How a bulk requeue requeues each run."""

    spec: RequeueSpec = Field(
        RequeueSpec.CURRENT,
        description="current: the Task's spec as it is now; original: the spec stored "
                    "when each run was triggered.")


class BulkRequest(ApiModel):
    """Body of ``POST /v1/runs/bulk``: one bounded batch of an action over the runs a
    filter matches. Call again with ``cursor`` = ``nextCursor`` until it is null."""

    action: Literal["requeue", "cancel", "replay"]
    filter: BulkFilter = Field(default_factory=BulkFilter)
    dry_run: StrictBool = Field(False, description="Only count the runs the action would take.")
    batch_size: BodyInt = Field(100, ge=1, le=1000, description="Runs looked at in this call.")
    cursor: Annotated[StrictInt, Field(ge=0, le=MAX_INTEGER),
                      BeforeValidator(_whole_number)] | None = Field(
        None, description="nextCursor of the previous batch.")
    replay: BulkReplayOptions = Field(default_factory=BulkReplayOptions)
    requeue: BulkRequeueOptions = Field(default_factory=BulkRequeueOptions)


class BulkResult(ApiModel):
    """What one batch of a bulk action did, and where the next batch starts."""

    action: str
    dry_run: bool
    matched: int = Field(description="Runs the action still applies to (before this batch).")
    processed: int = Field(description="Runs this batch looked at.")
    changed: int = Field(description="Runs this batch changed (or created replays of).")
    skipped: int = Field(description="Runs that no longer qualified when their turn came, or "
                                     "(replay) were already replayed by this same action.")
    run_ids: list[str] = Field(default_factory=list,
                               description="Runs changed (replay: the new runs).")
    next_cursor: int | None = Field(None, description="Pass as cursor; null: done.")


class RunList(ApiModel):
    runs: list[Run]
    next_cursor: int | None = Field(None, ge=0, le=MAX_INTEGER)
    total: int | None = Field(
        None, description="How many runs match the filters; only when asked with count=true.")


class QueryModel(ApiModel):
    """Query parameters (unknown ones are ignored)."""

    model_config = ConfigDict(extra="ignore")


_STATUS = "(" + "|".join(s.value for s in RunStatus) + ")"


def _query_time(value: Any) -> Any:
    # An ISO-8601 time, not the Unix timestamps pydantic would also take ("0.5").
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO-8601 date-time") from None
    return value


class RunQuery(QueryModel):
    """Filters and paging of run listings (query parameters)."""

    namespace: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this namespace.")
    task: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this task.")
    status: str | None = Field(
        None, max_length=200, description="Comma-separated statuses: "
        + ", ".join(s.value for s in RunStatus) + ".",
        json_schema_extra={"pattern": f"^{_STATUS}(,{_STATUS})*$"})
    limit: int = Field(50, ge=1, le=1000, description="Page size.")
    cursor: int | None = Field(
        None, ge=0, le=MAX_INTEGER, description="nextCursor of the previous page.")
    since: Annotated[datetime, BeforeValidator(_query_time)] | None = Field(
        None, description="Created at or after this ISO-8601 time (UTC when it has no zone).")
    until: Annotated[datetime, BeforeValidator(_query_time)] | None = Field(
        None, description="Created before this ISO-8601 time (UTC when it has no zone).")
    q: ApiText | None = Field(
        None, min_length=1, max_length=256,
        description="A prefix of the run id or of the idempotency key.")
    id_prefix: str | None = Field(
        None, min_length=1, max_length=36, pattern=r"^-*(?:[0-9a-fA-F]-*){1,32}$",
        description="Only runs whose id starts with these hex digits (a short run id).")
    count: bool = Field(False, description="true: also answer the total number of matches.")


class DeadLetterQuery(QueryModel):
    """Filters and paging of the dead-letter listing (query parameters)."""

    namespace: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this namespace.")
    task: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this task.")
    limit: int = Field(50, ge=1, le=1000, description="Page size.")
    cursor: int | None = Field(
        None, ge=0, le=MAX_INTEGER, description="nextCursor of the previous page.")


class ScheduleQuery(QueryModel):
    """Filters of the schedule listing (query parameters)."""

    namespace: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this namespace.")
    task: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this task.")


# An event cursor "<transaction>-<event id>": at most 18 digits each, so that both
# fit a bigint whatever digits a client sends.
EVENT_CURSOR_PATTERN = r"^[0-9]{1,18}-[0-9]{1,18}$"
EVENT_KINDS = ("status", "attempt_started", "attempt_finished", "checkpoint", "log", "replay")
_KIND = "(" + "|".join(EVENT_KINDS) + ")"


def _kinds_field() -> Any:
    return Field(None, max_length=200, pattern=f"^{_KIND}(,{_KIND})*$",
                 description="Comma-separated event kinds: " + ", ".join(EVENT_KINDS)
                 + " (default all).")


def _resume_field() -> Any:
    return Field(None, pattern=EVENT_CURSOR_PATTERN,
                 description="Resume after this event id (the Last-Event-ID header works too).")

QueryTime = Annotated[datetime, BeforeValidator(_query_time)]


class LogQuery(QueryModel):
    """Filters and paging of a run's log lines (query parameters)."""

    attempt: int | None = Field(None, ge=1, le=MAX_ATTEMPT, description="Only this attempt.")
    level: Literal["debug", "info", "warning", "error"] | None = Field(
        None, description="Minimum level.")
    since: QueryTime | None = Field(
        None, description="Only lines at or after this ISO-8601 time (UTC without a zone).")
    cursor: str | None = Field(None, pattern=EVENT_CURSOR_PATTERN,
                               description="nextCursor of the previous page (or a line's "
                               "cursor).")
    limit: int = Field(500, ge=1, le=5000, description="Page size.")
    follow: bool = Field(False, description="true: stream new lines as server-sent events.")


class RunEventsQuery(QueryModel):
    """What a run's event stream sends (query parameters)."""

    kinds: str | None = _kinds_field()
    last_event_id: str | None = _resume_field()
    checkpoint_data: bool = Field(
        False, description="true: checkpoint events carry the checkpoint's stored JSON "
        "(data), or superseded: true when the key was written again since (default: key, "
        "size and version only).")


class EventsQuery(QueryModel):
    """What the stream of many runs' events sends (query parameters)."""

    namespace: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this namespace.")
    task: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this task.")
    kinds: str | None = _kinds_field()
    last_event_id: str | None = _resume_field()
    checkpoint_data: bool = Field(
        False, description="true: checkpoint events carry the checkpoint's stored JSON "
        "(data), or superseded: true when the key was written again since (default: key, "
        "size and version only).")


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
        code: str = Field(description="Stable, machine-readable reason.")
        message: str = Field(description="What was wrong, naming the field.")
        run_id: str | None = Field(
            None, description="For idempotency_conflict: the run that holds the key.")

    error: Detail
