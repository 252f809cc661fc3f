"""The attempt's request sent before the runner's imports (waypost.runner.early)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from waypost.runner import early, main
from waypost.sdk import protocol

DOC = {"runId": "r-1", "attempt": 1,
       "task": {"namespace": "n", "name": "t", "entrypoint": "m:f"},
       "heartbeatIntervalSeconds": 1, "limits": {}}


def test_names_match_the_protocol() -> None:
    assert early.ENV_COORDINATOR_URL == protocol.ENV_COORDINATOR_URL
    assert early.ENV_ATTEMPT_TOKEN == protocol.ENV_ATTEMPT_TOKEN
    assert early.ENV_ATTEMPT_TOKEN_FILE == protocol.ENV_ATTEMPT_TOKEN_FILE
    assert early.PATH_ATTEMPT == protocol.PATH_ATTEMPT


def test_the_entrypoint_imports_nothing_before_it_has_sent_the_request() -> None:
    probe = ("import sys, waypost.runner.entry; "
             "print(sorted(m for m in sys.modules if m.startswith('waypost') "
             "or m in ('asyncio', 'json')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "['waypost', 'waypost.runner', 'waypost.runner.early', " \
                                  "'waypost.runner.entry']"


@pytest.fixture
def server() -> Iterator[tuple[str, list[bytes], list[bytes]]]:
    """A coordinator stand-in: answers each connection with the next canned answer."""
    answers: list[bytes] = []
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                seen.append(data)
                conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", answers, seen
    listener.close()


def _ok(body: Any) -> bytes:
    text = json.dumps(body).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text)


def test_sends_the_attempt_request_and_reads_a_200(
        server: tuple[str, list[bytes], list[bytes]], tmp_path: Path) -> None:
    url, answers, seen = server
    token = tmp_path / "token"
    token.write_text("wpa.secret\n", encoding="utf-8")
    answers.append(_ok(DOC))
    fetch = early.begin({early.ENV_COORDINATOR_URL: url,
                         early.ENV_ATTEMPT_TOKEN_FILE: str(token)})
    assert fetch is not None
    assert json.loads(fetch.answer() or b"") == DOC
    request = seen[0].decode()
    assert request.startswith("GET /v1/runner/attempt HTTP/1.1\r\n")
    assert "Authorization: Bearer wpa.secret\r\n" in request


def test_anything_but_a_200_is_left_to_the_ordinary_fetch(
        server: tuple[str, list[bytes], list[bytes]]) -> None:
    url, answers, _ = server
    answers.append(b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}")
    fetch = early.begin({early.ENV_COORDINATOR_URL: url, early.ENV_ATTEMPT_TOKEN: "t"})
    assert fetch is not None and fetch.answer() is None
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")  # cut short
    fetch = early.begin({early.ENV_COORDINATOR_URL: url, early.ENV_ATTEMPT_TOKEN: "t"})
    assert fetch is not None and fetch.answer() is None
    # Nothing to send without a credential, nor to an https coordinator, nor to nobody.
    assert early.begin({early.ENV_COORDINATOR_URL: url}) is None
    assert early.begin({early.ENV_COORDINATOR_URL: "https://c", early.ENV_ATTEMPT_TOKEN: "t"}
                       ) is None
    assert early.begin({early.ENV_COORDINATOR_URL: "http://127.0.0.1:9",
                        early.ENV_ATTEMPT_TOKEN: "t"}) is None
    assert early.begin({early.ENV_COORDINATOR_URL: url,
                        early.ENV_ATTEMPT_TOKEN_FILE: "/nonexistent/token"}) is None


class _Client:
    def __init__(self) -> None:
        self.fetched = 0

    async def get_attempt(self) -> protocol.AttemptDocument:
        self.fetched += 1
        return protocol.decode(protocol.AttemptDocument, {**DOC, "runId": "fetched"})


class _Early:
    def __init__(self, body: bytes | None) -> None:
        self.body = body

    def answer(self) -> bytes | None:
        return self.body


@pytest.mark.parametrize(("body", "run_id", "fetched"), [
    (json.dumps(DOC).encode(), "r-1", 0),  # the early answer is the document
    (None, "fetched", 1),  # no early answer: fetched as before
    (b'{"not": "a document"}', "fetched", 1),  # a bad one: fetched (and reported) again
])
async def test_first_document(body: bytes | None, run_id: str, fetched: int) -> None:
    client = _Client()
    doc = await main.first_document(client, _Early(body))  # type: ignore[arg-type]
    assert (doc.run_id, client.fetched) == (run_id, fetched)
