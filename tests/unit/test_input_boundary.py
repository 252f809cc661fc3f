"""Property-based tests (Hypothesis) of the input boundary, with hostile strings and
deep JSON: whatever comes in is either refused with UnsafeInput / a validation error
naming the field, or it is JSON that Postgres stores and every client reads back."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from waypost.coordinator import openapi, render
from waypost.model import inputs
from waypost.model.enums import RunStatus
from waypost.model.run import Run, TriggerRequest
from waypost.sdk import protocol

PROFILE = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])

# Strings as an attacker sends them: NUL, lone surrogates, controls, astral planes.
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, categories=None),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028", "\ufeff", "\U0010ffff"]),
    ),
    max_size=20,
)
numbers = st.one_of(
    st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
)
json_like = st.recursive(
    st.one_of(numbers, hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=30,
)


def nest(value: Any, depth: int, kind: str) -> Any:
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def depth_of(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def storable(value: Any) -> None:
    """What Postgres jsonb and every JSON client need: strict JSON, valid UTF-8, no NUL,
    within the depth and number limits; and the API renders it."""
    text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogates
    assert "\x00" not in text and "\\u0000" not in json.dumps(value)
    assert depth_of(value) <= inputs.MAX_JSON_DEPTH
    assert json.loads(text) == value or value != value  # round-trips


@PROFILE
@given(json_like)
def test_check_json_accepts_only_storable_values(value: Any) -> None:
    try:
        checked = inputs.check_json(value)
    except inputs.UnsafeInput as exc:
        assert exc.reason  # says why, and where when it is inside the value
        return
    assert checked is value
    storable(value)


@PROFILE
@given(json_like, st.integers(min_value=0, max_value=3000), st.sampled_from(["list", "dict"]))
def test_depth_is_refused_past_the_limit_and_never_crashes(
    leaf: Any, depth: int, kind: str
) -> None:
    try:
        inputs.check_json(leaf)
    except inputs.UnsafeInput:
        assume(False)  # refused for its own content; depth is what is tested here
    value = nest(leaf, depth, kind)
    try:
        inputs.check_json(value)
    except inputs.UnsafeInput as exc:
        assert depth_of(value) > inputs.MAX_JSON_DEPTH
        assert exc.reason == f"is nested deeper than {inputs.MAX_JSON_DEPTH} levels"
        return
    assert depth_of(value) <= inputs.MAX_JSON_DEPTH


@PROFILE
@given(st.binary(max_size=200) | st.builds(
    lambda d, leaf: b"[" * d + leaf + b"]" * d,
    st.integers(min_value=0, max_value=50_000), st.sampled_from([b"1", b"\"\\u0000\"", b"9" * 5000,
                                                                 b"NaN", b"\"\\ud800\""])))
def test_parse_json_raises_nothing_but_unsafe_input(raw: bytes) -> None:
    try:
        value = inputs.parse_json(raw)
    except inputs.UnsafeInput as exc:
        assert str(exc).startswith("malformed JSON body")
        return
    try:
        inputs.check_json(value)
    except inputs.UnsafeInput:
        return
    storable(value)


bodies = st.fixed_dictionaries({}, optional={
    "payload": json_like, "priority": numbers | hostile_text,
    "idempotencyKey": hostile_text | numbers, "concurrencyKey": hostile_text,
    "idempotencyConflict": st.sampled_from(["error", "returnExisting", "other", 1]),
}) | st.dictionaries(hostile_text, json_like, max_size=3) | json_like


@PROFILE
@given(bodies)
def test_trigger_bodies_are_refused_naming_a_field_or_are_storable(body: Any) -> None:
    try:
        request = TriggerRequest.model_validate(body)
    except ValidationError as exc:
        for err in exc.errors():
            assert err["msg"]
        return
    storable(request.payload)
    for key in (request.idempotency_key, request.concurrency_key):
        assert key is None or (1 <= len(key) <= 256 and inputs.text_problem(key) is None)
    assert request.priority is None or (
        type(request.priority) is int and -1000 <= request.priority <= 1000)


@PROFILE
@given(hostile_text, json_like, hostile_text, json_like)
def test_runner_bodies_are_refused_or_storable(key: str, data: Any, message: str,
                                               fields: Any) -> None:
    for kind, body in (
        (protocol.CheckpointBody, {"key": key, "data": data}),
        (protocol.CompleteBody, {"result": data}),
        (protocol.FailBody, {"error": {"message": message, "type": "error"}}),
        (protocol.LogsBody, {"entries": [{"ts": "2026-01-01T00:00:00+00:00",
                                          "message": message, "fields": fields}]}),
    ):
        # What the coordinator's runner routes do: the JSON checks, then the protocol.
        try:
            inputs.check_fields(body)
            openapi.adapter(kind).validate_python(body)
        except inputs.UnsafeInput as exc:
            assert exc.where.split(".")[0].split("[")[0] in body
            continue
        except ValidationError:
            continue
        storable(body)


@PROFILE
@given(json_like, json_like)
def test_any_stored_value_renders(payload: Any, result: Any) -> None:
    """Output never fails on stored data: what Postgres could hold always renders."""
    for value in (payload, result):
        try:
            inputs.check_json(value)
        except inputs.UnsafeInput:
            assume(False)
    run = Run(id="00000000-0000-0000-0000-000000000001", namespace="n", task="t", queue="q",
              status=RunStatus.SUCCEEDED, priority=0, attempt=1, max_attempts=1,
              payload=nest(payload, 200, "list"), result=result, memory_bytes=1,
              trace_id="0" * 32, source="api", created_at=dt.datetime.now(dt.UTC))
    response = render.run_response(run)
    assert response.text is not None
    shown = json.loads(response.text)
    assert shown["result"] == result and shown["warnings"] is None


def test_a_value_python_cannot_decode_renders_as_a_placeholder() -> None:
    from waypost.store.pool import _decode_json

    unreadable = _decode_json("[" * 100_000 + "]" * 100_000)
    run = Run(id="00000000-0000-0000-0000-000000000002", namespace="n", task="t", queue="q",
              status=RunStatus.QUEUED, priority=0, attempt=0, max_attempts=1,
              payload=unreadable, memory_bytes=1, trace_id="0" * 32, source="api",
              created_at=dt.datetime.now(dt.UTC))
    shown = json.loads(render.run_response(run).text or "")
    assert shown["payload"] == render.PLACEHOLDER
    assert shown["warnings"] == [
        "payload cannot be shown as JSON (nested too deeply); shown as a placeholder"]


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "\ud800", "x\udfffy"])
def test_text_problems_are_named(text: str) -> None:
    with pytest.raises(inputs.UnsafeInput) as caught:
        inputs.check_text(text)
    assert "NUL" in str(caught.value) or "surrogate" in str(caught.value)
