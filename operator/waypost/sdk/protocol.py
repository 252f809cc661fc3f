"""The runner protocol: what a runner and the coordinator say to each other.

One definition of every message of the runner API (``/v1/runner/*``) and of
the environment a runner starts with. The engine builds the attempt document
as an :class:`AttemptDocument`, the coordinator's runner routes validate the
bodies and write the answers with these classes (and describe them in the
OpenAPI document), both execution backends set the environment with
:func:`runner_env`, and the runner parses and sends the same classes. A change
to the protocol is a change to this module.

The messages are standard-library dataclasses, not pydantic models, on
purpose: the runner may import only the SDK and an HTTP client, and importing
pydantic and building models doubled a runner's start-up (140 of 280 ms for
``import waypost.runner.main``, measured with ``-X importtime``) and added
11 MiB of resident memory to every attempt. The coordinator validates them
with pydantic all the same (pydantic reads dataclasses and their
``__pydantic_config__``); the runner uses :func:`decode`, which reads the same
field definitions. Value constraints live in ``__post_init__``, which both
run.

Direction of each message:

- coordinator to runner: :class:`AttemptDocument` (``GET /v1/runner/attempt``),
  :class:`HeartbeatAnswer`, :class:`OutcomeAnswer`. A runner ignores fields it
  does not know, so a newer coordinator can add some during a rolling upgrade.
- runner to coordinator: :class:`CheckpointBody`, :class:`LogsBody`,
  :class:`CompleteBody`, :class:`FailBody`, :class:`CancelledBody`. The coordinator refuses unknown
  fields, naming them (HTTP 400).

Every write answers 409 once the attempt is no longer current (superseded,
cancelled, finished): the runner stops and reports nothing more.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar, Union

# --- the runner's environment -------------------------------------------------

ENV_COORDINATOR_URL = "WAYPOST_COORDINATOR_URL"
"""Base URL of the coordinator API."""
ENV_ATTEMPT_TOKEN = "WAYPOST_ATTEMPT_TOKEN"
"""The attempt's credential (process backend)."""
ENV_ATTEMPT_TOKEN_FILE = "WAYPOST_ATTEMPT_TOKEN_FILE"
"""A file holding the attempt's credential (kubernetes backend: a mounted Secret)."""
ENV_TASK_PATH = "WAYPOST_TASK_PATH"
"""Extra ``:``-separated directories to import task modules from."""
ENV_RUN_ID = "WAYPOST_RUN_ID"
"""The run's id, for the task's own use (logs, metrics); the runner reads the document."""
ENV_ATTEMPT = "WAYPOST_ATTEMPT"
"""The attempt number, for the task's own use."""
ENV_TASK = "WAYPOST_TASK"
"""The task's name, for the task's own use."""
ENV_TRACE_ID = "WAYPOST_TRACE_ID"
"""The run's W3C trace id, for the task's own use."""
ENV_RUNNER_TOKEN = "WAYPOST_RUNNER_TOKEN"
"""A warm runner's own credential (process backend): set, the runner stays after its
attempt and polls for the next one (:data:`PATH_WARM_POLL`)."""
ENV_RUNNER_TOKEN_FILE = "WAYPOST_RUNNER_TOKEN_FILE"
"""A file holding a warm runner's credential (kubernetes backend)."""
ENV_WARM_SCRUB_TMP = "WAYPOST_WARM_SCRUB_TMP"
# A pre-warmed runner (a runner credential, no attempt yet): the task's
# ``module:function``, imported before the first assignment arrives.
ENV_PREWARM_ENTRYPOINT = "WAYPOST_PREWARM_ENTRYPOINT"
"""``1``: the runner's temporary directory is its own (a Pod's ``/tmp``); what a run
leaves there is removed after it."""

# Always the backend's: a task's own ``env`` cannot redirect the runner, hand it
# another credential, or mislabel the attempt. (``WAYPOST_TASK_PATH`` is the
# task's to extend.)
PROTECTED_ENV_NAMES: tuple[str, ...] = (
    ENV_COORDINATOR_URL, ENV_ATTEMPT_TOKEN, ENV_ATTEMPT_TOKEN_FILE,
    ENV_RUN_ID, ENV_ATTEMPT, ENV_TASK, ENV_TRACE_ID,
    ENV_RUNNER_TOKEN, ENV_RUNNER_TOKEN_FILE, ENV_WARM_SCRUB_TMP, ENV_PREWARM_ENTRYPOINT,
)
# What task code never sees in a warm runner: credentials and what names one
# attempt (the runner removes them from its environment before the first run).
PRIVATE_ENV_NAMES: tuple[str, ...] = (
    ENV_ATTEMPT_TOKEN, ENV_ATTEMPT_TOKEN_FILE, ENV_RUNNER_TOKEN, ENV_RUNNER_TOKEN_FILE,
    ENV_RUN_ID, ENV_ATTEMPT, ENV_TRACE_ID,
)


def runner_env(
    *,
    coordinator_url: str,
    run_id: str,
    attempt: int,
    task: str,
    trace_id: str,
    token: str | None = None,
    token_file: str | None = None,
    task_path: str | None = None,
    base: Mapping[str, str] | None = None,
    runner_token: str | None = None,
    runner_token_file: str | None = None,
    scrub_tmp: bool = False,
) -> dict[str, str]:
    """The environment of a runner: ``base`` (the task's own variables) overlaid
    with the runner's, which always win. Exactly one of ``token`` and
    ``token_file`` names the credential; ``runner_token`` or ``runner_token_file``
    makes it a warm runner."""
    if (token is None) == (token_file is None):
        raise ValueError("runner_env: give exactly one of token and token_file")
    values = {k: v for k, v in (base or {}).items() if k not in PROTECTED_ENV_NAMES}
    values.update({
        ENV_COORDINATOR_URL: coordinator_url,
        ENV_RUN_ID: run_id,
        ENV_ATTEMPT: str(attempt),
        ENV_TASK: task,
        ENV_TRACE_ID: trace_id,
    })
    if token is not None:
        values[ENV_ATTEMPT_TOKEN] = token
    if token_file is not None:
        values[ENV_ATTEMPT_TOKEN_FILE] = token_file
    if task_path is not None:
        values[ENV_TASK_PATH] = task_path
    if runner_token is not None:
        values[ENV_RUNNER_TOKEN] = runner_token
    if runner_token_file is not None:
        values[ENV_RUNNER_TOKEN_FILE] = runner_token_file
    if scrub_tmp:
        values[ENV_WARM_SCRUB_TMP] = "1"
    return values


def prewarm_env(
    *,
    coordinator_url: str,
    task: str,
    entrypoint: str,
    task_path: str | None = None,
    base: Mapping[str, str] | None = None,
    runner_token: str | None = None,
    runner_token_file: str | None = None,
    scrub_tmp: bool = False,
) -> dict[str, str]:
    """The environment of a pre-warmed runner: like :func:`runner_env`, with the
    task's entrypoint instead of an attempt (exactly one of ``runner_token`` and
    ``runner_token_file``)."""
    if (runner_token is None) == (runner_token_file is None):
        raise ValueError("prewarm_env: give exactly one of runner_token and runner_token_file")
    values = {k: v for k, v in (base or {}).items() if k not in PROTECTED_ENV_NAMES}
    values.update({ENV_COORDINATOR_URL: coordinator_url, ENV_TASK: task,
                   ENV_PREWARM_ENTRYPOINT: entrypoint})
    if task_path is not None:
        values[ENV_TASK_PATH] = task_path
    if runner_token is not None:
        values[ENV_RUNNER_TOKEN] = runner_token
    if runner_token_file is not None:
        values[ENV_RUNNER_TOKEN_FILE] = runner_token_file
    if scrub_tmp:
        values[ENV_WARM_SCRUB_TMP] = "1"
    return values


# --- paths ----------------------------------------------------------------------

PATH_ATTEMPT = "/v1/runner/attempt"
PATH_CHECKPOINTS = "/v1/runner/checkpoints"
PATH_HEARTBEAT = "/v1/runner/heartbeat"
PATH_LOGS = "/v1/runner/logs"
PATH_COMPLETE = "/v1/runner/complete"
PATH_FAIL = "/v1/runner/fail"
PATH_CANCELLED = "/v1/runner/cancelled"
PATH_WARM_POLL = "/v1/runner/warm/poll"
PATH_WAIT = "/v1/runner/wait"
PATH_TOKENS = "/v1/runner/tokens"

# --- limits both sides know -----------------------------------------------------

MAX_KEY_LENGTH = 256
"""Checkpoint keys end up in URLs, log lines and a database index."""
MAX_LOG_MESSAGE_CHARS = 16 * 1024
MAX_LOG_BATCH = 500
"""Most log lines in one runner request; ``Limits.log_batch`` (the server's) is
at most this, and the attempt document tells the runner the server's value."""
MAX_ERROR_MESSAGE_CHARS = 64 * 1024
MAX_TRACEBACK_CHARS = 256 * 1024


LogLevel = Literal["debug", "info", "warning", "error"]
#: The log levels, lowest first.
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")


class FailureType(enum.StrEnum):
    """Why an attempt ended without a result."""

    ERROR = "error"  # the task raised
    OOM = "oom"  # killed for exceeding its memory limit
    TIMEOUT = "timeout"  # ran past the task's maxDuration
    LOST = "lost"  # heartbeats stopped, Pod deleted, node lost
    EXIT = "exit"  # the runner process exited without reporting
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the run did not start within its ttl (never ran)


def to_camel(name: str) -> str:
    """``heartbeat_interval_seconds`` -> ``heartbeatIntervalSeconds`` (the wire names)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# What pydantic reads on the coordinator's side (a pydantic ConfigDict, spelled
# as a plain dict so this module does not import pydantic).
_REQUEST_CONFIG = {"alias_generator": to_camel, "populate_by_name": True, "extra": "forbid"}
_ANSWER_CONFIG = {"alias_generator": to_camel, "populate_by_name": True, "extra": "ignore"}

def _require(ok: bool, field: str, rule: str) -> None:
    if not ok:
        raise ValueError(f"{field} {rule}")


# --- coordinator to runner --------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class AttemptTask:
    """The task an attempt runs."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    namespace: str
    name: str
    entrypoint: str
    """``module:function`` of the task."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttemptCheckpoint:
    """A checkpoint written by this run's earlier attempts."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    key: str
    data: Any = None
    attempt: int | None = None
    created_at: datetime | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttemptLimits:
    """Size limits the coordinator enforces for this attempt.

    The defaults only apply to a context built without a coordinator (tests);
    a runner always has the coordinator's values.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    checkpoint_bytes: int = 1024 * 1024
    result_bytes: int = 1024 * 1024
    log_batch: int = 100

    def __post_init__(self) -> None:
        _require(self.checkpoint_bytes > 0, "checkpointBytes", "must be positive")
        _require(self.result_bytes > 0, "resultBytes", "must be positive")
        _require(self.log_batch >= 1, "logBatch", "must be at least 1")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttemptDocument:
    """``GET /v1/runner/attempt``: everything a runner needs to run its attempt."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    run_id: str
    attempt: int
    task: AttemptTask
    payload: Any = None
    checkpoints: list[AttemptCheckpoint] = dataclasses.field(default_factory=list)
    traceparent: str = ""
    idempotency_key: str | None = None
    heartbeat_interval_seconds: float
    cancellation_grace_period_seconds: float = 30.0
    """After the run is cancelled, how long the task has to stop before its process
    or Pod is killed (the Task's ``spec.cancellation.gracePeriodSeconds``)."""
    limits: AttemptLimits
    suspend_threshold_seconds: float = 5.0
    """Waits shorter than this sleep in the runner; longer ones suspend the run."""

    def __post_init__(self) -> None:
        _require(self.attempt >= 1, "attempt", "must be at least 1")
        _require(self.heartbeat_interval_seconds > 0, "heartbeatIntervalSeconds",
                 "must be positive")
        _require(self.cancellation_grace_period_seconds >= 0,
                 "cancellationGracePeriodSeconds", "must not be negative")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HeartbeatAnswer:
    """``POST /v1/runner/heartbeat``: the lease was extended; was the run cancelled?"""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    cancelled: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutcomeAnswer:
    """The answer to complete, fail and cancelled: the run's status after the report."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    status: str


# --- runner to coordinator --------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointBody:
    """``POST /v1/runner/checkpoints``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    key: str
    data: Any

    def __post_init__(self) -> None:
        _require(0 < len(self.key) <= MAX_KEY_LENGTH, "key",
                 f"must be 1 to {MAX_KEY_LENGTH} characters")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogLine:
    """One entry of ``ctx.log``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    ts: datetime
    level: LogLevel = "info"
    message: str
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    step: str | None = None  # the key of the ctx.step that was running, if any

    def __post_init__(self) -> None:
        _require(len(self.message) <= MAX_LOG_MESSAGE_CHARS, "message",
                 f"must be at most {MAX_LOG_MESSAGE_CHARS} characters")
        _require(self.step is None or 1 <= len(self.step) <= MAX_KEY_LENGTH, "step",
                 f"must be 1 to {MAX_KEY_LENGTH} characters")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogsBody:
    """``POST /v1/runner/logs``: a batch of log lines."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    entries: list[LogLine]

    def __post_init__(self) -> None:
        _require(len(self.entries) <= MAX_LOG_BATCH, "entries",
                 f"must hold at most {MAX_LOG_BATCH} lines")


#: Most steps a memory report names (the first that ran).
MAX_USAGE_STEPS = 200


@dataclasses.dataclass(frozen=True, kw_only=True)
class Usage:
    """The runner's memory measurements of its attempt, sent with the outcome."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    peak_rss_bytes: int
    """Peak resident memory of the runner process (and its children)."""
    steps: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per step that ran: the process's peak by the end of the step, when it rose
    during the step, else its resident memory at the step's end."""
    task_seconds: float | None = None
    """How long the attempt ran in the runner (its clock), start-up excluded."""

    def __post_init__(self) -> None:
        _require(self.peak_rss_bytes >= 0, "peakRssBytes", "must not be negative")
        _require(self.task_seconds is None or self.task_seconds >= 0, "taskSeconds",
                 "must not be negative")
        _require(len(self.steps) <= MAX_USAGE_STEPS, "steps",
                 f"must name at most {MAX_USAGE_STEPS} steps")
        _require(all(0 < len(k) <= MAX_KEY_LENGTH and v >= 0 for k, v in self.steps.items()),
                 "steps", f"keys must be 1 to {MAX_KEY_LENGTH} characters, values not negative")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompleteBody:
    """``POST /v1/runner/complete``: the task's result (any JSON, ``null`` included)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    result: Any
    usage: Usage | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FailureReport:
    """What a runner says about an attempt that raised."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    type: FailureType = FailureType.ERROR
    name: str | None = None
    message: str
    traceback: str | None = None
    retryable: bool = True

    def __post_init__(self) -> None:
        _require(len(self.message) <= MAX_ERROR_MESSAGE_CHARS, "message",
                 f"must be at most {MAX_ERROR_MESSAGE_CHARS} characters")
        _require(self.traceback is None or len(self.traceback) <= MAX_TRACEBACK_CHARS,
                 "traceback", f"must be at most {MAX_TRACEBACK_CHARS} characters")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CancelledBody:
    """``POST /v1/runner/cancelled``: the run was cancelled and its task stopped."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    message: str = "the task stopped"

    def __post_init__(self) -> None:
        _require(len(self.message) <= MAX_ERROR_MESSAGE_CHARS, "message",
                 f"must be at most {MAX_ERROR_MESSAGE_CHARS} characters")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FailBody:
    """``POST /v1/runner/fail``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    error: FailureReport
    usage: Usage | None = None


# --- warm runners ------------------------------------------------------------------
# A warm runner authenticates with its own credential (ENV_RUNNER_TOKEN), which
# opens nothing but this poll; each assignment brings the attempt's credential.

MAX_WARM_POLL_SECONDS = 60.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarmFinished:
    """The attempt a warm runner ran last, reported on its next poll.

    With ``succeeded`` the poll also completes that attempt with ``result`` (any
    JSON), authenticated by the attempt's own ``credential``: one request instead
    of ``POST /v1/runner/complete`` followed by the poll. Failures are reported
    on their own first, as in cold mode."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    run_id: str
    attempt: int
    succeeded: bool = False
    result: Any = None
    credential: str | None = None
    usage: Usage | None = None
    """With ``succeeded``: the runner's memory report of that attempt."""

    def __post_init__(self) -> None:
        _require(self.attempt >= 1, "attempt", "must be at least 1")
        _require(not self.succeeded or bool(self.credential), "finished.credential",
                 "is required with succeeded (the attempt's own credential)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarmPollBody:
    """``POST /v1/runner/warm/poll``: what it finished, its resident memory after
    that run, and how long the coordinator may hold the poll open."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    finished: WarmFinished | None = None
    rss_bytes: int = 0
    wait_seconds: float = 15.0

    def __post_init__(self) -> None:
        _require(self.rss_bytes >= 0, "rssBytes", "must not be negative")
        _require(0 <= self.wait_seconds <= MAX_WARM_POLL_SECONDS, "waitSeconds",
                 f"must be 0 to {MAX_WARM_POLL_SECONDS:g}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarmAssignment:
    """The next attempt for a warm runner, with that attempt's own credential."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    credential: str
    attempt: AttemptDocument


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarmPollAnswer:
    """The answer to a warm poll: an assignment, nothing yet (poll again), or
    ``retire`` with the reason (idle TTL, evicted, spec changed, memory growth):
    the runner exits. 409 instead when its last attempt was lost."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    assignment: WarmAssignment | None = None
    retire: str | None = None


# --- durable waits -----------------------------------------------------------------

MAX_CHILDREN = 1000
"""Child runs one ctx.batch_trigger_and_wait may start (the batch trigger's limit)."""
MAX_WAIT_SECONDS = 365 * 24 * 3600.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaitChild:
    """One child run of a children wait."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    payload: Any = None
    priority: int | None = None
    concurrency_key: str | None = None

    def __post_init__(self) -> None:
        _require(self.priority is None or -1000 <= self.priority <= 1000, "priority",
                 "must be between -1000 and 1000")
        _require(self.concurrency_key is None or 0 < len(self.concurrency_key) <= MAX_KEY_LENGTH,
                 "concurrencyKey", f"must be 1 to {MAX_KEY_LENGTH} characters")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaitBody:
    """``POST /v1/runner/wait``: the task waits. ``kind`` sleep (``seconds`` from now,
    or ``until``), token (``tokenId``) or children (``task`` and ``children``: the
    runs to start, idempotent per run, key and index). The wait's outcome will be
    the checkpoint ``key``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    key: str
    kind: Literal["sleep", "token", "children"]
    seconds: float | None = None
    until: datetime | None = None
    token_id: str | None = None
    task: str | None = None
    children: list[WaitChild] | None = None

    def __post_init__(self) -> None:
        _require(0 < len(self.key) <= MAX_KEY_LENGTH, "key",
                 f"must be 1 to {MAX_KEY_LENGTH} characters")
        if self.kind == "sleep":
            _require((self.seconds is None) != (self.until is None), "seconds",
                     "or until: exactly one is needed for a sleep")
            _require(self.seconds is None or 0 <= self.seconds <= MAX_WAIT_SECONDS, "seconds",
                     f"must be between 0 and {MAX_WAIT_SECONDS:g}")
            _require(self.until is None or self.until.tzinfo is not None, "until",
                     "needs a timezone")
        elif self.kind == "token":
            _require(self.token_id is not None, "tokenId", "is needed for a token wait")
        else:
            _require(self.task is not None and 0 < len(self.task) <= 253, "task",
                     "is needed for a children wait (1 to 253 characters)")
            _require(self.children is not None and 0 < len(self.children) <= MAX_CHILDREN,
                     "children", f"must hold 1 to {MAX_CHILDREN} runs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaitAnswer:
    """The answer to a wait: ``suspended`` (the runner exits; the run resumes when the
    wait ends), or the outcome ``data`` at once (the wait had ended already)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    suspended: bool
    data: Any = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenBody:
    """``POST /v1/runner/tokens``: create a wait token (the same ``key`` in this run
    returns the same token)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _REQUEST_CONFIG
    key: str
    timeout_seconds: float | None = None

    def __post_init__(self) -> None:
        _require(0 < len(self.key) <= MAX_KEY_LENGTH, "key",
                 f"must be 1 to {MAX_KEY_LENGTH} characters")
        _require(self.timeout_seconds is None
                 or 0 < self.timeout_seconds <= MAX_WAIT_SECONDS, "timeoutSeconds",
                 f"must be more than 0 and at most {MAX_WAIT_SECONDS:g}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenAnswer:
    """A wait token as the runner sees it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _ANSWER_CONFIG
    id: str
    url: str
    status: str = "pending"
    timeout_at: datetime | None = None


# --- reading and writing messages without pydantic -----------------------------------

class ProtocolError(ValueError):
    """A message does not match the runner protocol; the text says where."""


M = TypeVar("M")


# JSON values that encode as themselves (exact types: a StrEnum member is a str too,
# and encodes as its value below).
_AS_IS = frozenset({str, int, float, bool, type(None)})


@functools.cache
def _wire_fields(kind: type) -> tuple[tuple[str, str], ...]:
    """A message class's (attribute, wire name) pairs, worked out once per class: a
    runner and the coordinator encode a message or two per attempt."""
    return tuple((f.name, to_camel(f.name)) for f in dataclasses.fields(kind))


def encode(message: Any) -> Any:
    """A message (or any value inside one) as JSON-ready data with wire names."""
    kind = type(message)
    if kind in _AS_IS:
        return message
    if kind is dict:
        return {key: encode(value) for key, value in message.items()}
    if dataclasses.is_dataclass(kind):
        return {wire: encode(getattr(message, name)) for name, wire in _wire_fields(kind)}
    if isinstance(message, enum.Enum):
        return message.value
    if isinstance(message, datetime):
        return message.isoformat()
    if isinstance(message, list | tuple):
        return [encode(item) for item in message]
    if isinstance(message, dict):
        return {key: encode(value) for key, value in message.items()}
    return message


def decode(kind: type[M], data: Any) -> M:
    """Read a message of class ``kind`` from JSON data; raise :class:`ProtocolError`."""
    return typing.cast(M, _message_decoder(typing.cast(type, kind))(data, ""))


# A decoder reads one JSON value at a path (for errors) into what its hint says.
_Decoder = Callable[[Any, str], Any]


@functools.cache
def _fields(kind: type) -> tuple[tuple[str, str, Any, bool], ...]:
    hints = typing.get_type_hints(kind)
    return tuple(
        (f.name, to_camel(f.name), hints[f.name],
         f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
        for f in dataclasses.fields(kind)
    )


@functools.cache
def _message_decoder(kind: type) -> _Decoder:
    """The decoder of a message class, built once per class from its fields' hints
    (reading the hints on every message was most of a runner's decoding time)."""
    fields = [(name, wire, _decoder(hint), optional)
              for name, wire, hint, optional in _fields(kind)]
    known = frozenset(wire for _, wire, _, _ in fields)
    config: dict[str, Any] = getattr(kind, "__pydantic_config__", {})
    forbid = config.get("extra") == "forbid"

    def read(data: Any, where: str) -> Any:
        if not isinstance(data, dict):
            raise ProtocolError(f"{where or kind.__name__}: expected a JSON object")
        values: dict[str, Any] = {}
        for name, wire, field_decoder, optional in fields:
            if wire in data:
                values[name] = field_decoder(data[wire], f"{where}.{wire}" if where else wire)
            elif not optional:
                raise ProtocolError(f"{where + '.' if where else ''}{wire}: missing")
        if forbid and not known.issuperset(data):
            raise ProtocolError(f"{where or kind.__name__}: unknown fields "
                                f"{', '.join(sorted(set(data) - known))}")
        try:
            return kind(**values)
        except ValueError as exc:
            raise ProtocolError(f"{where + '.' if where else ''}{exc}") from None

    return read


@functools.cache
def _decoder(hint: Any) -> _Decoder:
    """The decoder of one type hint (built once per hint)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return lambda value, path: value
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        options = [a for a in args if a is not type(None)]
        nullable = len(options) < len(args)
        first = _decoder(options[0])

        def union(value: Any, path: str) -> Any:
            if value is None and nullable:
                return None
            return first(value, path)
        return union
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        item = _decoder(item_hint)

        def many(value: Any, path: str) -> Any:
            if not isinstance(value, list):
                raise ProtocolError(f"{path}: expected a list")
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return many
    if origin is dict:
        def mapping(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise ProtocolError(f"{path}: expected an object")
            return dict(value)
        return mapping
    if origin is Literal:
        allowed = typing.get_args(hint)

        def literal(value: Any, path: str) -> Any:
            if value not in allowed:
                raise ProtocolError(f"{path}: expected one of {allowed}")
            return value
        return literal
    if dataclasses.is_dataclass(hint):
        return _message_decoder(typing.cast(type, hint))
    if hint is datetime:
        def when(value: Any, path: str) -> Any:
            try:
                return datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise ProtocolError(f"{path}: expected an ISO 8601 time") from None
        return when
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_type = hint

        def member(value: Any, path: str) -> Any:
            try:
                return enum_type(value)
            except ValueError:
                raise ProtocolError(f"{path}: unknown value {value!r}") from None
        return member
    checks: dict[Any, Callable[[Any], bool]] = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }
    check = checks.get(hint)
    if check is None:
        raise TypeError(f"the protocol has no decoder for {hint!r}")
    name = hint.__name__

    def scalar(value: Any, path: str) -> Any:
        if not check(value):
            raise ProtocolError(f"{path}: expected {name}, got {type(value).__name__}")
        return float(value) if hint is float else value
    return scalar
