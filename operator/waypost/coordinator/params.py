"""Query parameters, parsed at the boundary: a bad one is a 400 that names it."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from waypost.engine.errors import InvalidValue


def int_param(request: web.Request, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidValue(f"query parameter {name!r} must be an integer, got {value!r}") from None


def time_param(request: web.Request, name: str) -> datetime | None:
    """An ISO-8601 timestamp query parameter; one without a zone is taken as UTC."""
    value = request.query.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(
            f"query parameter {name!r} must be an ISO-8601 time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
