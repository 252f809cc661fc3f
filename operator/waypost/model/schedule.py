"""Cron schedules as the API shows them (``GET /v1/schedules``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from waypost.model.base import ApiModel
from waypost.model.enums import MissedRunPolicy


class ScheduleInfo(ApiModel):
    """One schedule of a Task, with its next and last fire times."""

    namespace: str
    task: str
    name: str
    cron: str
    timezone: str
    payload: Any = None
    missed_runs: MissedRunPolicy
    catchup_limit: int
    suspended: bool
    next_fire_at: datetime | None = Field(
        None, description="The next tick; null when the schedule is malformed (see lastError).")
    last_fire_at: datetime | None = Field(None, description="The newest tick that fired.")
    last_error: str | None = None


class ScheduleList(ApiModel):
    schedules: list[ScheduleInfo]
