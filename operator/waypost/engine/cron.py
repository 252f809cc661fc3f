"""Cron expressions of Task schedules: validation and fire times.

A schedule's ``cron`` is five fields (minute hour day-of-month month day-of-week,
croniter syntax: ranges, steps, names, ``L``, ``#``) or one of the macros
``@hourly @daily @midnight @weekly @monthly @yearly @annually``. Hashed and
random fields (``H``, ``R``) are refused: they would make the fire times differ
between scheduler replicas. ``timezone`` is an IANA name (``Europe/Berlin``);
the expression is read in that zone's wall-clock time and every fire time this
module returns is a timezone-aware UTC instant.

Daylight-saving changes are handled the way croniter (>= 7) does it when it is
given a timezone-aware start, which is what we do. Checked for ``Europe/Berlin``
in ``tests/integration/test_scheduler.py`` and ``tests/unit/test_cron.py``:

- **Spring forward** (2026-03-29, 02:00 CET jumps to 03:00 CEST; the hour
  02:00-02:59 does not exist): a tick that falls into the missing hour fires
  once, at the first instant after the gap, 03:00 CEST (01:00 UTC). A daily
  ``30 2 * * *`` job therefore runs at 03:00 that day (not 03:30, and it is not
  skipped); ``15 1-3 * * *`` runs at 01:15, 03:00 and 03:15. Hourly schedules
  (``0 * * * *``) simply have no 02:00 run that day: 01:00 CET, then 03:00 CEST,
  one hour of real time apart.
- **Fall back** (2026-10-25, 03:00 CEST goes back to 02:00 CET; the hour
  02:00-02:59 happens twice): a tick in the repeated hour fires twice, once in
  each occurrence. A daily ``30 2 * * *`` job runs at 02:30 CEST (00:30 UTC) and
  again at 02:30 CET (01:30 UTC) that day; ticks outside that hour (``0 3 * * *``,
  ``59 1 * * *``) run once. The two firings have different UTC fire times and so
  different idempotency keys: both become runs.

Schedules in ``UTC`` (the default) have no such changes; pick UTC for a job that
must run exactly once a day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from waypost.model.task import Schedule

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_HASHED_OR_RANDOM = re.compile(r"^[HR](\(|/|$)", re.IGNORECASE)

# Any valid five-field expression fires within this many years (29 February on a
# given weekday is the rarest); one that does not is refused as never firing.
_PROBE_FROM = datetime(2000, 1, 1, tzinfo=UTC)


class InvalidSchedule(ValueError):
    """A schedule whose cron expression or timezone cannot be used."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"schedule {name!r}: {problem}")
        self.schedule = name
        self.problem = problem


@dataclass(frozen=True)
class CronSchedule:
    """A validated schedule: the expression (macros expanded) and its zone."""

    name: str
    expression: str
    timezone: ZoneInfo

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (aware), in UTC."""
        start = _aware(after).astimezone(self.timezone)
        found: datetime = croniter(self.expression, start).get_next(datetime)
        return found.astimezone(UTC)

    def due(self, since: datetime, now: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` fire times in ``[since, now]``, the newest ones, oldest first.

        Walks backwards from ``now``, so the work is bounded by ``limit`` however
        long the gap (a per-minute schedule after a week of downtime has ten
        thousand ticks; croniter takes ~0.1 ms for each).
        """
        since, now = _aware(since).astimezone(UTC), _aware(now).astimezone(UTC)
        if limit < 1 or since > now:
            return []
        # Start a minute past ``now``: get_prev is strictly-before, and a tick at
        # exactly ``now`` must count.
        it = croniter(self.expression, (now + timedelta(minutes=1)).astimezone(self.timezone))
        found: list[datetime] = []
        while len(found) < limit:
            tick: datetime = it.get_prev(datetime)
            tick = tick.astimezone(UTC)
            if tick > now:
                continue
            if tick < since:
                break
            found.append(tick)
        found.reverse()
        return found


def parse(name: str, cron: str, timezone: str) -> CronSchedule:
    """Validate a schedule; raises InvalidSchedule naming it and what is wrong."""
    expression = _expression(name, cron)
    zone = _zone(name, timezone)
    try:
        croniter(expression, _PROBE_FROM.astimezone(zone)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidSchedule(
            name, f"cron {cron!r} never fires (no date matches all its fields)"
        ) from None
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise InvalidSchedule(name, f"cron {cron!r} is not valid: {exc}") from None
    return CronSchedule(name=name, expression=expression, timezone=zone)


def validate(schedule: Schedule) -> CronSchedule:
    return parse(schedule.name, schedule.cron, schedule.timezone)


def fire_key(name: str, fire_time: datetime) -> str:
    """The idempotency key of a schedule's firing: ``schedule:<name>:<UTC ISO time>``."""
    stamp = _aware(fire_time).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"schedule:{name}:{stamp}"


def _expression(name: str, cron: str) -> str:
    text = " ".join(cron.split())
    if not text:
        raise InvalidSchedule(name, "cron is empty")
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise InvalidSchedule(
                name, f"cron {cron!r}: unknown macro; use one of {', '.join(MACROS)}"
            )
        return macro
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule(
            name,
            f"cron {cron!r} has {len(fields)} field(s); expected 5 "
            "(minute hour day-of-month month day-of-week) or a macro like @hourly",
        )
    for field in fields:
        if _HASHED_OR_RANDOM.match(field):
            raise InvalidSchedule(
                name, f"cron {cron!r}: hashed or random fields (H, R) are not supported"
            )
    try:
        croniter.expand(text)
    except CroniterBadCronError as exc:
        raise InvalidSchedule(name, f"cron {cron!r} is not valid: {exc}") from None
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise InvalidSchedule(name, f"cron {cron!r} is not valid: {exc}") from None
    return text


def _zone(name: str, timezone: str) -> ZoneInfo:
    if not timezone:
        raise InvalidSchedule(name, "timezone is empty; use an IANA name like Europe/Berlin")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            name, f"timezone {timezone!r} is not a known IANA time zone (like Europe/Berlin)"
        ) from None


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} is a naive datetime; waypost uses timezone-aware times")
    return value
