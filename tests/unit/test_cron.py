"""Cron expressions of schedules: validation errors name the schedule and the
problem; fire times are UTC; daylight-saving changes in Europe/Berlin behave as
documented in waypost.engine.cron."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from waypost.engine import cron
from waypost.model.task import Schedule


def _utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "cron is empty"),
        ("* * * *", "has 4 field(s); expected 5"),
        ("0 0 * * * *", "has 6 field(s); expected 5"),
        ("*/5 * * * * 2026", "has 6 field(s); expected 5"),
        ("61 * * * *", "is not valid"),
        ("0 25 * * *", "is not valid"),
        ("0 0 * * 8", "is not valid"),
        ("1-70 * * * *", "is not valid"),
        ("a b c d e", "is not valid"),
        ("@reboot", "unknown macro"),
        ("@every 5m", "unknown macro"),
        ("H * * * *", "hashed or random fields"),
        ("R 0 * * *", "hashed or random fields"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_malformed_cron_is_refused_with_the_schedule_named(expression: str, message: str) -> None:
    with pytest.raises(cron.InvalidSchedule, match=re.escape(message)) as caught:
        cron.parse("nightly", expression, "UTC")
    assert str(caught.value).startswith("schedule 'nightly': ")
    assert caught.value.schedule == "nightly"


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons", "../../etc/passwd", "Europe/berlin "])
def test_unknown_timezone_is_refused(zone: str) -> None:
    with pytest.raises(cron.InvalidSchedule, match="timezone") as caught:
        cron.parse("report", "0 9 * * *", zone)
    assert "schedule 'report'" in str(caught.value)


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", _utc(2026, 1, 1, 13)),
        ("@daily", _utc(2026, 1, 2)),
        ("@midnight", _utc(2026, 1, 2)),
        ("@weekly", _utc(2026, 1, 4)),  # the next Sunday
        ("@monthly", _utc(2026, 2, 1)),
        ("@yearly", _utc(2027, 1, 1)),
        ("@ANNUALLY", _utc(2027, 1, 1)),
    ],
)
def test_macros(macro: str, expected: datetime) -> None:
    assert cron.parse("m", macro, "UTC").next_after(_utc(2026, 1, 1, 12, 30)) == expected


def test_next_fire_is_strictly_after_and_in_utc() -> None:
    schedule = Schedule(name="s", cron="*/15 * * * *", timezone="Asia/Tokyo")
    nxt = cron.validate(schedule).next_after(_utc(2026, 1, 1, 12, 15))
    assert nxt == _utc(2026, 1, 1, 12, 30)
    assert nxt.utcoffset() is not None and nxt.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    # 09:00 in Tokyo is 00:00 UTC.
    assert cron.validate(
        Schedule(name="s", cron="0 9 * * *", timezone="Asia/Tokyo")
    ).next_after(_utc(2026, 1, 1, 12)) == _utc(2026, 1, 2, 0)
    with pytest.raises(ValueError, match="naive"):
        cron.validate(schedule).next_after(datetime(2026, 1, 1))


def test_due_keeps_the_newest_ticks_oldest_first() -> None:
    every_minute = cron.parse("m", "* * * * *", "UTC")
    since, now = _utc(2026, 1, 1, 12, 0), _utc(2026, 1, 1, 12, 5)
    assert every_minute.due(since, now, 100) == [_utc(2026, 1, 1, 12, m) for m in range(6)]
    assert every_minute.due(since, now, 3) == [_utc(2026, 1, 1, 12, m) for m in (3, 4, 5)]
    assert every_minute.due(_utc(2026, 1, 1, 12, 0, 30), _utc(2026, 1, 1, 12, 0, 59), 5) == []
    # Bounded by the limit however long the gap (a year of minutes here).
    assert len(every_minute.due(_utc(2025, 1, 1), now, 2)) == 2


def test_fire_key_is_the_utc_fire_time() -> None:
    berlin = cron.parse("s", "30 2 * * *", "Europe/Berlin").next_after(_utc(2026, 6, 1))
    assert cron.fire_key("s", berlin) == "schedule:s:2026-06-01T00:30:00Z"


def _fires(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    parsed = cron.parse("s", expression, zone)
    found, t = [], parsed.next_after(start)
    while t <= end:
        found.append(t)
        t = parsed.next_after(t)
    return found


def test_berlin_spring_forward() -> None:
    """2026-03-29: 02:00 CET becomes 03:00 CEST; 02:xx does not exist that day."""
    day = (_utc(2026, 3, 28, 12), _utc(2026, 3, 30, 12))
    # A 02:30 daily job runs once, at 03:00 CEST (01:00 UTC), the first instant after the gap.
    assert _fires("30 2 * * *", "Europe/Berlin", *day) == [
        _utc(2026, 3, 29, 1), _utc(2026, 3, 30, 0, 30)]
    # Hourly: no 02:00 that day; 01:00 CET and 03:00 CEST are one real hour apart.
    hourly = _fires(
        "0 * * * *", "Europe/Berlin", _utc(2026, 3, 28, 23, 30), _utc(2026, 3, 29, 2, 30))
    assert hourly == [_utc(2026, 3, 29, 0), _utc(2026, 3, 29, 1), _utc(2026, 3, 29, 2)]
    # A tick in the gap is moved to 03:00, not dropped.
    assert _fires("15 1-3 * * *", "Europe/Berlin", _utc(2026, 3, 28, 23), _utc(2026, 3, 29, 3)) == [
        _utc(2026, 3, 29, 0, 15), _utc(2026, 3, 29, 1), _utc(2026, 3, 29, 1, 15)]


def test_berlin_fall_back() -> None:
    """2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:xx happens twice."""
    day = (_utc(2026, 10, 24, 12), _utc(2026, 10, 26, 12))
    # A 02:30 daily job runs in both occurrences of 02:30: 00:30 UTC (CEST) and 01:30 UTC (CET).
    assert _fires("30 2 * * *", "Europe/Berlin", *day) == [
        _utc(2026, 10, 25, 0, 30), _utc(2026, 10, 25, 1, 30), _utc(2026, 10, 26, 1, 30)]
    # Outside the repeated hour, once a day.
    assert _fires("0 3 * * *", "Europe/Berlin", *day) == [
        _utc(2026, 10, 25, 2), _utc(2026, 10, 26, 2)]
    assert _fires("59 1 * * *", "Europe/Berlin", *day) == [
        _utc(2026, 10, 24, 23, 59), _utc(2026, 10, 26, 0, 59)]
    # Walking back (catch-up) agrees with walking forward across the change.
    parsed = cron.parse("s", "*/30 * * * *", "Europe/Berlin")
    forward = _fires("*/30 * * * *", "Europe/Berlin", _utc(2026, 10, 24, 22), _utc(2026, 10, 25, 4))
    assert parsed.due(forward[0], forward[-1], 1000) == forward
    assert len(forward) == 12  # six real hours, every half hour: nothing doubled, nothing lost
