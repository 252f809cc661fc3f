"""A real browser against a real `waypost dev`.

``waypost dev`` runs as a subprocess from the repository root, with its embedded
Postgres, the process backend and the example tasks, and an API token so that the
UI asks for the login. Chromium is Debian's (``make deps`` installs it); Playwright
drives it through ``executable_path``. Neither is optional: a missing one fails the
test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-extensions"]
TOKEN = "ui-test-token"


@dataclass
class DevServer:
    url: str
    token: str
    state_dir: Path
    output: list[str]

    @property
    def ledger(self) -> Path:
        return self.state_dir / "ledger.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """`waypost dev` with its examples finished, serving until the session ends."""
    state = tmp_path_factory.mktemp("waypost-dev")
    port = _free_port()
    env = {**os.environ, "WAYPOST_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    env.pop("WAYPOST_DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "waypost"), "dev", "--examples", "--port", str(port),
         "--state-dir", str(state)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if line.startswith("Still serving at"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("waypost dev did not come up:\n" + "".join(output))
        assert "All examples ended as expected." in "".join(output), "".join(output)
        yield DevServer(f"http://127.0.0.1:{port}", TOKEN, state, output)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(5)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: run `make deps`"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/ui for `make ui-screenshots`, else a temporary dir."""
    target = os.environ.get("WAYPOST_UI_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
