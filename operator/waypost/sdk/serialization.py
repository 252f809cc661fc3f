"""Strict JSON encoding for checkpoints and results.

Values are encoded once, compactly, with ``allow_nan=False``: what the
coordinator stores must be standard JSON that every client can read back.
Non-ASCII characters are escaped as the HTTP client sends them and as the
coordinator measures them, so a size checked here is the size it checks.
"""

from __future__ import annotations

import json
from typing import Any

from waypost.sdk.errors import NotJSONSerializable


def encode_json(value: Any, *, what: str) -> str:
    """Encode ``value`` as compact JSON or raise :class:`NotJSONSerializable`."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotJSONSerializable(what, str(exc)) from None


def json_size(encoded: str) -> int:
    """Size in bytes of an encoded JSON document as sent over the wire (UTF-8)."""
    return len(encoded.encode("utf-8"))


def roundtrip(value: Any, *, what: str) -> tuple[Any, int]:
    """Return ``value`` as it reads back from JSON, and its encoded size.

    Steps return the decoded copy so that the first attempt sees exactly
    what a later attempt will read from the stored checkpoint (tuples become
    lists, integer dict keys become strings).
    """
    encoded = encode_json(value, what=what)
    return json.loads(encoded), json_size(encoded)
