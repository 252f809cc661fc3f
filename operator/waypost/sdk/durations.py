"""Durations as users write them: seconds (a number, or its text ``"90"``),
``timedelta``, or text like ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` (units ms,
s, m, h, d)."""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["MAX_DURATION_SECONDS", "DurationLike", "parse_duration"]

#: The longest wait, delay or ttl: a year.
MAX_DURATION_SECONDS = 365 * 24 * 3600.0

DurationLike = float | int | str | timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The text form, for JSON schemas.
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"


def parse_duration(value: DurationLike, what: str = "duration") -> float:
    """Seconds in ``value``; ValueError naming ``what`` when it is negative, longer
    than a year, or not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected seconds or a duration like '5m', got {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        seconds = float(value)  # "90" is seconds, as a number would be
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{what}: {value[:40]!r} is not a duration (like '90s', '5m', "
                             "'1h30m', '2d')")
    else:
        raise ValueError(f"{what}: expected seconds or a duration like '5m', got "
                         f"{type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must not be negative, got {seconds:g} s")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{what} is {seconds:g} s, over the limit of one year "
                         f"({MAX_DURATION_SECONDS:g} s)")
    return seconds
