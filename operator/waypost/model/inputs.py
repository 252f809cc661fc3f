"""The input boundary: what a string or a JSON value entering waypost may be.

Everything that comes in through the HTTP API, the runner API, a TaskRun or the
CLI (which goes through the API) passes these checks once, before anything is
stored. Postgres refuses NUL characters and lone surrogates in text and jsonb,
deep JSON breaks recursive encoders, and huge integers break JSON parsers and
other clients; so they are refused here with a message naming the field,
instead of failing later in the database or when the run is read back.

The limits are documented in README.md ("Input limits"); the byte-size limits
of payloads, checkpoints and results are in :class:`waypost.model.settings.Limits`.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

# Containers nested inside each other, counting the outermost one.
MAX_JSON_DEPTH = 64
# Integers in JSON documents: a signed 64-bit range, what every JSON client reads exactly.
MIN_INTEGER = -(2**63)
MAX_INTEGER = 2**63 - 1
# Names in paths and filters (namespaces, tasks, schedules): a Kubernetes object name.
MAX_NAME_LENGTH = 253
# Idempotency keys, concurrency keys, checkpoint keys.
MAX_KEY_LENGTH = 256
# The request line: method, path and query string.
MAX_URL_BYTES = 8192
# Digits in a JSON number before it is even converted (the integer limit has 19).
_MAX_NUMBER_CHARS = 40


class UnsafeInput(ValueError):
    """A value that waypost refuses; ``where`` is the path inside it (``.a[2]``)."""

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(f"{reason}, at {where}" if where else reason)
        self.reason = reason
        self.where = where


class _OversizedNumber:
    """A number too long to convert, kept so that the check can name where it was."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (U+0000), which is not allowed"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (U+D800-U+DFFF), which is not valid Unicode"
    return None


def check_text(value: str, *, max_length: int | None = None) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise UnsafeInput(problem)
    if max_length is not None and len(value) > max_length:
        raise UnsafeInput(f"is {len(value)} characters long, over the limit of {max_length}")
    return value


def _member(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)[:60]}]"


def check_json(value: Any) -> Any:
    """Refuse what cannot be stored and read back as standard JSON.

    Iterative, so that a hostile document cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                raise UnsafeInput(problem, where)
        elif isinstance(item, int):
            if not MIN_INTEGER <= item <= MAX_INTEGER:
                raise UnsafeInput(_integer_message(len(str(abs(item)))), where)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnsafeInput("NaN and Infinity are not JSON numbers", where)
            if not MIN_INTEGER <= item <= MAX_INTEGER:
                raise UnsafeInput(f"the number {item:g} is outside the allowed range "
                                  "[-2^63, 2^63-1]; send large numbers as strings", where)
        elif isinstance(item, _OversizedNumber):
            raise UnsafeInput(_integer_message(item.digits), where)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise UnsafeInput(f"is nested deeper than {MAX_JSON_DEPTH} levels",
                                  where[:120] + ("…" if len(where) > 120 else ""))
            if isinstance(item, dict):
                for key, member in item.items():
                    if not isinstance(key, str):
                        raise UnsafeInput("object keys must be strings", where)
                    problem = text_problem(key)
                    if problem is not None:
                        raise UnsafeInput(f"an object key {problem}", where)
                    stack.append((member, _member(where, key), depth + 1))
            else:
                stack.extend((member, f"{where}[{i}]", depth + 1)
                             for i, member in enumerate(item))
        else:
            raise UnsafeInput(f"{type(item).__name__} is not a JSON value", where)
    return value


def check_fields(body: Any) -> None:
    """:func:`check_json` of each top-level field of a body on its own, so that the
    depth counts from the field and the error names it (``data.a[2]``)."""
    if not isinstance(body, dict):
        check_json(body)
        return
    for name, value in body.items():
        if not isinstance(name, str) or text_problem(name) is not None:
            raise UnsafeInput("a field name is not valid text")
        try:
            check_json(value)
        except UnsafeInput as exc:
            raise UnsafeInput(exc.reason, f"{name}{exc.where}") from None


def _integer_message(digits: int) -> str:
    return (f"an integer of {digits} digits is outside the allowed range "
            f"[-2^63, 2^63-1]; send large numbers as strings")


def _parse_int(text: str) -> int | _OversizedNumber:
    if len(text) > _MAX_NUMBER_CHARS:
        return _OversizedNumber(len(text.lstrip("-")))
    return int(text)


def _parse_float(text: str) -> float | _OversizedNumber:
    if len(text) > 4 * _MAX_NUMBER_CHARS:
        return _OversizedNumber(len(text))
    return float(text)


def _parse_constant(name: str) -> Any:
    raise UnsafeInput(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """Decode a request body; UnsafeInput says why it is not acceptable JSON.

    The decoded value still needs :func:`check_json` (the API models run it per
    field, so that the error names the field).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeInput(f"malformed JSON body: not UTF-8 ({exc.reason} at byte {exc.start})"
                          ) from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
    except RecursionError:
        raise UnsafeInput(f"malformed JSON body: nested deeper than {MAX_JSON_DEPTH} levels"
                          ) from None
    except json.JSONDecodeError as exc:
        raise UnsafeInput(f"malformed JSON body: {exc}") from None
    except UnsafeInput as exc:
        raise UnsafeInput(f"malformed JSON body: {exc.reason}") from None


def _pydantic_error(exc: UnsafeInput) -> PydanticCustomError:
    return PydanticCustomError("unsafe_input", "{reason}", {"reason": str(exc)})


def _validate_json(value: Any) -> Any:
    try:
        return check_json(value)
    except UnsafeInput as exc:
        raise _pydantic_error(exc) from None


def _validate_text(value: str) -> str:
    try:
        return check_text(value)
    except UnsafeInput as exc:
        raise _pydantic_error(exc) from None


JsonValue = Annotated[Any, AfterValidator(_validate_json)]
"""Any JSON value that passes :func:`check_json` (documented as any value: CRDs)."""

SafeText = Annotated[str, AfterValidator(_validate_text)]
"""A string without NUL characters or lone surrogates (CRDs)."""

# What the OpenAPI document says of the same values, so that a client (or a fuzzer)
# can tell valid from invalid by the schema alone.
NO_NUL_PATTERN = "^[^\\u0000]*$"
JSON_VALUE_REF = "#/components/schemas/JsonValue"

# Pydantic resolves every $ref of a model's schema among its own definitions, so the
# field carries a marker that the OpenAPI builder replaces with the reference.
JSON_VALUE_MARKER = "x-waypost-json-value"
ApiJson = Annotated[Any, AfterValidator(_validate_json),
                    WithJsonSchema({JSON_VALUE_MARKER: True})]
"""JsonValue in an API body, documented by :func:`json_value_schema`."""

ApiText = Annotated[str, AfterValidator(_validate_text),
                    Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]
"""SafeText in an API body, documented with a pattern that excludes NUL."""


def json_value_schema() -> dict[str, Any]:
    """The JSON Schema of an accepted JSON value (the depth limit is not expressible)."""
    text = {"type": "string", "pattern": NO_NUL_PATTERN}
    number = {"minimum": MIN_INTEGER, "maximum": MAX_INTEGER}
    return {
        "description": f"Any JSON value: strings without NUL characters, numbers between "
                       f"-2^63 and 2^63-1, nested at most {MAX_JSON_DEPTH} levels deep.",
        "anyOf": [
            {"type": "null"}, {"type": "boolean"},
            {"type": "integer", **number}, {"type": "number", **number}, text,
            {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
            {"type": "object", "propertyNames": text,
             "additionalProperties": {"$ref": JSON_VALUE_REF}},
        ],
    }
