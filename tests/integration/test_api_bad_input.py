"""Bad input over HTTP: a clear JSON error with the right status, and nothing half-written.

Every request goes through aiohttp to a running ``Standalone`` (engine and
coordinator, no dispatcher, so attempts are claimed by the test). The outage
test runs its own ``EmbeddedPostgres`` so that it can stop and restart it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.factories import register_task, settings
from waypost.engine import control
from waypost.engine.credentials import CredentialSigner
from waypost.standalone import Standalone
from waypost.store import runs
from waypost.store.embedded import EmbeddedPostgres
from waypost.store.pool import RawJson

PAYLOAD_LIMIT = 1024
CHECKPOINT_LIMIT = 512


@pytest.fixture
async def stack(database_url: str, db: asyncpg.Pool) -> AsyncIterator[Standalone]:
    await register_task(db, "hello")
    app = await Standalone(
        settings(database_url, limits={"payload_bytes": PAYLOAD_LIMIT,
                                       "checkpoint_bytes": CHECKPOINT_LIMIT}),
        dispatch=False,
    ).start()
    try:
        yield app
    finally:
        await app.stop()


async def call(
    method: str, url: str, *, json: Any = None, data: bytes | None = None,
    token: str | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as http, http.request(
        method, url, json=json, data=data, headers=headers
    ) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


def error_of(body: Any) -> tuple[str, str]:
    return body["error"]["code"], body["error"]["message"]


async def count(db: asyncpg.Pool, table: str) -> int:
    n: int = await db.fetchval(f"SELECT count(*) FROM {table}")
    return n


async def test_trigger_rejects_bad_input_and_writes_nothing(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    base = f"{stack.url}/v1/tasks/default"

    status, body = await call("POST", f"{base}/no-such-task/trigger", json={"payload": 1})
    assert status == 404
    assert error_of(body) == ("unknown_task", "no task 'no-such-task' in namespace 'default'")

    big = {"payload": {"blob": "x" * 2000}}
    status, body = await call("POST", f"{base}/hello/trigger", json=big)
    assert status == 413
    code, message = error_of(body)
    assert code == "too_large"
    assert message == f"payload is 2011 bytes, over the limit of {PAYLOAD_LIMIT} bytes"

    # Far past any limit: refused before the body is even parsed.
    huge = b'{"payload": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    status, body = await call("POST", f"{base}/hello/trigger", data=huge)
    assert status == 413 and error_of(body)[0] == "too_large"

    status, body = await call("POST", f"{base}/hello/trigger", data=b'{"payload": {"a": 1')
    assert status == 400
    code, message = error_of(body)
    assert code == "invalid_value" and message.startswith("malformed JSON body")

    status, body = await call("POST", f"{base}/hello/trigger", json={"priority": 5000})
    assert status == 400
    code, message = error_of(body)
    assert code == "invalid_body" and message.startswith("priority:")
    assert "1000" in message

    status, body = await call("POST", f"{base}/hello/trigger", json={"priorty": 1})
    assert status == 400 and "priorty" in error_of(body)[1]

    status, body = await call("POST", f"{base}/hello/trigger", json=["not", "an", "object"])
    assert status == 400 and error_of(body)[0] == "invalid_body"

    assert await count(db, "runs") == 0
    assert await count(db, "run_queue") == 0

    status, body = await call("GET", f"{stack.url}/v1/runs/not-a-uuid")
    assert status == 400 and "not a run id" in error_of(body)[1]
    status, body = await call("GET", f"{stack.url}/v1/runs/{uuid.uuid4()}")
    assert status == 404 and error_of(body)[0] == "run_not_found"
    status, body = await call("GET", f"{stack.url}/v1/runs?status=bogus")
    assert status == 400 and "bogus" in error_of(body)[1]
    status, body = await call("GET", f"{stack.url}/v1/runs?limit=many")
    assert status == 400 and error_of(body)[1].startswith("query parameter limit:")
    status, body = await call("GET", f"{stack.url}/v1/no-such-route")
    assert status == 404 and error_of(body)[0] == "not_found"

    status, body = await call("POST", f"{base}/hello/trigger", json={"payload": {"ok": 1}})
    assert status == 201 and body["payload"] == {"ok": 1}


async def test_runner_credentials_and_checkpoint_limit(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    status, body = await call("POST", f"{stack.url}/v1/tasks/default/hello/trigger", json={})
    assert status == 201
    [claimed] = await runs.claim(db, limit=1, lease_seconds=30, worker="test")
    good = stack.engine.signer.issue(claimed.run_id, claimed.claim_token)
    url = f"{stack.url}/v1/runner"

    status, body = await call("GET", f"{url}/attempt")
    assert status == 401
    assert error_of(body) == (
        "unauthorized", "missing attempt credential (Authorization: Bearer <token>)")
    status, body = await call("GET", f"{url}/attempt", token="garbage")
    assert status == 401 and error_of(body)[1] == "malformed attempt credential"
    forged = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    other_key = CredentialSigner(b"another key").issue(claimed.run_id, claimed.claim_token)
    for bad in (forged, other_key):
        for method, path, payload in (("GET", "attempt", None),
                                      ("POST", "checkpoints", {"key": "k", "data": 1}),
                                      ("POST", "heartbeat", None),
                                      ("POST", "complete", {"result": 1})):
            status, body = await call(method, f"{url}/{path}", json=payload, token=bad)
            assert status == 401, (path, body)
            assert error_of(body)[1] == "attempt credential signature does not match"

    too_big = {"key": "state", "data": {"blob": "y" * 600}}
    status, body = await call("POST", f"{url}/checkpoints", json=too_big, token=good)
    assert status == 413
    assert error_of(body) == (
        "too_large",
        f"checkpoint 'state' is 611 bytes, over the limit of {CHECKPOINT_LIMIT} bytes")
    status, body = await call("POST", f"{url}/checkpoints", data=b"{oops", token=good)
    assert status == 400 and error_of(body)[1].startswith("malformed JSON body")
    status, body = await call("POST", f"{url}/complete", json={"value": 1}, token=good)
    assert status == 400 and error_of(body)[1].startswith("result: Field required")
    assert await count(db, "checkpoints") == 0

    # The run is untouched by all of that: still running its first attempt.
    status, body = await call("GET", f"{url}/attempt", token=good)
    assert status == 200 and body["attempt"] == 1 and body["checkpoints"] == []
    status, _ = await call("POST", f"{url}/checkpoints", json={"key": "state", "data": 1},
                           token=good)
    assert status == 201
    assert await count(db, "checkpoints") == 1


async def test_api_token_is_required_when_configured(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db, "hello")
    stack = await Standalone(settings(database_url, api_token="s3cret"), dispatch=False).start()
    try:
        trigger = f"{stack.url}/v1/tasks/default/hello/trigger"
        for path in ("/v1/runs", "/v1/dead-letters"):
            status, body = await call("GET", f"{stack.url}{path}")
            assert status == 401 and error_of(body)[1].startswith("missing API token")
        status, body = await call("POST", trigger, json={})
        assert status == 401 and error_of(body) == (
            "unauthorized", "missing API token (Authorization: Bearer <token>)")
        status, body = await call("POST", trigger, json={}, token="wrong")
        assert status == 401 and error_of(body) == ("unauthorized", "the API token is not valid")
        assert await count(db, "runs") == 0
        status, body = await call("POST", trigger, json={}, token="s3cret")
        assert status == 201
        status, body = await call("GET", f"{stack.url}/v1/runs/{body['id']}", token="s3cret")
        assert status == 200
        # Operations endpoints stay open for probes.
        status, _ = await call("GET", f"{stack.url}/healthz")
        assert status == 200
    finally:
        await stack.stop()


async def test_database_down_when_triggering_is_503_then_recovers(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False).start()
    stack: Standalone | None = None
    try:
        stack = await Standalone(settings(pg.dsn), dispatch=False).start()
        await register_task(stack.engine.pool, "hello")
        trigger = f"{stack.url}/v1/tasks/default/hello/trigger"
        status, before = await call("POST", trigger, json={"payload": {"n": 1}})
        assert status == 201

        pg.stop()
        status, body = await call("POST", trigger, json={"payload": {"n": 2}})
        assert status == 503, body
        code, message = error_of(body)
        assert code == "store_unavailable"
        assert message.startswith("the database is unavailable, nothing was changed")
        # The outage's exception names the host and port: logged, never answered.
        assert str(pg.port) not in message and "127.0.0.1" not in message
        status, body = await call("GET", f"{stack.url}/readyz")
        assert status == 503 and error_of(body)[0] == "store_unavailable"
        assert str(pg.port) not in error_of(body)[1]

        pg.start()
        status, after = await call("POST", trigger, json={"payload": {"n": 3}})
        assert status == 201, after
        status, again = await call("GET", f"{stack.url}/v1/runs/{before['id']}")
        assert status == 200
        assert again["payload"] == {"n": 1} and again["status"] == "queued"
        rows = await stack.engine.pool.fetch("SELECT payload FROM runs ORDER BY seq")
        assert [r["payload"] for r in rows] == [{"n": 1}, {"n": 3}]
        assert await stack.engine.pool.fetchval("SELECT count(*) FROM run_queue") == 2
    finally:
        if stack is not None:
            await stack.stop()
        pg.destroy()


# --- hostile input (issue 16): each of these answered 500 before, and some stored a run ----

async def raw_call(method: str, url: str, *, body: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """A request sent as given (no client-side encoding); every answer must be JSON."""
    async with aiohttp.ClientSession(auto_decompress=False) as http, http.request(
        method, url, data=body, headers=headers or {}
    ) as resp:
        assert resp.content_type == "application/json", (resp.status, await resp.text())
        return resp.status, await resp.json(), resp.headers


def nested(depth: int) -> bytes:
    return b'{"payload": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("name", "body", "field", "reason"), [
    ("NUL in the payload", b'{"payload": {"a": ["x\\u0000y"]}}', "payload",
     "NUL character"),
    ("NUL in the idempotency key", b'{"idempotencyKey": "k\\u0000"}', "idempotencyKey",
     "NUL character"),
    ("NUL in the concurrency key", b'{"concurrencyKey": "\\u0000"}', "concurrencyKey",
     "NUL character"),
    ("NUL in an object key", b'{"payload": {"a\\u0000": 1}}', "payload", "NUL character"),
    ("a lone surrogate", b'{"payload": "\\ud800"}', "payload", "lone surrogate"),
    ("a lone surrogate in a key", b'{"idempotencyKey": "\\udfff"}', "idempotencyKey",
     "lone surrogate"),
    ("an integer of 5,000 digits", b'{"payload": ' + b"9" * 5000 + b"}", "payload",
     "5000 digits"),
    ("an integer past 2^63", b'{"payload": {"n": 9223372036854775808}}', "payload",
     "outside the allowed range"),
    ("a payload nested 300 deep", nested(300), "payload", "deeper than 64 levels"),
    ("a payload nested 100,000 deep", nested(100_000), "body", "deeper than 64 levels"),
    ("priority true", b'{"priority": true}', "priority", "valid integer"),
    ("priority as text", b'{"priority": "5"}', "priority", "valid integer"),
    ("NaN", b'{"payload": NaN}', "body", "NaN"),
    ("a body that is null", b"null", "body", "must be a JSON object, not null"),
    ("a body that is an array", b"[]", "body", "must be a JSON object, not an array"),
    ("invalid UTF-8", b'{"payload": "\xff"}', "body", "not UTF-8"),
])
async def test_hostile_trigger_bodies_are_400_naming_the_field_and_store_nothing(
    stack: Standalone, db: asyncpg.Pool, name: str, body: bytes, field: str, reason: str
) -> None:
    url = f"{stack.url}/v1/tasks/default/hello/trigger"
    status, answer, _ = await raw_call("POST", url, body=body, headers=JSON)
    assert status == 400, (name, answer)
    code, message = error_of(answer)
    assert code in ("invalid_body", "invalid_value"), (name, answer)
    if field == "body":
        assert message.startswith(("malformed JSON body", "body: ")), (name, message)
    else:
        assert message.startswith(f"{field}:"), (name, message)
    assert reason in message, (name, message)
    assert await count(db, "runs") == 0
    assert await count(db, "run_queue") == 0


async def test_hostile_paths_filters_cursors_and_framing(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    base = stack.url
    status, body, _ = await raw_call("POST", f"{base}/v1/tasks/de%00fault/hello/trigger",
                                     body=b"{}", headers=JSON)
    assert status == 400 and error_of(body) == (
        "invalid_path", "path parameter namespace: contains a NUL character (U+0000), which is "
        "not allowed")
    status, body, _ = await raw_call("POST", f"{base}/v1/tasks/default/{'t' * 300}/trigger",
                                     body=b"{}", headers=JSON)
    assert status == 400 and "path parameter task: is 300 characters long" in error_of(body)[1]
    for path in ("/v1/runs", "/v1/dead-letters", "/v1/schedules"):
        status, body, _ = await raw_call("GET", f"{base}{path}?namespace=a%00b")
        assert status == 400, (path, body)
        assert error_of(body)[1].startswith("query parameter namespace: contains a NUL"), body
    for path in ("/v1/runs", "/v1/dead-letters"):
        status, body, _ = await raw_call("GET", f"{base}{path}?cursor=99999999999999999999999")
        assert status == 400 and error_of(body)[1].startswith("query parameter cursor:"), body
        status, body, _ = await raw_call("GET", f"{base}{path}?cursor=-1")
        assert status == 400 and error_of(body)[1].startswith("query parameter cursor:"), body
        status, body, _ = await raw_call("GET", f"{base}{path}?limit=0")
        assert status == 400 and error_of(body)[1].startswith("query parameter limit:"), body
        status, body, _ = await raw_call("GET", f"{base}{path}?limit=5&cursor=12")
        assert status == 200 and body["runs"] == [], body

    trigger = f"{base}/v1/tasks/default/hello/trigger"
    # A plain body labelled gzip: refused before reading, not a decoder failure.
    status, body, _ = await raw_call("POST", trigger, body=b'{"payload": 1}',
                                     headers={**JSON, "Content-Encoding": "gzip"})
    assert status == 415 and error_of(body)[0] == "unsupported_encoding", body
    status, body, _ = await raw_call("POST", trigger, body=b'{"payload": 1}',
                                     headers={"Content-Type": "text/plain"})
    assert status == 415 and error_of(body)[0] == "unsupported_media_type", body

    # Bodies over the cap get the documented limit, whatever their size.
    limits = stack.engine.settings.limits
    largest = max(limits.payload_bytes, limits.checkpoint_bytes, limits.result_bytes)
    cap = 2 * largest + 65536
    for size in (cap + 1, 3 * 1024 * 1024):
        status, body, _ = await raw_call("POST", trigger, body=b"x" * size, headers=JSON)
        assert status == 413, body
        assert error_of(body) == ("too_large", (
            f"the request body is {size} bytes, over the limit of {cap} bytes for a request "
            f"body (twice the largest document limit, {largest} bytes, plus "
            "64 KiB)"))

    # URLs: over 8 KiB is 414 in JSON, whether routed or refused by the HTTP parser.
    for length in (9000, 20000):
        status, body, _ = await raw_call("GET", f"{base}/v1/runs?task={'a' * length}")
        assert status == 414 and error_of(body) == (
            "uri_too_long", "the URL is over the limit of 8192 bytes"), body
    status, body, _ = await raw_call("GET", f"{base}/v1/runs", headers={"X-Big": "a" * 9000})
    assert status == 431 and error_of(body)[0] == "header_too_large", body

    status, body, headers = await raw_call("DELETE", f"{base}/v1/runs")
    assert status == 405 and error_of(body)[0] == "method_not_allowed"
    assert headers["Allow"] == "GET"
    assert "allowed: GET" in error_of(body)[1]
    status, body, headers = await raw_call("GET", trigger)
    assert status == 405 and headers["Allow"] == "POST"
    # A literal path wins over a template, as in the API document: GET /v1/runs/bulk
    # is not the run "bulk", and OPTIONS is allowed by neither.
    for method in ("GET", "OPTIONS"):
        status, body, headers = await raw_call(method, f"{base}/v1/runs/bulk")
        assert status == 405 and headers["Allow"] == "POST", (method, body)
    # Booleans and whole numbers of a body are what its schema says.
    for bad in ({"cursor": False}, {"batchSize": True}, {"dryRun": 1},
                {"filter": {"deadLettered": "yes"}}):
        status, body, _ = await raw_call("POST", f"{base}/v1/runs/bulk", headers=JSON,
                                         body=json.dumps({"action": "cancel", **bad}).encode())
        assert status == 400 and next(iter(bad)) in error_of(body)[1], (bad, body)
    status, body, _ = await raw_call(
        "GET", f"{base}/v1/runs/{uuid.uuid4()}/logs?attempt=9223372036854775807")
    assert status == 400 and error_of(body)[1].startswith("query parameter attempt:"), body

    assert await count(db, "runs") == 0


async def test_hostile_runner_bodies_are_refused(stack: Standalone, db: asyncpg.Pool) -> None:
    status, _ = await call("POST", f"{stack.url}/v1/tasks/default/hello/trigger", json={})
    assert status == 201
    [claimed] = await runs.claim(db, limit=1, lease_seconds=30, worker="test")
    auth = {**JSON, "Authorization":
            f"Bearer {stack.engine.signer.issue(claimed.run_id, claimed.claim_token)}"}
    url = f"{stack.url}/v1/runner"
    for path, body, starts in (
        ("checkpoints", b'{"key": "a\\u0000", "data": 1}', "key: contains a NUL"),
        ("checkpoints", b'{"key": "k", "data": "\\ud800"}', "data: contains a lone surrogate"),
        ("checkpoints", b'{"key": "k", "data": ' + b"[" * 65 + b"]" * 65 + b"}",
         "data: is nested deeper than 64 levels"),
        ("complete", b'{"result": {"x": "\\u0000"}}', "result.x: contains a NUL"),
        ("complete", b'{"value": 1}', "result: Field required"),
        ("logs", b'{"entries": [{"ts": "2026-01-01T00:00:00Z", "message": "\\u0000"}]}',
         "entries[0].message: contains a NUL"),
        ("logs", b'{"entries": [{"ts": "2026-01-01T00:00:00Z", "message": "m", "fields": '
                 b'{"a": ' + b"[" * 70 + b"]" * 70 + b'}}]}',
         "entries[0].fields.a: is nested deeper than 64 levels"),
        ("fail", b'{"error": {"message": "\\udc00"}}', "error.message: contains a lone"),
    ):
        status, answer, _ = await raw_call("POST", f"{url}/{path}", body=body, headers=auth)
        assert status == 400, (path, body, answer)
        field, reason = starts.split(": ", 1)
        message = error_of(answer)[1]
        assert message.startswith(field) and reason in message, (path, answer)
    assert await count(db, "checkpoints") == 0
    assert await count(db, "run_logs") == 0
    status, answer, _ = await raw_call("GET", f"{url}/attempt", headers=auth)
    assert status == 200 and answer["attempt"] == 1


async def test_stored_runs_are_always_listed_and_shown(stack: Standalone,
                                                       db: asyncpg.Pool) -> None:
    """A run stored with a payload nested 300 deep (as main stored them) and one that
    Python cannot even decode: listing and showing still work, with a placeholder and
    a warning for what cannot be shown."""
    deep = json.dumps(json.loads("[" * 300 + "1" + "]" * 300))
    deeper = "[" * 5000 + "]" * 5000
    ids = []
    for text in (deep, deeper):
        run = await runs.enqueue(
            db, namespace="default", task="hello", run_id=uuid.uuid4(), payload=RawJson(text),
            priority=None, idempotency_key=None, concurrency_key=None, trace_id="0" * 32,
            source="api")
        assert run is not None
        ids.append(run.id)
    status, body = await call("GET", f"{stack.url}/v1/runs")
    assert status == 200, body
    shown = {r["id"]: r for r in body["runs"]}
    assert json.dumps(shown[ids[0]]["payload"], separators=(",", ":")) == deep
    assert shown[ids[0]]["warnings"] is None
    assert shown[ids[1]]["payload"] == {
        "waypostPlaceholder": "this stored value cannot be shown as JSON; see warnings"}
    assert shown[ids[1]]["warnings"] == [
        "payload cannot be shown as JSON (nested too deeply); shown as a placeholder"]
    for run_id in ids:
        status, body = await call("GET", f"{stack.url}/v1/runs/{run_id}")
        assert status == 200 and body["id"] == run_id


async def test_an_unexpected_exception_is_a_json_500_with_a_logged_id(
    stack: Standalone, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug with a secret inside")

    monkeypatch.setattr(control, "list_runs", broken)
    with caplog.at_level("ERROR", logger="waypost.coordinator"):
        status, body = await call("GET", f"{stack.url}/v1/runs")
    assert status == 500
    code, message = error_of(body)
    assert code == "internal_error" and "secret" not in message
    error_id = message.split("error id ")[1].split(",")[0]
    [record] = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert record.exc_info is not None and "a bug with a secret" in str(record.exc_info[1])
