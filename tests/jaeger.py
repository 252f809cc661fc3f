"""A real Jaeger (v2 all-in-one, in-memory storage) for the tracing tests.

The binary comes from ``WAYPOST_JAEGER`` (``make test`` sets it from ``tools/ensure
jaeger``, which builds it once from the Go module proxy). It listens on free
loopback ports (or the address given: the e2e cluster's Pods reach the host at the
bridge's address) with its own configuration: OTLP over HTTP in, the query API out.
A test that needs it fails, never skips, without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.factories import stop_process

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: "{host}:{query}"
    grpc:
      endpoint: "{host}:{query_grpc}"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "{host}:{otlp}"
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def binary() -> str:
    path = os.environ.get("WAYPOST_JAEGER", "")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError('WAYPOST_JAEGER is not set to an executable: run `make test`, or '
                           'export WAYPOST_JAEGER="$(tools/ensure jaeger)"')
    return path


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Jaeger:
    host: str
    otlp_port: int
    query_port: int

    @property
    def otlp_endpoint(self) -> str:
        """For ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter adds /v1/traces)."""
        return f"http://{self.host}:{self.otlp_port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.host}:{self.query_port}{path}",
                                    timeout=10) as resp:
            return json.load(resp)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace from the query API (``/api/traces/<id>``), None until it exists."""
        try:
            data = self.get(f"/api/traces/{trace_id}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        traces = data.get("data") or []
        return traces[0] if traces else None

    def wait_for_spans(self, trace_id: str, done: Any, timeout: float = 60) -> dict[str, Any]:
        """Poll until ``done(trace)`` holds; the trace's last state in the error."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.trace(trace_id)
            if last is not None and done(last):
                return last
            time.sleep(0.5)
        names = sorted(s["operationName"] for s in (last or {}).get("spans", []))
        raise AssertionError(f"trace {trace_id} incomplete after {timeout} s: spans {names}")


@contextlib.contextmanager
def running(folder: Path, host: str = "127.0.0.1") -> Iterator[Jaeger]:
    ports = {name: free_port(host) for name in ("otlp", "query", "query_grpc")}
    config = folder / "jaeger.yaml"
    config.write_text(CONFIG.format(host=host, **ports), encoding="utf-8")
    log = (folder / "jaeger.log").open("wb")
    proc = subprocess.Popen([binary(), "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    jaeger = Jaeger(host, ports["otlp"], ports["query"])
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jaeger exited ({proc.returncode}): "
                                   + (folder / "jaeger.log").read_text(errors="replace")[-2000:])
            try:
                jaeger.get("/api/services")
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield jaeger
    finally:
        stop_process(proc)
        log.close()


def spans_by_id(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["spanID"]: s for s in trace["spans"]}


def parent_of(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}
