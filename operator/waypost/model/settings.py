"""Settings of a waypost process, from the environment (WAYPOST_*) or the CLI."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from waypost.model.insights import INSIGHT_VARIABLES, InsightSettings
from waypost.sdk import protocol, quantity

# One source: the runner protocol's limit, which the API's schema says too.
LOG_BATCH_MAX = protocol.MAX_LOG_BATCH


class Limits(BaseModel):
    """Size limits, in bytes of encoded JSON."""

    model_config = ConfigDict(frozen=True)

    payload_bytes: int = Field(512 * 1024, ge=1, description="Largest trigger payload.")
    checkpoint_bytes: int = Field(1024 * 1024, ge=1, description="Largest checkpoint.")
    result_bytes: int = Field(1024 * 1024, ge=1, description="Largest run result.")
    log_batch: int = Field(LOG_BATCH_MAX, ge=1, le=LOG_BATCH_MAX,
                           description="Most log lines in one runner request.")


#: The environment variables of :class:`Limits` (the chart's ``operator.limits``).
LIMIT_VARIABLES = {
    "WAYPOST_LIMIT_PAYLOAD_BYTES": "payload_bytes",
    "WAYPOST_LIMIT_CHECKPOINT_BYTES": "checkpoint_bytes",
    "WAYPOST_LIMIT_RESULT_BYTES": "result_bytes",
}


def _duration_or_zero(value: Any) -> Any:
    """Seconds, or a duration string as Tasks write them ("7d", "12h"); "0" stays 0
    (for the retention settings: never expire)."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        return 0.0 if value.strip() == "0s" else quantity.parse_duration(value, field="duration")


#: Seconds, accepting "7d"-style durations from the environment.
Seconds = Annotated[float, BeforeValidator(_duration_or_zero)]


class Settings(BaseModel):
    """Everything a waypost process is configured with."""

    model_config = ConfigDict(frozen=True)

    database_url: str = Field(..., description="Postgres DSN (WAYPOST_DATABASE_URL).")
    database_session_url: str | None = Field(
        None,
        description="A direct Postgres DSN for what needs a session of its own: the "
        "LISTEN of the dispatcher and of the event streams, and the migration lock "
        "(WAYPOST_DATABASE_SESSION_URL). Set it "
        "when WAYPOST_DATABASE_URL points at a transaction pooler such as PgBouncer in "
        "transaction mode; its connections then use no prepared statements and send no "
        "search_path (give the database role search_path=waypost; docs/scale.md).",
    )
    coordinator_host: str = "127.0.0.1"
    coordinator_port: int = Field(8080, ge=0, le=65535)
    coordinator_url: str | None = Field(
        None, description="URL runners use to reach the coordinator; default from host/port."
    )
    api_token: str | None = Field(
        None, description="Bearer token for the user API; unset means no authentication."
    )
    heartbeat_interval_seconds: float = Field(30.0, gt=0)
    missed_heartbeats: int = Field(3, ge=1, description="Beats missed before an attempt is lost.")
    start_timeout_seconds: float | None = Field(
        None, gt=0,
        description="How long a claimed attempt may take to start (Pod scheduling, image pull, "
        "process spawn, importing the task) until its runner's first heartbeat; from then on "
        "the heartbeat window counts. Unset: the backend's default (10 min on Kubernetes, "
        "60 s locally).",
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, description="`waypost dev` on SIGTERM: how long attempts in flight get to "
        "finish before they are stopped and their runs requeued (resuming from their last "
        "checkpoint, without spending an attempt).")
    claim_batch: int = Field(50, ge=1, le=1000)
    poll_interval_seconds: float = Field(2.0, gt=0)
    schedule_interval_seconds: float = Field(
        10.0, gt=0, description="How often the leader's scheduler fires due cron schedules."
    )
    hot_table_vacuum_seconds: float = Field(
        10.0, gt=0, description="How often the leader checks run_queue's dead tuples."
    )
    hot_table_vacuum_dead_tuples: int = Field(
        10_000, ge=0,
        description=("Dead tuples in run_queue above which the leader cleans it: by rotation "
                     "when few runs are active, else by vacuum (0: never)."),
    )
    events_poll_seconds: float = Field(
        0.01, gt=0, le=5,
        description=("How often the coordinator reads new run events while they keep coming "
                     "and anyone streams them (idle, it waits for a NOTIFY)."),
    )
    events_heartbeat_seconds: float = Field(
        15.0, gt=0, le=300,
        description="Idle seconds after which an event stream sends a heartbeat comment.",
    )
    events_stream_max_age_seconds: Seconds = Field(
        1800.0, gt=0, le=7 * 86400,
        description="Seconds after which the coordinator closes an event stream or a log "
        "follow that is still open, as gRPC's MAX_CONNECTION_AGE does: long-lived streams "
        "spread over the replicas after a scale-out or an upgrade. Clients resume with "
        "Last-Event-ID and lose nothing (the SDK, the CLI and browsers do it by themselves)."
        " (WAYPOST_EVENTS_STREAM_MAX_AGE, seconds or 30m.)",
    )
    warm_memory_growth_mib: int = Field(
        256, ge=1,
        description="A warm runner whose resident memory after a run exceeds that after its "
        "first run by more than this many MiB is recycled (WAYPOST_WARM_MEMORY_GROWTH_MIB).",
    )
    history_retain_seconds: Seconds = Field(
        7 * 86400, ge=0,
        description="How long finished runs are kept after they ended, for Tasks without "
        "spec.history.retainFor (WAYPOST_HISTORY_RETAIN_FOR, seconds or 7d; 0: forever).",
    )
    dead_letter_retain_seconds: Seconds = Field(
        30 * 86400, ge=0,
        description="How long a dead-lettered run that nobody requeued or deleted is kept "
        "(WAYPOST_DEAD_LETTER_RETAIN_FOR, seconds or 30d; 0: until handled).",
    )
    history_retention_interval_seconds: float = Field(
        60.0, gt=0, description="How often the leader removes expired history.")
    history_retention_batch: int = Field(
        1000, ge=1, le=100_000,
        description="Runs removed per statement of a retention pass (each its own commit).")
    suspend_threshold_seconds: float = Field(
        5.0, ge=0, le=3600,
        description="Waits shorter than this sleep inside the running attempt; longer ones "
        "suspend the run (its process or Pod exits; it resumes when the wait ends).",
    )
    wait_poll_seconds: float = Field(
        0.5, gt=0, le=60,
        description="Longest pause of the leader's waker, which resumes due waits and "
        "delayed runs and expires runs past their ttl.",
    )
    wait_recheck_seconds: float = Field(
        10.0, gt=0, le=3600,
        description="How often a run waiting for a token or for child runs is looked at "
        "again, a safety net beside the wake-up its token or last child sends.",
    )
    telemetry_poll_seconds: float = Field(
        1.0, gt=0, le=60,
        description="How often the leader reads the run event log into metrics and run spans.",
    )
    metrics_max_tasks: int = Field(
        200, ge=1,
        description="Distinct (namespace, task) label pairs per metric; runs of further "
        "tasks are counted under task=\"_other\".",
    )
    worker_name: str = Field(default_factory=socket.gethostname)
    limits: Limits = Field(default_factory=Limits)
    insights: InsightSettings = Field(default_factory=InsightSettings)

    @property
    def session_url(self) -> str:
        """Where LISTEN and the migration lock connect: a session, never a pooler."""
        return self.database_session_url or self.database_url

    @property
    def pooled(self) -> bool:
        """Whether database_url is a transaction pooler (a session URL is set beside it)."""
        return self.database_session_url is not None

    @property
    def lease_seconds(self) -> float:
        return self.heartbeat_interval_seconds * self.missed_heartbeats

    @property
    def runner_coordinator_url(self) -> str:
        return self.coordinator_url or f"http://{self.coordinator_host}:{self.coordinator_port}"

    @classmethod
    def from_env(cls, defaults: dict[str, Any] | None = None, **overrides: Any) -> Settings:
        """Settings from WAYPOST_* variables over ``defaults``; keyword overrides win."""
        env: dict[str, Any] = dict(defaults or {})
        for var, field in ENV_VARS.items():
            if os.environ.get(var):
                env[field] = os.environ[var]
        limits = {field: os.environ[var] for var, field in LIMIT_VARIABLES.items()
                  if os.environ.get(var)}
        if limits:
            env["limits"] = limits
        insights = {field: os.environ[var] for var, field in INSIGHT_VARIABLES.items()
                    if os.environ.get(var)}
        if insights:
            env["insights"] = insights
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(env)


# Every setting a process reads from its environment (README, "Settings").
ENV_VARS = {
    "WAYPOST_DATABASE_URL": "database_url",
    "WAYPOST_DATABASE_SESSION_URL": "database_session_url",
    "WAYPOST_COORDINATOR_HOST": "coordinator_host",
    "WAYPOST_COORDINATOR_PORT": "coordinator_port",
    "WAYPOST_COORDINATOR_URL": "coordinator_url",
    "WAYPOST_API_TOKEN": "api_token",
    "WAYPOST_HEARTBEAT_INTERVAL": "heartbeat_interval_seconds",
    "WAYPOST_MISSED_HEARTBEATS": "missed_heartbeats",
    "WAYPOST_START_TIMEOUT": "start_timeout_seconds",
    "WAYPOST_SHUTDOWN_GRACE": "shutdown_grace_seconds",
    "WAYPOST_CLAIM_BATCH": "claim_batch",
    "WAYPOST_POLL_INTERVAL": "poll_interval_seconds",
    "WAYPOST_SCHEDULE_INTERVAL": "schedule_interval_seconds",
    "WAYPOST_HOT_TABLE_VACUUM_INTERVAL": "hot_table_vacuum_seconds",
    "WAYPOST_HOT_TABLE_VACUUM_DEAD_TUPLES": "hot_table_vacuum_dead_tuples",
    "WAYPOST_EVENTS_POLL_INTERVAL": "events_poll_seconds",
    "WAYPOST_EVENTS_HEARTBEAT": "events_heartbeat_seconds",
    "WAYPOST_EVENTS_STREAM_MAX_AGE": "events_stream_max_age_seconds",
    "WAYPOST_WARM_MEMORY_GROWTH_MIB": "warm_memory_growth_mib",
    "WAYPOST_HISTORY_RETAIN_FOR": "history_retain_seconds",
    "WAYPOST_DEAD_LETTER_RETAIN_FOR": "dead_letter_retain_seconds",
    "WAYPOST_HISTORY_RETENTION_INTERVAL": "history_retention_interval_seconds",
    "WAYPOST_HISTORY_RETENTION_BATCH": "history_retention_batch",
    "WAYPOST_SUSPEND_THRESHOLD": "suspend_threshold_seconds",
    "WAYPOST_WAIT_POLL_INTERVAL": "wait_poll_seconds",
    "WAYPOST_WAIT_RECHECK_INTERVAL": "wait_recheck_seconds",
    "WAYPOST_TELEMETRY_INTERVAL": "telemetry_poll_seconds",
    "WAYPOST_METRICS_MAX_TASKS": "metrics_max_tasks",
}
