"""The runner's start-up imports: nothing it does not use (issue 12, import cost)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from waypost.runner.http import StreamHTTP, split_url
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


async def test_stream_http_reuses_and_survives_closed_keepalive(server: str) -> None:
    http = StreamHTTP(server, timeout=5)
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


async def test_stream_http_refused_is_a_transport_error() -> None:
    http = StreamHTTP("http://127.0.0.1:9", timeout=1)
    try:
        with pytest.raises(TransportError):
            await http.send("GET", "http://127.0.0.1:9/x", {}, None)
    finally:
        http.close()


def test_stream_http_rejects_non_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        StreamHTTP("unix:///tmp/sock", timeout=1)


def test_runner_imports_no_http_client_or_email() -> None:
    # The runner's transport is asyncio streams: http.client (and the email package it
    # parses headers with) and a thread pool are not imported at all.
    probe = ("import sys, waypost.runner.main; print(','.join(m for m in "
             "('http.client', 'email', 'concurrent.futures.thread', 'urllib.parse') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""


async def _canned(answers: list[bytes]) -> tuple[asyncio.Server, str, list[bytes]]:
    """A server answering each request on a connection with the next canned answer."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            requests.append(head + await reader.readexactly(length))
            answer = answers.pop(0)
            if not answer:
                break  # hang up without answering
            writer.write(answer)
            await writer.drain()
            if b"Connection: close" in answer:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", requests


async def test_stream_http_reads_chunked_and_closing_answers() -> None:
    server, url, requests = await _canned([
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n",
        b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ])
    http = StreamHTTP(url, timeout=5)
    try:
        assert await http.send("POST", f"{url}/v1/x?y=1", {"Authorization": "Bearer t"},
                               b'{"k":2}') == (200, '{"a": 1}')
        assert await http.send("GET", f"{url}/v1/z", {}, None) == (409, "{}")
        first = requests[0].decode()
        assert first.startswith("POST /v1/x?y=1 HTTP/1.1\r\n")
        assert "Authorization: Bearer t\r\n" in first and first.endswith('{"k":2}')
        assert "Content-Length: 7\r\n" in first
        assert requests[1].startswith(b"GET /v1/z HTTP/1.1\r\n")  # the same connection
        assert http._idle == []  # the server said close: not kept
    finally:
        http.close()
        server.close()


async def test_stream_http_no_answer_and_timeouts_are_transport_errors() -> None:
    server, url, _ = await _canned([b""])
    http = StreamHTTP(url, timeout=5)
    try:
        with pytest.raises(TransportError):
            await http.send("GET", f"{url}/x", {}, None)
    finally:
        http.close()
        server.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = quiet.sockets[0].getsockname()[1]
    http = StreamHTTP(f"http://127.0.0.1:{port}", timeout=5)
    try:
        with pytest.raises(TransportError, match="TimeoutError"):
            await http.send("GET", f"http://127.0.0.1:{port}/x", {}, None, timeout=0.2)
    finally:
        http.close()
        quiet.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("http://coordinator:8080", (False, "coordinator", 8080)),
    ("http://10.0.0.7:8080/prefix", (False, "10.0.0.7", 8080)),
    ("https://waypost.example", (True, "waypost.example", 443)),
    ("http://[fd00::7]:9000", (False, "fd00::7", 9000)),
    ("http://h", (False, "h", 80)),
])
def test_split_url(url: str, expected: tuple[bool, str, int]) -> None:
    assert split_url(url) == expected
