"""The Task definition: the single source for the CRD schema, the API and the store."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from waypost.model.base import ApiModel
from waypost.model.enums import FailureType, MissedRunPolicy
from waypost.sdk import quantity
from waypost.sdk import retry as sdk_retry

ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
CRON_SHAPE = (
    r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    r"[^\s]+(\s+[^\s]+){4})\s*$"
)
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

RETRYABLE_BY_DEFAULT = (
    FailureType.ERROR,
    FailureType.OOM,
    FailureType.TIMEOUT,
    FailureType.LOST,
    FailureType.EXIT,
)

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# CEL rules (``x-kubernetes-validations``) sit next to the field they check, so
# the API server rejects what the model rejects; waypost.model.crd copies them
# into the CRD schema.
_MEMORY_RANGE_RULE: JsonDict = {
    "rule": quantity.MEMORY_RANGE_RULE,
    "message": "must be a memory quantity of at least one byte and below 8Ei, "
    "for example 512Mi or 1Gi",
}


def _memory_in_range(value: str) -> str:
    quantity.parse_memory_quantity(value)
    return value


Memory = Annotated[
    str,
    Field(
        pattern=quantity.MEMORY_PATTERN,
        max_length=quantity.MEMORY_MAX_LENGTH,
        description="Memory as a Kubernetes quantity, for example 512Mi, 1Gi or 1e9.",
        json_schema_extra={"x-kubernetes-validations": [_MEMORY_RANGE_RULE]},
    ),
    AfterValidator(_memory_in_range),
]


class Backoff(ApiModel):
    """Exponential backoff between attempts: initial * factor^(attempt-1), capped."""

    initial_seconds: float = Field(1.0, gt=0, le=86400, description="Delay before attempt 2.")
    factor: float = Field(2.0, ge=1, le=100, description="Growth of the delay per attempt.")
    max_seconds: float = Field(300.0, gt=0, le=86400 * 7, description="Upper bound of a delay.")
    jitter: float = Field(
        0.2, ge=0, le=1, description="Random spread, as a fraction of the delay (0.2 = ±20%)."
    )

    def delay(self, failures: int, *, random_fraction: float = 0.5) -> float:
        """Seconds before the next attempt after ``failures`` (≥ 1) failed ones."""
        return sdk_retry.backoff_delay(
            failures, initial=self.initial_seconds, factor=self.factor,
            maximum=self.max_seconds, jitter=self.jitter, random_fraction=random_fraction,
        )


class OomPolicy(ApiModel):
    """What the next attempt gets after an out-of-memory kill."""

    memory_multiplier: float | None = Field(
        None, ge=1, le=16, description="Multiply the memory limit by this after an OOM kill."
    )
    memory_ceiling: Memory | None = Field(
        None, description="The memory limit never grows beyond this."
    )


class RetrySpec(ApiModel):
    """How failed attempts are retried before a run is dead-lettered."""

    max_attempts: int = Field(3, ge=1, le=100, description="Attempts before dead-lettering.")
    backoff: Backoff = Field(default_factory=Backoff)
    retry_on: list[FailureType] = Field(
        default_factory=lambda: list(RETRYABLE_BY_DEFAULT),
        description="Failure types that are retried; others fail the run at once.",
    )
    oom: OomPolicy = Field(default_factory=OomPolicy)


class QueueSpec(ApiModel):
    """The queue a Task's runs wait in, and its concurrency limits."""

    name: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        max_length=63,
        description="Queue name within the Task's namespace; Tasks of one namespace "
        "naming the same queue share its limits, Tasks of other namespaces never do. "
        "Defaults to the Task's name.",
    )
    max_concurrency: int | None = Field(
        None, ge=1, le=100000, description="At most this many runs of the queue at once."
    )
    per_key_concurrency: int | None = Field(
        None,
        ge=1,
        le=100000,
        description="At most this many running runs per concurrencyKey (a tenant, a user).",
    )
    default_priority: int = Field(
        0, ge=-1000, le=1000, description="Priority of runs that do not set one; higher first."
    )


class Resources(ApiModel):
    """Resources of each attempt's Pod or process."""

    memory: Memory = Field("512Mi", description="Memory limit of an attempt.")


class Timeout(ApiModel):
    """How long one attempt may run."""

    max_duration: str = Field(
        "1h",
        pattern=quantity.DURATION_PATTERN,
        min_length=2,
        max_length=quantity.DURATION_MAX_LENGTH,
        description="An attempt running longer is killed and fails as a timeout "
        "(90s, 15m, 1h30m, 2d).",
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": quantity.DURATION_POSITIVE_RULE,
            "message": "must be a positive duration, for example 90s, 15m or 1h30m",
        }]},
    )

    @field_validator("max_duration")
    @classmethod
    def _positive(cls, value: str) -> str:
        quantity.parse_duration(value, field="maxDuration")
        return value


class Schedule(ApiModel):
    """A cron schedule that triggers runs of the Task."""

    name: str = Field(..., pattern=NAME_PATTERN, max_length=63)
    # The schema rejects what is not even cron-shaped; what croniter still refuses
    # (61 * * * *) becomes Ready=False with reason InvalidSchedule.
    cron: str = Field(
        ..., min_length=1, max_length=256, pattern=CRON_SHAPE,
        description="Five-field cron or a macro like @hourly.",
    )
    timezone: str = Field(
        "UTC", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
        description="IANA time zone name, for example Europe/Berlin.",
    )
    payload: Any = Field(None, description="Payload of every triggered run.")
    missed_runs: MissedRunPolicy = Field(
        MissedRunPolicy.SKIP, description="After downtime: Skip missed ticks or Catchup."
    )
    catchup_limit: int = Field(10, ge=1, le=1000)
    suspend: bool = False


class History(ApiModel):
    """How long the store keeps this Task's finished runs."""

    retain_for: str | None = Field(
        None,
        pattern=quantity.DURATION_PATTERN,
        min_length=2,
        max_length=quantity.DURATION_MAX_LENGTH,
        description="How long a finished run (succeeded, failed, cancelled) is kept after it "
        "ended, with its attempts, checkpoints, logs and events (1h, 7d). Unset: the "
        "installation's default (WAYPOST_HISTORY_RETAIN_FOR, 7d). Dead-lettered runs follow "
        "the installation's WAYPOST_DEAD_LETTER_RETAIN_FOR instead. A TaskRun keeps its "
        "final status after its run expired.",
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": quantity.DURATION_POSITIVE_RULE,
            "message": "must be a positive duration, for example 1h, 7d or 30d",
        }]},
    )

    @field_validator("retain_for")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is not None:
            quantity.parse_duration(value, field="retainFor")
        return value

    @property
    def retain_seconds(self) -> float | None:
        if self.retain_for is None:
            return None
        return quantity.parse_duration(self.retain_for, field="history.retainFor")


class WarmPool(ApiModel):
    """Idle Pods kept ready for this Task, so a run starts without a cold Pod."""

    enabled: bool = True
    max_warm: int = Field(5, ge=0, le=5, description="Idle warm Pods kept for this Task.")
    # The Kubernetes API conventions keep an acronym in one case inside a
    # camelCase name (podCIDR, hostIP): idleTTLSeconds, not idleTtlSeconds.
    idle_ttl_seconds: int = Field(
        60, ge=1, le=3600, alias="idleTTLSeconds",
        description="Seconds a warm runner waits idle for its next run before it exits.",
    )


class LocalObjectReference(ApiModel):
    """An object in the Task's namespace, by name."""

    name: str = Field(..., pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253)


class EnvFromSource(ApiModel):
    """Environment variables from every key of a ConfigMap or Secret."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.configMapRef) != has(self.secretRef)",
        "message": "set exactly one of configMapRef and secretRef",
    }]})

    config_map_ref: LocalObjectReference | None = None
    secret_ref: LocalObjectReference | None = None
    prefix: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=253,
        description="Prepended to every variable name.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("set exactly one of configMapRef and secretRef")
        return self


_MEMORY_CEILING_RULE: JsonDict = {
    "rule": "!has(self.retry) || !has(self.retry.oom) || !has(self.retry.oom.memoryCeiling)"
    " || !has(self.resources) || !has(self.resources.memory)"
    " || !isQuantity(self.retry.oom.memoryCeiling) || !isQuantity(self.resources.memory)"
    " || quantity(self.retry.oom.memoryCeiling).compareTo(quantity(self.resources.memory)) >= 0",
    "message": "retry.oom.memoryCeiling must not be below resources.memory",
    "fieldPath": ".retry.oom.memoryCeiling",
    "reason": "FieldValueInvalid",
}


DEFAULT_CANCEL_GRACE_SECONDS = 30


class Cancellation(ApiModel):
    """What cancelling a running run does to its attempt."""

    grace_period_seconds: int = Field(
        DEFAULT_CANCEL_GRACE_SECONDS,
        ge=0,
        le=3600,
        description="After a running run is cancelled, how long its task has to stop "
                    "(it sees ctx.cancelled, and RunCancelled at its next step, checkpoint "
                    "or heartbeat) before its process or Pod is killed.",
    )


class TaskSpec(ApiModel):
    """What a Task is: code, limits, retry and queue behaviour, schedules."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_MEMORY_CEILING_RULE]}
    )

    entrypoint: str = Field(
        ...,
        pattern=ENTRYPOINT_PATTERN,
        description="The task function as module:function, loaded by the runner.",
    )
    image: str | None = Field(None, description="Container image holding the task code.")
    resources: Resources = Field(default_factory=Resources)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeout: Timeout = Field(default_factory=Timeout)
    cancellation: Cancellation = Field(default_factory=Cancellation)
    queue: QueueSpec = Field(default_factory=QueueSpec)
    schedules: list[Schedule] = Field(
        default_factory=list,
        max_length=32,
        description="Cron schedules; each name at most once.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    warm_pool: WarmPool = Field(default_factory=WarmPool)
    history: History = Field(default_factory=History)
    # As a CronJob's successfulJobsHistoryLimit/failedJobsHistoryLimit: finished
    # TaskRuns made by this Task's schedules beyond these are deleted.
    successful_runs_history_limit: int = Field(
        10, ge=0, le=1000, description="Succeeded scheduled TaskRuns kept.")
    failed_runs_history_limit: int = Field(
        10, ge=0, le=1000, description="Failed or dead-lettered scheduled TaskRuns kept.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the runner.")
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=32,
        description="Environment of the runner from ConfigMaps and Secrets.",
    )
    service_account_name: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Service account of the runner Pods. Its API token is never mounted.",
    )

    @model_validator(mode="after")
    def _ceiling_above_limit(self) -> TaskSpec:
        ceiling = self.retry.oom.memory_ceiling
        if ceiling is not None and quantity.parse_memory_quantity(ceiling) < self.memory_bytes:
            raise ValueError(
                f"retry.oom.memoryCeiling {ceiling} is below resources.memory "
                f"{self.resources.memory}"
            )
        return self

    @field_validator("schedules")
    @classmethod
    def _unique_schedule_names(cls, value: list[Schedule]) -> list[Schedule]:
        names = [s.name for s in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"schedule names must be unique: {', '.join(duplicates)}")
        return value

    @property
    def memory_bytes(self) -> int:
        return quantity.parse_memory_quantity(self.resources.memory)

    @property
    def timeout_seconds(self) -> float:
        return quantity.parse_duration(self.timeout.max_duration)

    def queue_name(self, task_name: str) -> str:
        return self.queue.name or task_name

    def stored(self) -> dict[str, Any]:
        """The spec as the store keeps it: in the Task's row and in every run's row.

        Fields left at their defaults are left out. A run row is rewritten whole at
        its claim and its completion, and the full dump (~720 bytes, ~1 kB as jsonb)
        was most of it, and of the WAL of a run (docs/benchmarks.md, issue 15). Every
        reader validates the stored spec through this model, which fills the defaults
        in again. The two fields that SQL reads (``retry.maxAttempts`` in the run
        listings, ``cancellation.gracePeriodSeconds`` when cancelling) are always kept.

        Consequence: a stored spec means "these values, the rest as the model's
        defaults say". A release that changes a default must write the old value into
        the stored specs it should not change (tasks.spec, runs.spec) in a migration.
        """
        stored = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        stored.setdefault("retry", {})["maxAttempts"] = self.retry.max_attempts
        stored.setdefault("cancellation", {})["gracePeriodSeconds"] = (
            self.cancellation.grace_period_seconds)
        return stored


class TaskDefinition(ApiModel):
    """A Task as the store knows it: identity plus spec."""

    namespace: str = Field(..., pattern=NAME_PATTERN, max_length=63)
    name: str = Field(..., pattern=NAME_PATTERN, max_length=253)
    spec: TaskSpec
    generation: int = 1
