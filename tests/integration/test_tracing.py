"""Traces in a real Jaeger: run -> attempts -> steps, with the caller's trace as root.

The engine (process backend, real runners) exports over OTLP to a Jaeger all-in-one
built from its Go module; the test reads the trace back through Jaeger's query API.
The trigger carries the caller's ``traceparent``; the task's first step calls an HTTP
service with ``ctx.traceparent``; its payment fails once, so attempt 2 resumes and
skips ``order-fetched``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from examples import traced
from tests import jaeger as jaeger_support
from tests.factories import settings, wait_for_status
from tests.jaeger import Jaeger, parent_of, spans_by_id, tags
from waypost.backends.process import ProcessBackend
from waypost.model.enums import RunStatus
from waypost.sdk.client import WaypostClient
from waypost.standalone import Standalone


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    with jaeger_support.running(tmp_path_factory.mktemp("jaeger")) as j:
        yield j


@pytest.fixture
async def service() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP service that records the traceparent of each request."""
    seen: list[str] = []

    async def order(request: web.Request) -> web.Response:
        seen.append(request.headers.get("traceparent", ""))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/order", order)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/order", seen
    finally:
        await runner.cleanup()


@pytest.fixture
def otel_env() -> dict[str, str]:
    """More OTEL_* variables for the stack (a test parametrizes it)."""
    return {}


@pytest.fixture
async def traced_stack(
    database_url: str, jaeger: Jaeger, monkeypatch: pytest.MonkeyPatch,
    otel_env: dict[str, str],
) -> AsyncIterator[Standalone]:
    # Standard OpenTelemetry variables, read by the engine and inherited by runners.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    for name, value in otel_env.items():
        monkeypatch.setenv(name, value)
    app = await Standalone(settings(database_url, missed_heartbeats=10,
                                    telemetry_poll_seconds=0.2),
                           ProcessBackend(max_parallel=2)).start()
    try:
        await app.register(traced.traced_order)
        yield app
    finally:
        await app.stop()


def _complete(trace: dict[str, Any]) -> bool:
    names = [s["operationName"] for s in trace["spans"]]
    return ("run traced-order" in names and names.count("queue wait") == 2
            and names.count("step order-fetched") == 2
            and names.count("step payment-complete") == 2
            and sum(n.startswith("attempt ") for n in names) == 2)


async def test_run_attempts_and_steps_form_one_trace_under_the_caller(
    traced_stack: Standalone, jaeger: Jaeger, service: tuple[str, list[str]], tmp_path: Path,
) -> None:
    url, seen = service
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    async with WaypostClient(traced_stack.url) as client:
        handle = await client.trigger(
            "traced-order", {"orderId": "o-7", "url": url},
            traceparent=f"00-{caller_trace}-{caller_span}-01")
    run = await wait_for_status(traced_stack.engine, handle.id, {RunStatus.SUCCEEDED},
                                timeout=120)
    assert run.trace_id == caller_trace

    trace = await asyncio.to_thread(jaeger.wait_for_spans, caller_trace, _complete, 90)
    spans = spans_by_id(trace)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans.values():
        by_name.setdefault(s["operationName"], []).append(s)

    # The caller's span is the root: the run span is its child, in the caller's trace.
    [run_span] = by_name["run traced-order"]
    assert parent_of(run_span) == caller_span
    assert {s["traceID"] for s in spans.values()} == {caller_trace}
    run_tags = tags(run_span)
    assert run_tags["waypost.run_id"] == handle.id
    assert run_tags["waypost.task"] == "traced-order"
    assert run_tags["messaging.system"] == "waypost"
    assert run_tags["waypost.status"] == "succeeded"

    # run -> attempts (and a queue wait per attempt, timed by the database).
    attempts = sorted((s for s in spans.values() if s["operationName"].startswith("attempt ")),
                      key=lambda s: tags(s)["waypost.attempt"])
    assert [tags(a)["waypost.attempt"] for a in attempts] == [1, 2]
    for a in attempts:
        assert parent_of(a) == run_span["spanID"]
    for wait in by_name["queue wait"]:
        assert parent_of(wait) == run_span["spanID"]
    assert tags(attempts[0])["waypost.attempt.outcome"] == "failed"
    assert tags(attempts[1])["waypost.attempt.outcome"] == "succeeded"
    assert tags(attempts[1])["waypost.resumed_checkpoints"] == 1

    # attempts -> steps; the resumed attempt skipped order-fetched.
    def steps_of(attempt: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {tags(s)["waypost.step"]: s for s in spans.values()
                if parent_of(s) == attempt["spanID"]}

    first, second = steps_of(attempts[0]), steps_of(attempts[1])
    assert set(first) == set(second) == {"order-fetched", "payment-complete"}
    assert tags(first["order-fetched"])["waypost.step.skipped"] is False
    assert tags(second["order-fetched"])["waypost.step.skipped"] is True
    assert second["order-fetched"]["duration"] == 0
    assert tags(first["payment-complete"])["otel.status_code"] == "ERROR"
    assert tags(second["payment-complete"])["waypost.step.skipped"] is False
    # The checkpoint written by the step is an event on its span.
    logs = [{f["key"]: f["value"] for f in log["fields"]}
            for log in first["order-fetched"]["logs"]]
    assert any(e.get("event") == "waypost.checkpoint"
               and e.get("waypost.checkpoint.key") == "order-fetched" for e in logs)

    # The task's outgoing call carried the step's context: same trace, the step's span.
    assert seen == [f"00-{caller_trace}-{first['order-fetched']['spanID']}-01"]


@pytest.mark.parametrize("otel_env", [
    pytest.param({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
                 id="by-trace-id"),
    pytest.param({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                  "OTEL_TRACES_SAMPLER_ARG": "0.5"}, id="by-callers-flag"),
])
async def test_a_sampler_drops_a_runs_whole_trace_leader_and_runner_alike(
    traced_stack: Standalone, jaeger: Jaeger, service: tuple[str, list[str]],
    otel_env: dict[str, str],
) -> None:
    url, seen = service
    # Ratio sampling decides on the trace id's lower 64 bits: 0 is kept, all ones not.
    # Each caller's sampled flag says the opposite: a parentbased sampler follows the
    # flag (the stored parent_sampled), traceidratio the id.
    by_id_kept, by_id_dropped = secrets.token_hex(8) + "0" * 16, secrets.token_hex(8) + "f" * 16
    flag = {by_id_kept: "00", by_id_dropped: "01"}
    if otel_env["OTEL_TRACES_SAMPLER"].startswith("parentbased_"):
        kept, dropped = by_id_dropped, by_id_kept
    else:
        kept, dropped = by_id_kept, by_id_dropped
    ids = {}
    async with WaypostClient(traced_stack.url) as client:
        for trace_id in (kept, dropped):
            handle = await client.trigger(
                "traced-order", {"orderId": trace_id, "url": url},
                traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-{flag[trace_id]}")
            ids[trace_id] = handle.id
    for run_id in ids.values():
        await wait_for_status(traced_stack.engine, run_id, {RunStatus.SUCCEEDED}, timeout=120)

    await asyncio.to_thread(jaeger.wait_for_spans, kept, _complete, 90)
    # Both runs ended before the kept trace was complete in Jaeger, and the leader
    # and the runners export in order: nothing of the dropped run was sent.
    assert await asyncio.to_thread(jaeger.trace, dropped) is None
    # The task's outgoing calls carried each decision on: sampled, then not.
    flags = {tp.split("-")[1]: tp.split("-")[3] for tp in seen}
    assert flags == {kept: "01", dropped: "00"}


async def test_delayed_scheduled_and_ttl_triggers_join_the_callers_trace(
    traced_stack: Standalone, jaeger: Jaeger, service: tuple[str, list[str]],
) -> None:
    """A trigger with ``delay``, ``runAt`` or ``ttl`` takes another path into the
    store (the batch enqueue, then the waker for the first two); its run is still a
    child of the caller's span in the caller's trace, whole (leader's and runner's
    spans), and the caller's sampled flag still decides (``-00`` drops the trace
    under the default ``parentbased_always_on``)."""
    url, seen = service
    async with WaypostClient(traced_stack.url) as client:
        # The dropped one first, ended before the kept ones start: the leader exports
        # in event-log order, so once the kept traces are whole in Jaeger, a span of
        # the dropped run would have been there before them.
        dropped = secrets.token_hex(16)
        handle = await client.trigger(
            "traced-order", {"orderId": "dropped", "url": url}, delay=0.5,
            traceparent=f"00-{dropped}-{secrets.token_hex(8)}-00")
        run = await wait_for_status(traced_stack.engine, handle.id, {RunStatus.SUCCEEDED},
                                    timeout=120)
        assert run.trace_id == dropped

        callers: dict[str, tuple[str, str]] = {}  # way -> (trace id, span id)
        runs: dict[str, str] = {}
        for way, when in (("delay", {"delay": 0.5}),
                          ("runAt", {"run_at": datetime.now(UTC) + timedelta(seconds=0.5)}),
                          ("ttl", {"ttl": 600})):
            callers[way] = (secrets.token_hex(16), secrets.token_hex(8))
            trace_id, span_id = callers[way]
            handle = await client.trigger(
                "traced-order", {"orderId": way, "url": url},
                traceparent=f"00-{trace_id}-{span_id}-01", **when)  # type: ignore[arg-type]
            runs[way] = handle.id
    for way, run_id in runs.items():
        run = await wait_for_status(traced_stack.engine, run_id, {RunStatus.SUCCEEDED},
                                    timeout=120)
        assert run.trace_id == callers[way][0], way

    for way, (trace_id, span_id) in callers.items():
        trace = await asyncio.to_thread(jaeger.wait_for_spans, trace_id, _complete, 90)
        spans = spans_by_id(trace)
        assert {s["traceID"] for s in spans.values()} == {trace_id}, way
        [run_span] = [s for s in spans.values() if s["operationName"] == "run traced-order"]
        assert parent_of(run_span) == span_id, way
        assert tags(run_span)["waypost.run_id"] == runs[way]
        attempts = [s for s in spans.values() if s["operationName"].startswith("attempt ")]
        assert {parent_of(a) for a in attempts} == {run_span["spanID"]}, way
    assert await asyncio.to_thread(jaeger.trace, dropped) is None
    # Each task's outgoing call carried its caller's trace on, and the decision.
    flags = {tp.split("-")[1]: tp.split("-")[3] for tp in seen}
    assert flags == {dropped: "00", **{t: "01" for t, _ in callers.values()}}
