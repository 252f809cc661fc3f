"""The grammar of memory quantities and durations, in one place.

A string is accepted here exactly when the Task resource accepts it: the
patterns below are the CRD's (``waypost.model.task`` puts them in the schema)
and the bounds match its CEL rules, so ``@task(memory=...)``, a ``kubectl
apply`` and the HTTP API agree (a test feeds all three the same strings).

Memory follows Kubernetes' ``resource.Quantity`` (what
``kubernetes.utils.parse_quantity`` reads), with exact decimal arithmetic and
fractions of a byte rounded up as Kubernetes does, minus what is never a
memory limit: a sign, and the milli suffix (``"128m"`` is 0.128 bytes, always
a typo for ``128Mi``). Durations are Go's and Kubernetes' unit strings plus
days: ``"90s"``, ``"15m"``, ``"1h30m"``, ``"500ms"``, ``"2d"``.

Both are validated where a task is declared, so a typo fails at import time
with a message naming the field rather than when a Pod is created. This module
does not import the Kubernetes client: the runner image carries the SDK alone.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal

MEMORY_PATTERN = (
    r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
MEMORY_MAX_LENGTH = 64
#: The store keeps bytes in a bigint, so 8Ei (2^63) is too many; and the API
#: server's CEL quantities (kube-apiserver 1.34, measured) do not find 2^63 - 1
#: below 8Ei either, so the largest value all three accept is 2^63 - 2.
MEMORY_MAX_BYTES = 2**63 - 2
#: The CRD's CEL rule: what the pattern lets through must be 1 byte to 8Ei (exclusive).
MEMORY_RANGE_RULE = (
    "!isQuantity(self) || (quantity(self).compareTo(quantity('1')) >= 0"
    " && quantity(self).compareTo(quantity('8Ei')) < 0)"
)

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
DURATION_MAX_LENGTH = 32
#: The CRD's CEL rule: a duration is positive exactly when some digit in it is not 0.
DURATION_POSITIVE_RULE = "self.matches('[1-9]')"

_MEMORY_RE = re.compile(MEMORY_PATTERN)
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SUFFIXES: dict[str, int] = {
    "": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5, "E": 1000**6,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6,
}


def parse_memory_quantity(value: str, *, field: str = "memory") -> int:
    """Return the number of bytes a Kubernetes memory quantity stands for.

    Accepts a plain number of bytes (``"1048576"``), binary suffixes
    (``"512Mi"``, ``"1Gi"``), decimal suffixes (``"500M"``) and decimal
    exponents (``"1e9"``); fractions of a byte are rounded up. Raises
    ``ValueError`` naming ``field`` when the value is not a quantity between
    one byte and 8Ei.
    """
    if not isinstance(value, str):
        raise ValueError(
            f"{field}: expected a Kubernetes quantity string such as '512Mi', "
            f"got {type(value).__name__}"
        )
    match = _MEMORY_RE.match(value) if len(value) <= MEMORY_MAX_LENGTH else None
    if match is None:
        raise ValueError(
            f"{field}: {value!r} is not a Kubernetes memory quantity "
            "(expected e.g. '512Mi', '1Gi', '500M', '1e9' or a number of bytes)"
        )
    number = Decimal(match.group(1))
    suffix = match.group(3) or ""
    if suffix not in _SUFFIXES:  # an exponent: e9, E+9, e-3
        exponent = int(suffix[1:])
        # Beyond these the answer is known without building a huge Decimal.
        amount = Decimal(0) if exponent < -40 else number.scaleb(min(exponent, 40))
    else:
        amount = number * _SUFFIXES[suffix]
    if amount < 1:
        raise ValueError(f"{field}: {value!r} must be at least one byte")
    size = int(amount.to_integral_value(rounding=ROUND_CEILING))
    if size > MEMORY_MAX_BYTES:
        raise ValueError(f"{field}: {value!r} must be less than 8Ei")
    return size


def parse_duration(value: str | float, *, field: str = "timeout") -> float:
    """Return a duration in seconds from a number of seconds or a string.

    Strings combine units as Go and Kubernetes write them, plus days:
    ``"15m"``, ``"1h30m"``, ``"90s"``, ``"500ms"``, ``"2d"``. Raises
    ``ValueError`` naming ``field`` when the value is not a positive duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected seconds or a duration like '15m', got a bool")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        if len(value) > DURATION_MAX_LENGTH or not _DURATION_RE.match(value):
            raise ValueError(
                f"{field}: {value!r} is not a duration "
                "(expected seconds or e.g. '30s', '15m', '1h30m', '500ms', '2d')"
            )
        seconds = sum(
            float(amount) * _DURATION_UNITS[unit]
            for amount, unit in _DURATION_PART_RE.findall(value)
        )
    else:
        raise ValueError(
            f"{field}: expected seconds or a duration like '15m', got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{field}: {value!r} must be a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """A positive number of seconds as a duration string in the grammar above,
    which :func:`parse_duration` reads back to the same value: ``"90s"``, ``"1.5s"``."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration: {seconds!r} must be a positive number of seconds")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    # Positional notation, never an exponent ("1e-05s" is not a duration).
    return format(Decimal(repr(float(seconds))), "f") + "s"
