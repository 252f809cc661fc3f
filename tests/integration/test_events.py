"""The run event log over HTTP: SSE streams and log pages, with a real aiohttp client
against a real coordinator, real runner processes and real Postgres."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.factories import example_stack
from waypost.coordinator import appkeys
from waypost.sdk import sse
from waypost.sdk.client import WaypostClient
from waypost.standalone import Standalone

FINAL = {"succeeded", "failed", "dead_lettered", "cancelled"}


# Generous leases: on a loaded machine a runner can take seconds to start, and these
# tests are about the stream, not about lost attempts.
@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch,
                             max_parallel=4, events_heartbeat_seconds=0.5) as app:
        yield app


async def trigger(http: aiohttp.ClientSession, url: str, task: str, payload: Any) -> str:
    async with http.post(f"{url}/v1/tasks/default/{task}/trigger",
                         json={"payload": payload}) as resp:
        assert resp.status == 201, await resp.text()
        run_id: str = (await resp.json())["id"]
        return run_id


async def collect(
    http: aiohttp.ClientSession, url: str, *, headers: dict[str, str] | None = None,
    until_final: int = 1, timeout: float = 60,
) -> list[sse.Message]:
    """Events of a stream until ``until_final`` runs have reached a final status."""
    out: list[sse.Message] = []
    finals = 0
    async with asyncio.timeout(timeout), http.get(url, headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/event-stream"
        async for msg in sse.messages(resp):
            if msg is None:
                continue
            out.append(msg)
            if msg.event == "status" and msg.data["data"]["status"] in FINAL:
                finals += 1
                if finals >= until_final:
                    return out
    raise AssertionError(f"stream ended early after {len(out)} events")


def cursor(event_id: str | None) -> tuple[int, int]:
    assert event_id is not None
    tx, _, ident = event_id.partition("-")
    return int(tx), int(ident)


async def test_run_stream_orders_attempts_checkpoints_logs_and_result(stack: Standalone) -> None:
    async with aiohttp.ClientSession() as http:
        run_id = await trigger(http, stack.url, "process-order",
                               {"orderId": "o-7", "failPaymentOnAttempts": [1]})
        live = await collect(http, f"{stack.url}/v1/runs/{run_id}/events")
        # The history of a finished run reads back the same, event for event.
        again = await collect(http, f"{stack.url}/v1/runs/{run_id}/events")
    assert [(m.id, m.event, m.data) for m in live] == [(m.id, m.event, m.data) for m in again]
    ids = [cursor(m.id) for m in live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(m.data["runId"] == run_id and m.data["task"] == "process-order" for m in live)
    assert all(m.data["id"] == m.id and m.data["kind"] == m.event for m in live)

    def index(kind: str, **where: Any) -> int:
        for i, m in enumerate(live):
            if m.event == kind and all(
                    m.data.get(k) == v or m.data["data"].get(k) == v for k, v in where.items()):
                return i
        raise AssertionError(f"no {kind} {where} in {[(m.event, m.data['data']) for m in live]}")

    # Log lines are shipped in batches beside the attempt's other calls, so they
    # arrive after the attempt starts and before it ends, in no fixed place between.
    for line in ("fetching order", "payment declined"):
        assert index("attempt_started", attempt=1) < index("log", message=line) < index(
            "attempt_finished", attempt=1)
    order = [
        index("status", status="queued"),
        index("attempt_started", attempt=1),
        index("checkpoint", key="order-fetched"),
        index("attempt_finished", attempt=1),
        index("status", status="retrying"),
        index("attempt_started", attempt=2),
        index("checkpoint", key="payment-complete"),
        index("attempt_finished", attempt=2),
        index("status", status="succeeded"),
    ]
    assert order == sorted(order), order
    assert order[-1] == len(live) - 1
    failed = live[index("attempt_finished", attempt=1)].data["data"]
    assert failed["status"] == "failed" and failed["failureType"] == "error"
    assert failed["oomKilled"] is False and failed["memoryBytes"] == 256 * 1024 * 1024
    assert "payment provider unavailable" in failed["message"]
    fetched = live[index("log", message="fetching order")].data
    assert fetched["attempt"] == 1 and fetched["data"]["step"] == "order-fetched"
    assert fetched["data"]["fields"]["orderId"] == "o-7"
    checkpoint = live[index("checkpoint", key="order-fetched")].data["data"]
    assert checkpoint["sizeBytes"] > 0 and "data" not in checkpoint  # key and size only
    done = live[-1].data["data"]
    assert done["result"]["orderId"] == "o-7" and done["previous"] == "running"
    # Asked for, checkpoint events carry the stored JSON.
    async with aiohttp.ClientSession() as http:
        with_data = await collect(
            http, f"{stack.url}/v1/runs/{run_id}/events?kinds=checkpoint,status&checkpointData=1")
        async with http.get(f"{stack.url}/v1/runs/{run_id}") as resp:
            stored = {c["key"]: c["data"] for c in (await resp.json())["checkpoints"]}
    assert {m.data["data"]["key"]: m.data["data"]["data"] for m in with_data
            if m.event == "checkpoint"} == stored


async def test_resume_after_last_event_id(stack: Standalone) -> None:
    async with aiohttp.ClientSession() as http:
        run_id = await trigger(http, stack.url, "process-order",
                               {"orderId": "o-8", "failPaymentOnAttempts": [1]})
        url = f"{stack.url}/v1/runs/{run_id}/events"
        # Read the first three events live, hang up, and come back with Last-Event-ID.
        first: list[sse.Message] = []
        async with http.get(url) as resp:
            async for msg in sse.messages(resp):
                if msg is not None:
                    first.append(msg)
                if len(first) == 3:
                    break
        assert first[0].id is not None
        rest = await collect(http, url, headers={"Last-Event-ID": str(first[2].id)})
        whole = await collect(http, url)
        by_query = await collect(http, f"{url}?lastEventId={first[0].id}")
        only_checkpoints = await collect(
            http, f"{url}?kinds=checkpoint,status&lastEventId={first[0].id}")
    assert [m.id for m in first + rest] == [m.id for m in whole]
    assert [m.id for m in by_query] == [m.id for m in whole[1:]]
    assert [m.id for m in only_checkpoints] == [
        m.id for m in whole[1:] if m.event in ("checkpoint", "status")]


async def test_two_hundred_subscribers_see_every_event_in_order(stack: Standalone) -> None:
    hub = stack._runner.app[appkeys.EVENT_HUB]
    runs = 5
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        streams = [asyncio.create_task(
            collect(http, f"{stack.url}/v1/events?task=hello", until_final=runs, timeout=120))
            for _ in range(200)]
        for _ in range(1200):
            if hub.subscribers == 200:
                break
            await asyncio.sleep(0.05)
        assert hub.subscribers == 200
        ticks_before, started = hub.ticks, time.monotonic()
        await asyncio.sleep(0.2)  # every subscriber has been covered by a tick
        run_ids = [await trigger(http, stack.url, "hello", {"name": f"n{i}"})
                   for i in range(runs)]
        seen = await asyncio.gather(*streams)
        elapsed = time.monotonic() - started
    reference = [m.id for m in seen[0]]
    assert all([m.id for m in s] == reference for s in seen)
    assert {m.data["runId"] for m in seen[0]} == set(run_ids)
    for run_id in run_ids:
        kinds = [m.event for m in seen[0] if m.data["runId"] == run_id]
        statuses = [m.data["data"]["status"] for m in seen[0]
                    if m.data["runId"] == run_id and m.event == "status"]
        assert kinds[0] == "status" and statuses == ["queued", "running", "succeeded"]
        assert {"attempt_started", "checkpoint", "log", "attempt_finished"} <= set(kinds)
    # One query per tick serves all 200 subscribers: the pump's reads grow with
    # time, not with the number of clients.
    interval = stack.settings.events_poll_seconds
    assert hub.ticks - ticks_before <= elapsed / interval + 50


async def test_global_stream_filters_by_task_and_namespace(stack: Standalone) -> None:
    async with aiohttp.ClientSession() as http:
        hellos = asyncio.create_task(collect(http, f"{stack.url}/v1/events?task=hello"))
        others = asyncio.create_task(
            collect(http, f"{stack.url}/v1/events?namespace=elsewhere", timeout=3))
        await asyncio.sleep(0.5)
        await trigger(http, stack.url, "process-order", {"orderId": "o-9"})
        hello_id = await trigger(http, stack.url, "hello", {"name": "x"})
        seen = await hellos
        with pytest.raises(TimeoutError):
            await others
    assert {m.data["runId"] for m in seen} == {hello_id}


async def test_heartbeats_keep_an_idle_stream_alive(stack: Standalone) -> None:
    beats = 0
    async with aiohttp.ClientSession() as http, asyncio.timeout(10), http.get(
            f"{stack.url}/v1/events?task=nothing-runs-here") as resp:
        async for msg in sse.messages(resp):
            if msg is None:
                beats += 1
                if beats == 2:
                    break


@pytest.mark.parametrize(("path", "status", "field"), [
    ("/v1/runs/not-a-uuid/events", 400, "not a run id"),
    ("/v1/runs/00000000-0000-0000-0000-000000000000/events", 404, "no run"),
    ("/v1/events?kinds=status,bogus", 400, "kinds"),
    ("/v1/events?lastEventId=yesterday", 400, "lastEventId"),
    ("/v1/events?checkpointData=please", 400, "checkpointData"),
])
async def test_bad_stream_requests_are_refused_before_streaming(
    stack: Standalone, path: str, status: int, field: str
) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}{path}") as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        assert field in (await resp.json())["error"]["message"]
    async with aiohttp.ClientSession() as http, http.get(
            f"{stack.url}/v1/events", headers={"Last-Event-ID": "12"}) as resp:
        assert resp.status == 400
        assert "Last-Event-ID" in (await resp.json())["error"]["message"]


async def test_streams_are_closed_at_their_max_age_and_clients_resume_losing_nothing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WAYPOST_EVENTS_STREAM_MAX_AGE closes every stream still open after it, with no
    `end` event (the run has not ended); the SDK resumes with Last-Event-ID, so a run
    followed across several closes is seen event for event, and its log lines line
    for line, as one uninterrupted read of its history shows them."""
    max_age = 0.5
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch,
                             events_stream_max_age_seconds=max_age) as app, \
            aiohttp.ClientSession() as http, WaypostClient(app.url) as client:
        for url in (f"{app.url}/v1/events", f"{app.url}/v1/events?task=nothing-runs-here"):
            started = time.monotonic()
            async with asyncio.timeout(30), http.get(url) as resp:
                got = [m async for m in sse.messages(resp)]
            assert max_age <= time.monotonic() - started < max_age + 10
            assert all(m is None or m.event != "end" for m in got)
        # Delayed by 3 s, so that it is followed for longer than streams live.
        handle = await client.trigger("process-order", {"orderId": "o-10",
                                                        "failPaymentOnAttempts": [1]}, delay=3)
        run_id = handle.id
        streamed: list[dict[str, Any]] = []
        done = await client.wait(run_id, timeout=120, on_event=streamed.append)
        assert done["status"] == "succeeded"
        whole = await collect(http, f"{app.url}/v1/runs/{run_id}/events?kinds="
                              "status,attempt_started,attempt_finished,checkpoint,replay")
        assert [e["id"] for e in streamed] == [m.id for m in whole]
        followed = [line["cursor"] async for line in client.follow_logs(run_id)]
        page, _ = await client.logs(run_id)
        assert followed == [line["cursor"] for line in page] and followed
        # A finished run's stream resumed after its last event sends nothing and, like
        # every stream, is closed at its max age: it does not end by itself, since a
        # finished run can still be requeued or replayed (docs/events.md).
        started = time.monotonic()
        async with asyncio.timeout(30), http.get(
                f"{app.url}/v1/runs/{run_id}/events?kinds=status",
                headers={"Last-Event-ID": str(whole[-1].id)}) as resp:
            after = [m for m in [m async for m in sse.messages(resp)] if m is not None]
        assert after == [] and time.monotonic() - started >= max_age
