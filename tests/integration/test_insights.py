"""Failure patterns, each produced by a real task (process backend, real Postgres), seen
in GET /v1/insights and the waypost_task_pattern metric; they clear when their evidence
leaves the window; a healthy workload flags nothing. The Task condition and Event are
checked on the cluster (e2e/test_insights.py) and by tests/unit/test_insight_status.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from examples import hello, ledger, orders
from tests.factories import settings, wait_for_status
from tests.integration import pattern_tasks
from waypost.backends.process import ProcessBackend
from waypost.engine import control, insights
from waypost.model.enums import RunStatus
from waypost.model.insights import InsightSettings
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone

FINAL = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD_LETTERED}
MIB = 1024 * 1024


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def get_text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, url
        return await resp.text()


async def waypost_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "waypost.cli", *args],
        env={**env, "WAYPOST_URL": url}, capture_output=True, text=True, timeout=120,
        check=False)


async def pattern_metric(url: str) -> set[tuple[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out = set()
    for line in text.splitlines():
        if line.startswith("waypost_task_pattern{") and line.endswith(" 1.0"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:
                                                            line.index("}")].split(","))
            out.add((labels["task"].strip('"'), labels["pattern"].strip('"')))
    return out


@pytest.fixture
async def stack(database_url: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Standalone]:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    thresholds = InsightSettings(
        interval_seconds=0.5, window_seconds=600, retry_storm_runs=3,
        checkpoint_gap_seconds=2.0, memory_limit_ratio=0.5, memory_min_attempts=3)
    app = await Standalone(
        settings(database_url, missed_heartbeats=10, insights=thresholds),
        ProcessBackend(max_parallel=3)).start()
    try:
        await app.register(pattern_tasks.slow_loop, pattern_tasks.stormy,
                           pattern_tasks.no_checkpoints, pattern_tasks.leaky, hello.hello)
        yield app
    finally:
        await app.stop()


async def test_each_pattern_is_flagged_by_its_task_and_clears(stack: Standalone) -> None:
    engine = stack.engine
    triggered = [
        ("slow-loop", {}), ("no-checkpoints", {"seconds": 3.5}),
        *[("stormy", {}) for _ in range(3)],
        *[("leaky", {"mb": mb}) for mb in (20, 45, 70, 90)],
        *[("hello", {"name": str(i)}) for i in range(3)],
    ]
    ids = []
    for name, payload in triggered:
        run, _ = await control.trigger(engine, "default", name, TriggerRequest(payload=payload))
        ids.append(run.id)
    for run_id in ids:
        await wait_for_status(engine, run_id, FINAL, timeout=180)

    want = {("slow-loop", "timeout_loop"), ("stormy", "retry_storm"),
            ("no-checkpoints", "checkpoint_gap"), ("leaky", "memory_growth")}
    deadline = time.monotonic() + 30
    while True:
        page = await get_json(f"{stack.url}/v1/insights")
        seen = {(i["task"], i["pattern"]) for i in page["items"]}
        if seen >= want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    # Exactly these: the healthy task (hello) is not flagged.
    assert seen == want, page
    items = {i["pattern"]: i for i in page["items"]}
    assert items["timeout_loop"]["reason"] == "TimeoutLoop"
    assert items["timeout_loop"]["figures"]["maxTimeoutsPerRun"] == 2
    assert items["timeout_loop"]["evidence"] == [ids[0]]
    storm = items["retry_storm"]
    assert storm["figures"]["failedRuns"] == 3 and storm["figures"]["failureRatio"] == 1.0
    assert storm["figures"]["byErrorType"] == {"error": 6}
    assert set(storm["evidence"]) == set(ids[2:5])
    gap = items["checkpoint_gap"]
    assert gap["figures"]["longestGapSeconds"] >= 3.5 and gap["evidence"] == [ids[1]]
    memory = items["memory_growth"]
    assert memory["figures"]["limitBytes"] == 128 * MIB
    assert memory["figures"]["maxBytes"] > 90 * MIB
    assert "of a 128 MiB limit" in memory["summary"]
    # Right-sizing: the leaky task's measured peaks, per step too, and a suggestion.
    [sizing] = [s for s in page["sizing"] if s["task"] == "leaky"]
    assert sizing["attempts"] == 4 and sizing["maxBytes"] > 90 * MIB
    assert sizing["suggestedLimitBytes"] >= sizing["p99Bytes"] * 1.25
    assert sizing["suggestedLimitBytes"] % MIB == 0
    [step] = sizing["steps"]
    assert step["step"] == "allocate" and step["maxBytes"] > 90 * MIB
    # The metric says the same, per task and pattern.
    assert await pattern_metric(stack.url) == want
    # The UI: a badge on the task's row and on its runs' pages (server-rendered).
    tasks_html = await get_text(f"{stack.url}/tasks")
    for _, pattern in want:
        assert f'data-pattern="{pattern}"' in tasks_html
    run_html = await get_text(f"{stack.url}/runs/{ids[2]}")
    assert 'data-pattern="retry_storm"' in run_html and ">RetryStorm<" in run_html
    assert "data-pattern" not in await get_text(f"{stack.url}/runs/{ids[-1]}")  # hello
    # And `waypost insights`, as a table and as JSON.
    table = await waypost_cli(stack.url, "insights")
    assert table.returncode == 0, table.stderr
    for reason in ("TimeoutLoop", "RetryStorm", "CheckpointGap", "MemoryGrowth", "SUGGESTED"):
        assert reason in table.stdout, table.stdout
    as_json = await waypost_cli(stack.url, "insights", "--task", "leaky", "-o", "json")
    assert [i["pattern"] for i in json.loads(as_json.stdout)["items"]] == ["memory_growth"]
    # One task, through the filter.
    only = await get_json(f"{stack.url}/v1/insights?task=stormy")
    assert [i["pattern"] for i in only["items"]] == ["retry_storm"]

    # The evidence leaves the window: every pattern clears (nothing was acted on).
    engine.settings = engine.settings.model_copy(update={
        "insights": engine.settings.insights.model_copy(update={"window_seconds": 0.001})})
    _, cleared = await insights.run_once(engine)
    assert {(t, p) for _, t, p in cleared} == want
    assert (await get_json(f"{stack.url}/v1/insights"))["items"] == []
    assert await pattern_metric(stack.url) == set()


@pytest.fixture
async def healthy_stack(database_url: str, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Standalone]:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    app = await Standalone(settings(database_url, missed_heartbeats=10),
                           ProcessBackend(max_parallel=3)).start()
    try:
        await app.register(orders.process_order, hello.hello)
        yield app
    finally:
        await app.stop()


async def test_a_healthy_workload_flags_nothing(healthy_stack: Standalone) -> None:
    # Default thresholds; orders that each fail their payment once and then succeed
    # (a normal retry), and greetings.
    engine = healthy_stack.engine
    ids = []
    for i in range(6):
        run, _ = await control.trigger(engine, "default", "process-order", TriggerRequest(
            payload={"orderId": f"o-{i}", "failPaymentOnAttempts": [1] if i % 2 else []}))
        ids.append(run.id)
        run, _ = await control.trigger(engine, "default", "hello",
                                       TriggerRequest(payload={"name": str(i)}))
        ids.append(run.id)
    for run_id in ids:
        await wait_for_status(engine, run_id, {RunStatus.SUCCEEDED}, timeout=180)
    found, _ = await insights.run_once(engine)
    assert found == []
    page = await get_json(f"{healthy_stack.url}/v1/insights")
    assert page["items"] == []
    # Memory was measured all the same: sizing hints for both tasks.
    assert {s["task"] for s in page["sizing"]} == {"process-order", "hello"}
