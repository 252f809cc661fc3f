"""Kubernetes resource quantities (memory) and durations."""

from __future__ import annotations

import re

_MEMORY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_UNITS = {
    None: 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
# The same pattern goes into the CRD schema so the API server rejects bad values.
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"

_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+(\.[0-9]+)?s)?$"


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity such as ``512Mi`` or ``1G``."""
    match = _MEMORY_RE.match(quantity.strip())
    if not match:
        raise ValueError(
            f"invalid memory quantity {quantity!r}: expected a number with an optional "
            "unit Ki, Mi, Gi, Ti, k, M, G or T (for example 512Mi)"
        )
    value = float(match.group(1)) * _MEMORY_UNITS[match.group(2)]
    if value < 1:
        raise ValueError(f"invalid memory quantity {quantity!r}: must be positive")
    return int(value)


def format_memory(n_bytes: int) -> str:
    """The shortest exact binary-unit quantity for a byte count (``256Mi``)."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        size = _MEMORY_UNITS[unit]
        if n_bytes % size == 0:
            return f"{n_bytes // size}{unit}"
    return str(n_bytes)


def duration_seconds(value: str | float | int) -> float:
    """Seconds in ``90``, ``"90s"``, ``"15m"`` or ``"1h30m"``."""
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"invalid duration {value!r}: must be positive")
        return float(value)
    match = _DURATION_RE.match(value.strip())
    if not value.strip() or not match or not any(match.groups()):
        raise ValueError(
            f"invalid duration {value!r}: expected seconds or a form like 90s, 15m, 1h30m"
        )
    hours, minutes, seconds = match.groups()
    total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
    if total <= 0:
        raise ValueError(f"invalid duration {value!r}: must be positive")
    return total
