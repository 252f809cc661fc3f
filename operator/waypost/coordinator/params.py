"""Query parameters, parsed at the boundary: a bad one is a 400 that names it.

Each route's query parameters are a model (``model.run.RunQuery`` and its kind),
which both validates them and documents them in OpenAPI, so the two never differ.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from waypost.engine.errors import InvalidValue, UnsupportedMediaType

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


FORM = "application/x-www-form-urlencoded"


def _list_fields(model: type[BaseModel]) -> set[str]:
    """The fields of ``model`` (by their names in the form) that take repeated values."""
    return {field.alias or name for name, field in model.model_fields.items()
            if typing.get_origin(field.annotation) is list}


async def read_form(request: web.Request, model: type[M]) -> M:
    """The posted form as ``model``: 415 for a body that is not a form, InvalidValue
    (400) naming the field otherwise. A repeated field is a list where the model takes
    one, and its first value elsewhere."""
    if request.body_exists and request.content_type != FORM:
        raise UnsupportedMediaType(f"Content-Type {request.content_type[:60]!r} is not "
                                   f"supported; send {FORM}")
    try:
        form = await request.post()
    except (UnicodeDecodeError, ValueError):
        raise InvalidValue("form: the body is not a URL-encoded UTF-8 form") from None
    repeated = _list_fields(model)
    data: dict[str, object] = {}
    for name in form:
        if name in data:
            continue
        values = form.getall(name)
        if not all(isinstance(v, str) for v in values):
            raise InvalidValue(f"form field {name[:60]}: must be text")
        data[name] = values if name in repeated else values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidValue(describe_validation(exc, "form field ")) from None


def utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
