"""The chart's Grafana dashboard against a real Prometheus scraping a real waypost.

Prometheus (built from its Go module; ``WAYPOST_PROMETHEUS``, which ``make test``
sets from ``tools/ensure prometheus``; without it this test fails) scrapes the
coordinator's ``/metrics`` every second while real runners (process backend, one
at a time) run three 1-second sleeps, an order that is retried once and a task that
is dead-lettered: while they queue, the queue panels have data; once they ended,
the rate and histogram panels. Every panel's PromQL, with the dashboard's
``$namespace`` variable set to the scrape target's namespace label (a
ServiceMonitor sets it to the operator Pod's namespace), returns data through
Prometheus's query API.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from examples import flaky
from tests import prometheus as prometheus_support
from tests.factories import example_stack, wait_for_status
from tests.prometheus import Prometheus
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/waypost/dashboards/waypost.json"
NAMESPACE = "waypost-system"
# Series that exist only once their event happened: no OOM kill here (the insights
# test kills a task for memory), no failure pattern (the insights test makes them).
NEEDS_ANOTHER_TEST = {"waypost_attempt_oom_kills_total", "waypost_task_pattern"}


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch,
                             max_parallel=1, also=[flaky.always_fails, flaky.sleepy],
                             telemetry_poll_seconds=0.2) as app:
        yield app


@pytest.fixture
def prometheus(stack: Standalone, tmp_path: Path) -> Iterator[Prometheus]:
    target = urllib.parse.urlsplit(stack.url).netloc
    with prometheus_support.running({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "waypost", "static_configs": [
            {"targets": [target], "labels": {"namespace": NAMESPACE}}]}],
    }, tmp_path) as prom:
        yield prom


def panels() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])
            if t.get("expr")]


async def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    stack: Standalone, prometheus: Prometheus,
) -> None:
    queries = [(title, expr.replace("$namespace", NAMESPACE)) for title, expr in panels()]
    assert len(queries) >= 15
    judged = [(t, e) for t, e in queries if not any(m in e for m in NEEDS_ANOTHER_TEST)]
    assert len(queries) - len(judged) == 2  # the OOM and the pattern panels only
    # Gauges of the runs in queues: a series per known queue, 0 when it is empty.
    queue_panels = [(t, e) for t, e in judged
                    if "waypost_queue_ready_runs" in e or "waypost_queue_running_runs" in e]
    assert len(queue_panels) == 4

    def empty(panels: list[tuple[str, str]]) -> list[str]:
        return [f"{t}: {e}" for t, e in panels if not prometheus.query(e)]

    async def until_data(panels: list[tuple[str, str]], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while missing := await asyncio.to_thread(empty, panels):
            assert time.monotonic() < deadline, f"panels without data: {missing}"
            await asyncio.sleep(1)

    sleeps = [(await control.trigger(stack.engine, "default", "sleepy",
                                     TriggerRequest(payload={"seconds": 1})))[0]
              for _ in range(3)]
    order, _ = await control.trigger(
        stack.engine, "default", "process-order",
        TriggerRequest(payload={"orderId": "o-1", "failPaymentOnAttempts": [1]}))
    failing, _ = await control.trigger(stack.engine, "default", "always-fails",
                                       TriggerRequest(payload={}))
    # One runner at a time: the others wait in their queues meanwhile (a runner's
    # start and a 1 s sleep each, 5 runs).
    await until_data(queue_panels, 60)
    for run in sleeps:  # how they end is not the point (a loaded machine may time out)
        await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED, RunStatus.FAILED,
                                                     RunStatus.DEAD_LETTERED}, timeout=120)
    # One runner at a time for 8 attempts: generous for a loaded machine.
    await wait_for_status(stack.engine, order.id, {RunStatus.SUCCEEDED}, timeout=180)
    await wait_for_status(stack.engine, failing.id, {RunStatus.DEAD_LETTERED}, timeout=180)
    # rate() needs two scrapes after the runs' counters moved; the leader's reader
    # follows the event log a moment behind.
    await until_data([p for p in judged if p not in queue_panels], 60)

    # Spot-check figures: a dead-lettered run, and the finished rate by status.
    [dead] = prometheus.query(
        f'max(waypost_runs{{status="dead_lettered", namespace="{NAMESPACE}"}})')
    assert float(dead["value"][1]) == 1
    statuses = {r["metric"]["status"] for r in prometheus.query(
        f'sum by (status) (increase(waypost_runs_finished_total{{namespace="{NAMESPACE}"}}[5m]))')}
    assert statuses == {"succeeded", "dead_lettered"}
