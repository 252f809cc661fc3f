"""The runner's start-up imports: nothing it does not use (issue 12, import cost)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from waypost.runner.http import ThreadedHTTP
from waypost.sdk.transport import TransportError

# OpenTelemetry too: the runner imports it only when OTEL_* turns tracing on (issue 11).
HEAVY = ("aiohttp", "yarl", "multidict", "pydantic", "asyncpg", "psutil", "opentelemetry")


def test_runner_entrypoint_imports_no_heavy_modules() -> None:
    # A fresh interpreter: this test process has imported all of them already.
    probe = (
        "import sys, waypost.runner.main; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""


def test_runner_imports_opentelemetry_only_when_tracing_is_on() -> None:
    probe = (
        "import sys, os; from waypost.runner import tracing; from waypost.sdk import protocol; "
        "doc = protocol.AttemptDocument(run_id='r', attempt=1, "
        "task=protocol.AttemptTask(namespace='n', name='t', entrypoint='m:f'), "
        "heartbeat_interval_seconds=1, limits=protocol.AttemptLimits(), "
        "traceparent='00-' + '1' * 32 + '-' + '2' * 16 + '-01'); "
        "off = tracing.start(doc, {}); before = 'opentelemetry' in sys.modules; "
        "on = tracing.start(doc, {'OTEL_TRACES_EXPORTER': 'console'}); "
        "print(before, 'opentelemetry' in sys.modules, off.steps.traceparent(), "
        "on.steps.traceparent()); on.end('succeeded', False)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    before, after, off, on = done.stdout.split()[:4]
    assert (before, after) == ("False", "True")
    # Off: the run's span as given. On: the attempt span, in the same trace.
    assert off == "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert on.startswith("00-" + "1" * 32 + "-") and on.endswith("-01") and on != off


def test_sdk_client_is_still_importable_from_the_package() -> None:
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, waypost.sdk as s; assert 'aiohttp' not in sys.modules; "
         "print(s.WaypostClient.__name__, 'aiohttp' in sys.modules)"],
        capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["WaypostClient", "True"]


@pytest.fixture
async def server() -> AsyncIterator[str]:
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({"body": (await request.read()).decode(),
                                  "auth": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    # A short keep-alive makes the server close idle connections, as a
    # coordinator does between a warm runner's runs.
    runner = web.AppRunner(app, keepalive_timeout=0.05)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_threaded_http_reuses_and_survives_closed_keepalive(server: str) -> None:
    http = ThreadedHTTP(server, timeout=5)
    try:
        status, text = await http.send("POST", f"{server}/echo", {"Authorization": "Bearer x"},
                                       b'{"a":1}')
        assert status == 200 and '"auth": "Bearer x"' in text and '{\\"a\\":1}' in text
        # The server has closed the idle connection by now: the stale one is
        # replaced transparently instead of failing the call.
        await asyncio.sleep(0.3)
        status, _ = await http.send("GET", f"{server}/echo", {}, None)
        assert status == 200
    finally:
        http.close()


async def test_threaded_http_refused_is_a_transport_error() -> None:
    http = ThreadedHTTP("http://127.0.0.1:9", timeout=1)
    try:
        with pytest.raises(TransportError):
            await http.send("GET", "http://127.0.0.1:9/x", {}, None)
    finally:
        http.close()


def test_threaded_http_rejects_non_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        ThreadedHTTP("unix:///tmp/sock", timeout=1)
