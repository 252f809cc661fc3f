"""JSON encoding with size limits, checked before anything is written."""

from __future__ import annotations

import json
from typing import Any

from waypost.engine.errors import InvalidValue, TooLarge
from waypost.store.pool import RawJson


def encode_limited(value: Any, limit: int, what: str) -> RawJson:
    """Encode ``value`` as compact JSON; raise TooLarge past ``limit`` bytes."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"{what} is not valid JSON: {exc}") from None
    size = len(text.encode())
    if size > limit:
        raise TooLarge(f"{what} is {size} bytes, over the limit of {limit} bytes")
    return RawJson(text)
