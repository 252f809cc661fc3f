"""Failure patterns the leader flags per task (issue 11), and their thresholds.

Four patterns, each computed from Postgres over a recent window
(:mod:`waypost.engine.insights`): timeout loops, retry storms, checkpoint gaps
and memory growth toward the limit. A pattern holds while its evidence stays in
the window and clears by itself when it stops. waypost never acts on one: it
shows it (``GET /v1/insights``, the UI, ``waypost insights``, a ``Degraded``
condition and an Event on the Task, the ``waypost_task_pattern`` metric) and a
person decides.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from waypost.model.base import ApiModel
from waypost.model.inputs import MAX_NAME_LENGTH, ApiText
from waypost.model.run import QueryModel


class Pattern(StrEnum):
    """A failure pattern; its condition reason is :attr:`reason`."""

    TIMEOUT_LOOP = "timeout_loop"
    RETRY_STORM = "retry_storm"
    CHECKPOINT_GAP = "checkpoint_gap"
    MEMORY_GROWTH = "memory_growth"

    @property
    def reason(self) -> str:
        """CamelCase, for a condition's reason and an Event's."""
        return "".join(part.capitalize() for part in self.value.split("_"))


class InsightSettings(BaseModel):
    """Thresholds of the failure patterns (the chart's ``operator.insights``)."""

    model_config = ConfigDict(frozen=True)

    interval_seconds: float = Field(
        60.0, gt=0, description="How often the leader looks for patterns.")
    window_seconds: float = Field(
        3600.0, gt=0, description="How far back the evidence of a pattern may lie.")
    timeout_loop_attempts: int = Field(
        2, ge=1, description="Timed-out attempts of one run that make a timeout loop.")
    timeout_loop_runs: int = Field(
        1, ge=1, description="Runs in a timeout loop before the task is flagged.")
    retry_storm_failure_ratio: float = Field(
        0.5, gt=0, le=1, description="Share of a task's attempts that failed in the window.")
    retry_storm_runs: int = Field(
        10, ge=1, description="Distinct runs with a failed attempt, at least, for a storm.")
    checkpoint_gap_seconds: float = Field(
        600.0, gt=0, description="Longest stretch of an attempt without a checkpoint "
        "(from its start, between checkpoints, to its end) that is flagged.")
    checkpoint_gap_attempts: int = Field(
        1, ge=1, description="Attempts with such a gap before the task is flagged.")
    memory_limit_ratio: float = Field(
        0.9, gt=0, le=1, description="Peak memory of attempts (p95) as a share of the "
        "limit that is flagged; OOM kills count as reaching the limit.")
    memory_min_attempts: int = Field(
        3, ge=1, description="Attempts with a measured peak before memory is judged.")
    memory_headroom: float = Field(
        0.25, ge=0, le=10, description="Headroom over the p99 peak in the right-sizing "
        "hint (0.25: p99 + 25%).")


#: The environment variables of :class:`InsightSettings` (the chart's operator.insights).
INSIGHT_VARIABLES = {
    "WAYPOST_INSIGHTS_INTERVAL": "interval_seconds",
    "WAYPOST_INSIGHTS_WINDOW": "window_seconds",
    "WAYPOST_TIMEOUT_LOOP_ATTEMPTS": "timeout_loop_attempts",
    "WAYPOST_TIMEOUT_LOOP_RUNS": "timeout_loop_runs",
    "WAYPOST_RETRY_STORM_FAILURE_RATIO": "retry_storm_failure_ratio",
    "WAYPOST_RETRY_STORM_RUNS": "retry_storm_runs",
    "WAYPOST_CHECKPOINT_GAP_SECONDS": "checkpoint_gap_seconds",
    "WAYPOST_CHECKPOINT_GAP_ATTEMPTS": "checkpoint_gap_attempts",
    "WAYPOST_MEMORY_LIMIT_RATIO": "memory_limit_ratio",
    "WAYPOST_MEMORY_MIN_ATTEMPTS": "memory_min_attempts",
    "WAYPOST_MEMORY_HEADROOM": "memory_headroom",
}


class Finding(BaseModel):
    """What one detection pass found for one task (engine-internal)."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    task: str
    pattern: Pattern
    summary: str
    evidence: list[str] = Field(default_factory=list)
    figures: dict[str, Any] = Field(default_factory=dict)


class StepMemory(ApiModel):
    """Peak memory of one step across the window's attempts."""

    step: str
    attempts: int
    p99_bytes: int
    max_bytes: int


class Sizing(ApiModel):
    """Measured peak memory of a task's attempts and the limit it suggests."""

    namespace: str
    task: str
    attempts: int = Field(description="Attempts in the window with a measured peak.")
    limit_bytes: int = Field(description="The memory limit of the latest of them.")
    p99_bytes: int
    max_bytes: int
    suggested_limit_bytes: int = Field(
        description="p99 peak plus the configured headroom, rounded up to a MiB.")
    steps: list[StepMemory] = Field(default_factory=list)


class TaskInsight(ApiModel):
    """A failure pattern that holds for a task now."""

    namespace: str
    task: str
    pattern: Pattern
    reason: str = Field(description="The Task condition's reason for it (CamelCase).")
    summary: str = Field(description="One sentence: what was seen, with figures.")
    since: datetime = Field(description="When the pattern was first seen this time.")
    updated_at: datetime = Field(description="The detection pass that last confirmed it.")
    evidence: list[str] = Field(description="Ids of runs that show it (a few, newest first).")
    figures: dict[str, Any] = Field(description="The measurements behind it.")


class InsightsPage(ApiModel):
    """``GET /v1/insights``: patterns that hold, and memory sizing per task."""

    items: list[TaskInsight]
    sizing: list[Sizing]


class InsightQuery(QueryModel):
    """Filters of ``GET /v1/insights`` (query parameters)."""

    namespace: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this namespace.")
    task: ApiText | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH, description="Only this task.")
