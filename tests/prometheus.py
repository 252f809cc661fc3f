"""A real Prometheus for the metrics tests (integration and e2e).

The binary comes from ``WAYPOST_PROMETHEUS`` (``make test`` and ``make e2e`` set it
from ``tools/ensure prometheus``, which builds it once from the Go module proxy). It
listens on a free loopback port with the configuration the test writes and is
reloaded with SIGHUP when the test rewrites it. A test that needs it fails, never
skips, without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary() -> str:
    path = os.environ.get("WAYPOST_PROMETHEUS", "")
    if not path or not os.access(path, os.X_OK):
        pytest.fail('WAYPOST_PROMETHEUS is not set to an executable: run `make test`, or '
                    'export WAYPOST_PROMETHEUS="$(tools/ensure prometheus)"', pytrace=False)
    return path


class Prometheus:
    def __init__(self, port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = proc

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            return json.load(resp)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as resp:
            return int(resp.status) == 200

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts of the loaded rules that are pending or firing."""
        answer = self.get("/api/v1/alerts")
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["alerts"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/targets")["data"]["activeTargets"]
        return result

    def reload(self) -> None:
        """Read the configuration file again (as ``kill -HUP`` does)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


@contextlib.contextmanager
def running(config: dict[str, Any], folder: Path) -> Iterator[Prometheus]:
    """Prometheus with ``config`` (written to ``folder/prometheus.yml``) until the block ends."""
    path = folder / "prometheus.yml"
    path.write_text(json.dumps(config), encoding="utf-8")
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary(), f"--config.file={path}", f"--storage.tsdb.path={folder / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    prom = Prometheus(port, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
            with contextlib.suppress(OSError):  # not listening yet, or 503 while starting
                if prom.ready():
                    break
            assert time.monotonic() < deadline, "prometheus did not get ready in 60 s"
            time.sleep(0.2)
        yield prom
    finally:
        stop_process(proc)
        log.close()
