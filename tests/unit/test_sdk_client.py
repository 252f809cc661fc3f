"""WaypostClient against a fake user API served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from waypost.sdk.client import RunHandle, WaypostClient
from waypost.sdk.decorator import Task, TaskDefinition
from waypost.sdk.errors import CoordinatorUnavailable, WaypostAPIError


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@dataclass
class FakeUserAPI:
    token: str | None = None
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    # Statuses a run goes through, streamed as events.
    progress: list[str] = field(default_factory=list)
    last_event_ids: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/v1/tasks/{namespace}/{task}/trigger", self._trigger)
        app.router.add_get("/v1/runs/{id}", self._get)
        app.router.add_get("/v1/runs", self._list)
        app.router.add_post("/v1/runs/{id}/cancel", self._action("cancelled"))
        app.router.add_post("/v1/runs/{id}/bump", self._action(None))
        app.router.add_post("/v1/runs/{id}/requeue", self._action("queued"))
        app.router.add_get("/v1/dead-letters", self._dead_letters)
        app.router.add_get("/v1/runs/{id}/events", self._events)
        app.router.add_get("/v1/runs/{id}/logs", self._logs)
        return app

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """SSE: a status event per entry of ``progress`` (an attempt_started after each
        'running'); the connection drops after the third event, once."""
        run = self.runs[request.match_info["id"]]
        self.last_event_ids.append(request.headers.get("Last-Event-ID"))
        events = []
        for status in self.progress:
            events.append(("status", {"status": status}))
            if status == "running":
                events.append(("attempt_started", {}))
        skip = int(request.headers.get("Last-Event-ID", "0-0").split("-")[1])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n, (kind, data) in enumerate(events, start=1):
            if n <= skip:
                continue
            if kind == "status":
                run["status"] = data["status"]
            body = {"id": f"0-{n}", "kind": kind, "data": data}
            await response.write(
                f"id: 0-{n}\nevent: {kind}\ndata: {json.dumps(body)}\n\n".encode())
            if n == 3 and len(self.last_event_ids) == 1:
                return response  # a dropped connection
        while True:
            await response.write(b": heartbeat\n\n")
            await asyncio.sleep(0.1)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("follow") != "1":
            return web.json_response({"entries": [{"message": "hi"}], "nextCursor": "9-9"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n, message in enumerate(("hi", "bye")):
            await response.write(
                f'id: 1-{n}\nevent: log\ndata: {{"message": "{message}"}}\n\n'.encode())
        await response.write(b'event: end\ndata: {"status": "succeeded"}\n\n')
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "missing or bad API token")
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path_qs, body))
        response: web.StreamResponse = await handler(request)
        return response

    async def _trigger(self, request: web.Request) -> web.Response:
        task = request.match_info["task"]
        if task != "process-order":
            return _error(404, "unknown_task", f"no task {task!r} in namespace")
        body = await request.json()
        key = body.get("idempotencyKey")
        if key and key in self.by_key:
            return web.json_response(self.runs[self.by_key[key]], status=200)
        run_id = f"run-{len(self.runs) + 1}"
        self.runs[run_id] = {
            "id": run_id,
            "namespace": request.match_info["namespace"],
            "task": task,
            "status": "queued",
            "attempt": 0,
            "priority": body.get("priority", 0),
            "payload": body["payload"],
        }
        if key:
            self.by_key[key] = run_id
        return web.json_response(self.runs[run_id], status=201)

    async def _get(self, request: web.Request) -> web.Response:
        run = self.runs.get(request.match_info["id"])
        if run is None:
            return _error(404, "unknown_run", "no such run")
        return web.json_response({**run, "attempts": [], "checkpoints": []})

    async def _list(self, request: web.Request) -> web.Response:
        raw = request.query.get("status")
        wanted = raw.split(",") if raw else None
        runs = [r for r in self.runs.values() if wanted is None or r["status"] in wanted]
        start = int(request.query.get("cursor", "0"))
        limit = int(request.query.get("limit", "50"))
        page = runs[start : start + limit]
        more = start + limit < len(runs)
        return web.json_response({"runs": page, "nextCursor": start + limit if more else None})

    async def _dead_letters(self, request: web.Request) -> web.Response:
        runs = [r for r in self.runs.values() if r["status"] == "dead_lettered"]
        return web.json_response({"runs": runs})

    def _action(self, status: str | None) -> Any:
        async def handler(request: web.Request) -> web.Response:
            run = self.runs.get(request.match_info["id"])
            if run is None:
                return _error(404, "unknown_run", "no such run")
            if status is not None:
                run["status"] = status
            return web.json_response(run)

        return handler


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeUserAPI, str]]:
    fake = FakeUserAPI()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_trigger_and_idempotency(api: tuple[FakeUserAPI, str]) -> None:
    fake, url = api
    async with WaypostClient(url) as client:
        first = await client.trigger(
            "process-order",
            {"orderId": "o-1"},
            priority=5,
            idempotency_key="order-o-1",
            concurrency_key="tenant-a",
        )
        again = await client.trigger(
            "process-order", {"orderId": "o-1"}, idempotency_key="order-o-1"
        )
    assert isinstance(first, RunHandle)
    assert first.created is True and again.created is False
    assert first.id == again.id == "run-1"
    assert first.status == "queued"
    method, path, body = fake.requests[0]
    assert (method, path) == ("POST", "/v1/tasks/default/process-order/trigger")
    assert body == {
        "payload": {"orderId": "o-1"},
        "priority": 5,
        "idempotencyKey": "order-o-1",
        "concurrencyKey": "tenant-a",
    }
    # Optional fields are left out rather than sent as null.
    assert fake.requests[1][2] == {"payload": {"orderId": "o-1"}, "idempotencyKey": "order-o-1"}


async def test_trigger_accepts_a_task_object(api: tuple[FakeUserAPI, str]) -> None:
    _fake, url = api

    def fn(ctx: Any, payload: Any) -> None:
        return None

    definition = TaskDefinition(id="process-order", entrypoint="m:fn")
    async with WaypostClient(url) as client:
        handle = await client.trigger(Task(fn, definition), {"orderId": "o-2"}, namespace="shop")
    assert handle.run["namespace"] == "shop"


async def test_api_errors_carry_status_code_and_message(api: tuple[FakeUserAPI, str]) -> None:
    _, url = api
    async with WaypostClient(url) as client:
        with pytest.raises(WaypostAPIError) as error:
            await client.trigger("no-such-task", {})
        assert error.value.status == 404
        assert error.value.code == "unknown_task"
        assert "no task 'no-such-task'" in error.value.message
        with pytest.raises(WaypostAPIError, match="unknown_run"):
            await client.get_run("missing")


async def test_token_is_sent(api: tuple[FakeUserAPI, str]) -> None:
    fake, url = api
    fake.token = "secret-token"
    async with WaypostClient(url) as client:
        with pytest.raises(WaypostAPIError) as error:
            await client.list_runs()
        assert error.value.status == 401
    async with WaypostClient(url, token="secret-token") as client:
        assert await client.list_runs() == []


async def test_queries_and_actions(api: tuple[FakeUserAPI, str]) -> None:
    fake, url = api
    async with WaypostClient(url) as client:
        handle = await client.trigger("process-order", {"orderId": "o-1"})
        await client.trigger("process-order", {"orderId": "o-2"})
        fake.runs["run-2"]["status"] = "dead_lettered"
        assert [r["id"] for r in await client.list_runs(status="queued", limit=10)] == ["run-1"]
        assert [r["id"] for r in await client.list_dead_letters(namespace="default")] == ["run-2"]
        assert (await client.requeue("run-2"))["status"] == "queued"
        assert (await client.bump(handle.id))["id"] == handle.id
        assert (await client.cancel(handle.id))["status"] == "cancelled"
        run = await client.get_run(handle.id)
        assert run["attempts"] == [] and run["checkpoints"] == []
    paths = [path for _, path, _ in fake.requests]
    assert "/v1/runs?status=queued&limit=10" in paths
    assert "/v1/dead-letters?namespace=default" in paths


async def test_wait_follows_the_event_stream_until_terminal(
    api: tuple[FakeUserAPI, str]
) -> None:
    fake, url = api
    seen: list[tuple[str, str | None]] = []
    async with WaypostClient(url) as client:
        handle = await client.trigger("process-order", {})
        fake.progress = ["running", "retrying", "running", "succeeded"]
        run = await client.wait(
            handle.id, timeout=30,
            on_event=lambda e: seen.append((e["kind"], e["data"].get("status"))),
        )
    assert run["status"] == "succeeded"
    assert seen == [("status", "running"), ("attempt_started", None), ("status", "retrying"),
                    ("status", "running"), ("attempt_started", None), ("status", "succeeded")]
    # The stream dropped after its third event; the client came back after it.
    assert fake.last_event_ids == [None, "0-3"]
    assert any(path.startswith(f"/v1/runs/{handle.id}/events?kinds=status")
               for _, path, _ in fake.requests)


async def test_wait_times_out_cleanly(api: tuple[FakeUserAPI, str]) -> None:
    fake, url = api
    async with WaypostClient(url) as client:
        handle = await client.trigger("process-order", {})
        fake.progress = ["running"]
        with pytest.raises(TimeoutError, match=r"within 0.5 s \(last status: running"):
            await client.wait(handle.id, timeout=0.5)


async def test_subscribe_and_logs(api: tuple[FakeUserAPI, str]) -> None:
    fake, url = api
    async with WaypostClient(url) as client:
        handle = await client.trigger("process-order", {})
        fake.progress = ["running", "succeeded"]
        kinds = []
        async for event in client.subscribe(handle.id, last_event_id="0-0",
                                            checkpoint_data=True):
            kinds.append(event["kind"])
            if len(kinds) == 3:
                break
        lines, cursor = await client.logs(handle.id, attempt=1, level="warning", limit=5)
        followed = [line async for line in client.follow_logs(handle.id)]
    assert kinds == ["status", "attempt_started", "status"]
    assert fake.last_event_ids[0] == "0-0"
    assert ("GET", f"/v1/runs/{handle.id}/events?checkpointData=1", None) in fake.requests
    assert lines == [{"message": "hi"}] and cursor == "9-9"
    assert ("GET", f"/v1/runs/{handle.id}/logs?attempt=1&level=warning&limit=5", None) in (
        fake.requests)
    assert followed == [{"message": "hi"}, {"message": "bye"}]


async def test_unreachable_coordinator(unused_tcp_port: int) -> None:
    async with WaypostClient(f"http://127.0.0.1:{unused_tcp_port}") as client:
        with pytest.raises(CoordinatorUnavailable):
            await client.get_run("run-1")


def test_from_env() -> None:
    client = WaypostClient.from_env({"WAYPOST_URL": "http://coord:8080/", "WAYPOST_API_TOKEN": "t"})
    assert client.base_url == "http://coord:8080"


async def test_paging_and_status_lists(api: tuple[FakeUserAPI, str]) -> None:
    fake, url = api
    async with WaypostClient(url) as client:
        for n in range(7):
            await client.trigger("process-order", {"n": n})
        fake.runs["run-3"]["status"] = "failed"
        fake.runs["run-5"]["status"] = "dead_lettered"
        page, cursor = await client.list_runs_page(limit=3)
        assert [r["id"] for r in page] == ["run-1", "run-2", "run-3"] and cursor == 3
        every = [r["id"] async for r in client.iter_runs(page_size=2)]
        assert every == [f"run-{n}" for n in range(1, 8)]
        bad = await client.list_runs(status=["failed", "dead_lettered"])
        assert [r["id"] for r in bad] == ["run-3", "run-5"]
    assert any("status=failed,dead_lettered" in path for _, path, _ in fake.requests)
