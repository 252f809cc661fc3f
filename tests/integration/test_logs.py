"""GET /v1/runs/{id}/logs: every line correlated (run, attempt, step), with filters,
cursor pages and follow=1, over HTTP against real runner processes and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.factories import example_stack, wait_for_status
from tests.integration import printing_task
from waypost.model.enums import RunStatus
from waypost.sdk import sse
from waypost.standalone import Standalone


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch) as app:
        yield app


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def order_run(stack: Standalone) -> str:
    async with aiohttp.ClientSession() as http, http.post(
            f"{stack.url}/v1/tasks/default/process-order/trigger",
            json={"payload": {"orderId": "o-3", "failPaymentOnAttempts": [1]}}) as resp:
        run_id: str = (await resp.json())["id"]
    await wait_for_status(stack.engine, run_id, {RunStatus.SUCCEEDED})
    await processes_ended(stack)
    await runner_lines_in(stack, run_id, attempt=2)
    return run_id


async def runner_lines_in(stack: Standalone, run_id: str, attempt: int) -> None:
    """Wait until the runner's own closing line of ``attempt`` ("attempt succeeded",
    printed to stderr) is stored, then until the run's lines stop changing for 1 s.
    The run succeeds when the runner reports; what it prints around that report is
    read from its pipe and stored a moment later (a warm runner reports with its next
    poll, after printing), so the run's status can come before its last lines."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        _, page = await get(f"{stack.url}/v1/runs/{run_id}/logs?attempt={attempt}&limit=1000")
        if any(e["message"] == "attempt succeeded" and e["fields"].get("stream") == "stderr"
               for e in page["entries"]):
            break
        assert asyncio.get_running_loop().time() < deadline, page["entries"]
        await asyncio.sleep(0.1)
    seen, stable_since = None, asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - stable_since < 1.0:
        _, page = await get(f"{stack.url}/v1/runs/{run_id}/logs?limit=1000")
        now = [e["cursor"] for e in page["entries"]]
        if now != seen:
            seen, stable_since = now, asyncio.get_running_loop().time()
        assert asyncio.get_running_loop().time() < deadline + 60, "the run's lines never settled"
        await asyncio.sleep(0.1)


async def processes_ended(stack: Standalone) -> None:
    """Wait until no runner process is left and its printed lines are readable (the
    run succeeds when the runner reports, a moment before its process exits; and a
    read shows events once every older transaction has ended, see migration 0012)."""
    for _ in range(200):
        if not stack.backend.running():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"runner processes still running: {stack.backend.running()}")
    seen: Any = None
    for _ in range(100):
        async with stack.engine.pool.acquire() as conn:
            now = await conn.fetchval("SELECT count(*) FROM waypost.run_events")
        if now == seen:
            return
        seen = now
        await asyncio.sleep(0.2)


def task_lines(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines the task logged with ctx.log (not what the runner process printed)."""
    return [e for e in entries if "stream" not in e["fields"]]


async def test_lines_carry_run_attempt_step_level_and_fields(stack: Standalone) -> None:
    run_id = await order_run(stack)
    status, page = await get(f"{stack.url}/v1/runs/{run_id}/logs")
    assert status == 200
    lines = page["entries"]
    by_message = {(line["message"], line["attempt"]): line for line in lines}
    fetching = by_message[("fetching order", 1)]
    assert fetching["runId"] == run_id and fetching["step"] == "order-fetched"
    assert fetching["level"] == "info" and fetching["fields"]["orderId"] == "o-3"
    assert by_message[("payment declined", 1)]["level"] == "warning"
    assert by_message[("payment declined", 1)]["step"] == "payment-complete"
    assert by_message[("order fetched", 2)]["step"] is None  # logged outside any step
    assert ("fetching order", 2) not in by_message  # the retry resumed after the fetch
    assert [line["attempt"] for line in lines] == sorted(line["attempt"] for line in lines)

    _, second = await get(f"{stack.url}/v1/runs/{run_id}/logs?attempt=2")
    assert {line["attempt"] for line in second["entries"]} == {2}
    assert {line["message"] for line in task_lines(second["entries"])} == {
        "order fetched", "payment complete"}
    # The runner's own lines (what its process printed) are there too, marked.
    printed: set[str] = set()
    for _ in range(100):
        _, with_printed = await get(f"{stack.url}/v1/runs/{run_id}/logs?attempt=2")
        printed = {line["message"] for line in with_printed["entries"]
                   if line["fields"].get("stream") == "stderr"}
        if {"attempt started", "attempt succeeded"} <= printed:
            break
        await asyncio.sleep(0.1)
    assert {"attempt started", "attempt succeeded"} <= printed, printed
    _, warnings = await get(f"{stack.url}/v1/runs/{run_id}/logs?level=warning")
    assert [line["message"] for line in task_lines(warnings["entries"])] == [
        "payment declined"]
    assert {line["level"] for line in warnings["entries"]} <= {"warning", "error"}
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    _, none = await get(f"{stack.url}/v1/runs/{run_id}/logs?since={later.replace('+', '%2B')}")
    assert none["entries"] == []
    # Read again: the runner's printed lines may still have been coming in at the
    # first read (the "attempt succeeded" line above is the last of them).
    _, page = await get(f"{stack.url}/v1/runs/{run_id}/logs")
    lines = page["entries"]
    first_ts = lines[1]["ts"].replace("+", "%2B")
    _, since = await get(f"{stack.url}/v1/runs/{run_id}/logs?since={first_ts}")
    assert [line["cursor"] for line in since["entries"]] == [
        line["cursor"] for line in lines if line["ts"] >= lines[1]["ts"]]

    # Pages of one line, each from the previous page's nextCursor, add up to the whole.
    paged: list[str] = []
    cursor = None
    for _ in range(len(lines) + 1):
        after = "" if cursor is None else f"&cursor={cursor}"
        _, one = await get(f"{stack.url}/v1/runs/{run_id}/logs?limit=1{after}")
        paged += [line["cursor"] for line in one["entries"]]
        cursor = one["nextCursor"]
        if not one["entries"]:
            break
    assert paged == [line["cursor"] for line in lines]


async def test_follow_streams_lines_and_ends_with_the_run(stack: Standalone) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{stack.url}/v1/tasks/default/process-order/trigger",
                             json={"payload": {"orderId": "o-4",
                                               "failPaymentOnAttempts": [1]}}) as resp:
            run_id = (await resp.json())["id"]
        got: list[sse.Message] = []
        async with asyncio.timeout(60), http.get(
                f"{stack.url}/v1/runs/{run_id}/logs?follow=1") as resp:
            assert resp.content_type == "text/event-stream"
            async for msg in sse.messages(resp):
                if msg is not None:
                    got.append(msg)
    assert got[-1].event == "end" and got[-1].data == {"status": "succeeded"}
    messages = [(m.data["message"], m.data["attempt"]) for m in got[:-1]]
    assert ("fetching order", 1) in messages and ("payment complete", 2) in messages
    assert all(m.event == "log" and m.id == m.data["cursor"] for m in got[:-1])
    # A finished run's follow sends what is there and ends at once.
    async with aiohttp.ClientSession() as http, asyncio.timeout(10), http.get(
            f"{stack.url}/v1/runs/{run_id}/logs?follow=1&attempt=2") as resp:
        after = [m for m in [m async for m in sse.messages(resp)] if m is not None]
    assert after[-1].event == "end" and {m.event for m in after[:-1]} == {"log"}
    assert [m.data["message"] for m in after[:-1] if "stream" not in m.data["fields"]] == [
        "order fetched", "payment complete"]


async def test_a_finished_runs_follow_ends_however_it_is_resumed(stack: Standalone) -> None:
    """A follow that starts after the run's last line (a cursor, Last-Event-ID, a since
    in the future: nothing left to send, the final status not among what is sent) ends
    with the run's status instead of waiting forever."""
    run_id = await order_run(stack)
    _, page = await get(f"{stack.url}/v1/runs/{run_id}/logs")
    last = page["entries"][-1]["cursor"]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+", "%2B")
    base = f"{stack.url}/v1/runs/{run_id}/logs?follow=1"
    for url, headers in ((f"{base}&cursor={last}", {}), (base, {"Last-Event-ID": last}),
                         (f"{base}&since={later}", {}),
                         (f"{base}&cursor={page['nextCursor']}&attempt=1", {})):
        async with aiohttp.ClientSession() as http, asyncio.timeout(20), http.get(
                url, headers=headers) as resp:
            got = [m for m in [m async for m in sse.messages(resp)] if m is not None]
        assert [(m.event, m.data) for m in got] == [("end", {"status": "succeeded"})], url


async def test_follow_waits_for_what_the_process_printed_before_it_exited(
    stack: Standalone,
) -> None:
    await stack.register(printing_task.late_printer)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{stack.url}/v1/tasks/default/late-printer/trigger",
                             json={}) as resp:
            run_id = (await resp.json())["id"]
        async with asyncio.timeout(60), http.get(
                f"{stack.url}/v1/runs/{run_id}/logs?follow=1") as resp:
            got = [m for m in [m async for m in sse.messages(resp)] if m is not None]
    assert got[-1].event == "end" and got[-1].data == {"status": "succeeded"}
    printed = [m.data["message"] for m in got
               if m.event == "log" and m.data["fields"].get("stream") == "stdout"]
    assert printed == ["printed before the end, stored after it"]


@pytest.mark.parametrize(("query", "status", "words"), [
    ("cursor=12", 400, "cursor"),
    ("cursor=a-b", 400, "cursor"),
    ("level=loud", 400, "level"),
    ("attempt=first", 400, "attempt"),
    ("since=yesterday", 400, "since"),
    ("limit=0", 400, "limit"),
    ("follow=maybe", 400, "follow"),
    ("limit=5001", 400, "limit"),
    ("cursor=99999999999999999999-1", 400, "cursor"),  # never past a bigint
    ("attempt=99999999999999999999999", 400, "attempt"),
])
async def test_bad_filters_are_refused(stack: Standalone, query: str, status: int,
                                       words: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{stack.url}/v1/tasks/default/hello/trigger", json={}) as resp:
        run_id = (await resp.json())["id"]
    code, body = await get(f"{stack.url}/v1/runs/{run_id}/logs?{query}")
    assert code == status
    assert words in body["error"]["message"]


async def test_unknown_run_is_404(stack: Standalone) -> None:
    code, body = await get(f"{stack.url}/v1/runs/00000000-0000-0000-0000-000000000001/logs")
    assert code == 404 and body["error"]["code"] == "run_not_found"
    code, body = await get(f"{stack.url}/v1/runs/nope/logs")
    assert code == 400 and "run id" in body["error"]["message"]


async def test_dev_mode_captures_what_the_runner_prints(stack: Standalone) -> None:
    await stack.register(printing_task.printer)
    async with aiohttp.ClientSession() as http, http.post(
            f"{stack.url}/v1/tasks/default/printer/trigger", json={}) as resp:
        run_id = (await resp.json())["id"]
    await wait_for_status(stack.engine, run_id, {RunStatus.SUCCEEDED})
    await processes_ended(stack)
    _, page = await get(f"{stack.url}/v1/runs/{run_id}/logs")
    lines = {line["message"]: line for line in page["entries"]}
    assert lines["hello from stdout"]["fields"] == {"stream": "stdout"}
    assert lines["hello from stdout"]["level"] == "info"
    assert lines["oops on stderr"]["fields"] == {"stream": "stderr"}
    assert lines["oops on stderr"]["level"] == "warning"
    assert all(line["attempt"] == 1 and line["runId"] == run_id for line in lines.values())
    # ctx.log's line arrives once, through the runner API, not again from stderr.
    structured = [e for e in page["entries"] if e["message"] == "structured line"]
    assert len(structured) == 1 and structured[0]["fields"]["n"] == 1
