"""Bad input over HTTP: a clear JSON error with the right status, and nothing half-written.

Every request goes through aiohttp to a running ``Standalone`` (engine and
coordinator, no dispatcher, so attempts are claimed by the test). The outage
test runs its own ``EmbeddedPostgres`` so that it can stop and restart it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.factories import register_task, settings
from waypost.engine.credentials import CredentialSigner
from waypost.standalone import Standalone
from waypost.store import runs
from waypost.store.embedded import EmbeddedPostgres

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
    assert status == 400 and "'limit'" in error_of(body)[1]
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
    assert status == 400 and 'result: Field required' in error_of(body)[1]
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
        status, body = await call("GET", f"{stack.url}/readyz")
        assert status == 503 and error_of(body)[0] == "store_unavailable"

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
