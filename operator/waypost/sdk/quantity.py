"""Parsing of Kubernetes memory quantities and of durations.

Both are validated where a task is declared, so a typo fails at import time
with a message naming the field rather than when a Pod is created.
"""

from __future__ import annotations

import math
import re

# Kubernetes resource.Quantity suffixes that make sense for memory. Decimal
# exponents ("1e9") are accepted by Kubernetes too and handled separately.
_BINARY_SUFFIXES: dict[str, int] = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}
_DECIMAL_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
}
_QUANTITY_RE = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)|[eE](?P<exponent>[+-]?[0-9]+))?$"
)

_DURATION_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+$")
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_memory_quantity(value: str, *, field: str = "memory") -> int:
    """Return the number of bytes a Kubernetes memory quantity stands for.

    Accepts the forms Kubernetes accepts for memory: a plain number of bytes
    (``"1048576"``), binary suffixes (``"512Mi"``, ``"1Gi"``), decimal suffixes
    (``"500M"``) and decimal exponents (``"1e9"``). Fractions are rounded up
    to a whole byte, as Kubernetes does. Raises ``ValueError`` naming
    ``field`` when the value is not a positive quantity.
    """
    if not isinstance(value, str):
        raise ValueError(
            f"{field}: expected a Kubernetes quantity string such as '512Mi', "
            f"got {type(value).__name__}"
        )
    match = _QUANTITY_RE.match(value.strip())
    if match is None:
        raise ValueError(
            f"{field}: {value!r} is not a Kubernetes memory quantity "
            "(expected e.g. '512Mi', '1Gi', '500M' or a number of bytes)"
        )
    number = float(match.group("number"))
    exponent = match.group("exponent")
    if exponent is not None:
        multiplier = 10.0 ** int(exponent)
    else:
        suffix = match.group("suffix") or ""
        multiplier = float(_BINARY_SUFFIXES.get(suffix) or _DECIMAL_SUFFIXES[suffix])
    size = math.ceil(number * multiplier)
    if size <= 0:
        raise ValueError(f"{field}: {value!r} must be more than zero bytes")
    return size


def parse_duration(value: str | float, *, field: str = "timeout") -> float:
    """Return a duration in seconds from a number of seconds or a string.

    Strings combine units as Go and Kubernetes write them: ``"15m"``,
    ``"1h30m"``, ``"90s"``, ``"500ms"``, ``"2d"``. Raises ``ValueError`` naming
    ``field`` when the value is not a positive duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected seconds or a duration like '15m', got a bool")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _DURATION_RE.match(text):
            raise ValueError(
                f"{field}: {value!r} is not a duration "
                "(expected seconds or e.g. '30s', '15m', '1h30m', '500ms')"
            )
        seconds = sum(
            float(amount) * _DURATION_UNITS[unit]
            for amount, unit in _DURATION_PART_RE.findall(text)
        )
    else:
        raise ValueError(
            f"{field}: expected seconds or a duration like '15m', got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{field}: {value!r} must be a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """A positive number of seconds as a duration string :func:`parse_duration`
    reads back to the same value: ``"90s"``, ``"1.5s"``."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration: {seconds!r} must be a positive number of seconds")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds!r}s"
