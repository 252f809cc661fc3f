"""Kubernetes memory quantities and durations in the Task model.

Parsing is the SDK's (one parser for ``@task(memory=...)`` and the CRD); this
module adds the schema patterns the API server checks.
"""

from __future__ import annotations

from waypost.sdk.quantity import parse_duration, parse_memory_quantity

# The same patterns go into the CRD schema so the API server rejects bad values.
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+(\.[0-9]+)?s)?$"


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity such as ``512Mi`` or ``1G``."""
    return parse_memory_quantity(quantity)


def duration_seconds(value: str | float | int) -> float:
    """Seconds in ``90``, ``"90s"``, ``"15m"`` or ``"1h30m"``."""
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"invalid duration {value!r}: expected seconds or e.g. 90s, 15m")
    return parse_duration(value, field="duration")
