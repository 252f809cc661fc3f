"""``@task(schedules=[Schedule(...)])``: validated at import time, converted into the
Task spec's ``schedules`` by the one SDK -> spec conversion."""

from __future__ import annotations

from typing import Any

import pytest

from waypost import Schedule, task
from waypost.model import from_sdk
from waypost.model.enums import MissedRunPolicy


def _report(ctx: Any, payload: Any) -> None:
    return None


def _plain(ctx: Any, payload: Any) -> None:
    return None


def test_schedules_reach_the_task_spec() -> None:
    report = task(id="report-sched", schedules=[
        Schedule(cron="0 2 * * *", timezone="Europe/Berlin", payload={"full": True},
                 missed_runs="catchup", name="nightly", catchup_limit=3),
        Schedule(cron="@hourly"),
    ])(_report)
    spec = from_sdk.task_spec(report.definition)
    nightly, hourly = spec.schedules
    assert (nightly.name, nightly.cron, nightly.timezone, nightly.payload) == (
        "nightly", "0 2 * * *", "Europe/Berlin", {"full": True})
    assert nightly.missed_runs is MissedRunPolicy.CATCHUP and nightly.catchup_limit == 3
    assert (hourly.name, hourly.timezone, hourly.missed_runs) == (
        "schedule-2", "UTC", MissedRunPolicy.SKIP)
    assert report.definition.as_dict()["schedules"][0]["missedRuns"] == "Catchup"


def test_a_task_without_schedules_has_none() -> None:
    plain = task(id="plain-sched")(_plain)
    assert from_sdk.task_spec(plain.definition).schedules == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cron": "every day"}, "Schedule.cron"),
    ({"cron": "* * * * *", "missed_runs": "later"}, "Schedule.missed_runs"),
    ({"cron": "* * * * *", "name": "Nightly!"}, "Schedule.name"),
    ({"cron": "* * * * *", "catchup_limit": 0}, "Schedule.catchup_limit"),
    ({"cron": "* * * * *", "timezone": ""}, "Schedule.timezone"),
])
def test_bad_schedules_fail_at_import_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)


def test_schedule_names_must_differ() -> None:
    with pytest.raises(ValueError, match="names must differ"):
        task(id="twice-sched", schedules=[Schedule(cron="@daily", name="a"),
                                          Schedule(cron="@hourly", name="a")])(
            lambda ctx, payload: None)
