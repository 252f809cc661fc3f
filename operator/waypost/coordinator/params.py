"""Query parameters, parsed at the boundary: a bad one is a 400 that names it.

Each route's query parameters are a model (``model.run.RunQuery`` and its kind),
which both validates them and documents them in OpenAPI, so the two never differ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from waypost.engine.errors import InvalidValue

M = TypeVar("M", bound=BaseModel)


def describe_validation(exc: ValidationError, prefix: str = "") -> str:
    """pydantic's errors as one message that names each field (the first five)."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{prefix}{where or 'body'}: {err['msg']}")
    return "; ".join(parts)


def read_query(request: web.Request, model: type[M]) -> M:
    """The query parameters as ``model``; a bad one is InvalidValue (400) naming it."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise InvalidValue(describe_validation(exc, "query parameter ")) from None


def utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
