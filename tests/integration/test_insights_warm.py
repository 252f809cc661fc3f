"""Memory growth across warm starts as a failure pattern (process backend's warm
runners, real subprocesses, real Postgres).

``examples.warm:probe`` with ``grow_mb`` keeps that much more memory in its module
on every run, as task code that caches without bound does. Its warm runner's
resident memory after a run climbs from run to run until the pool recycles it
(``warm_memory_growth_mib``); the leader's insights pass flags the task's
``memory_growth`` with the recycled runner and the runs it served as evidence. The
same code without the leak, run as often in a warm runner, is not flagged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control, insights
from waypost.model.enums import RunStatus
from waypost.model.insights import InsightSettings
from waypost.model.run import TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone

MIB = 1024 * 1024
GROWTH_LIMIT_MIB = 20


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Standalone]:
    backend = ProcessBackend(max_parallel=2, warm=True, warm_max_total=3,
                             memory_poll_seconds=0.02)
    app = await Standalone(settings(
        database_url, warm_memory_growth_mib=GROWTH_LIMIT_MIB,
        insights=InsightSettings(interval_seconds=0.5, window_seconds=600)), backend).start()
    try:
        for name in ("leaky-warm", "steady-warm"):
            spec = TaskSpec.model_validate({"entrypoint": "examples.warm:probe",
                                            "resources": {"memory": "256Mi"}})
            await control.register_task(app.engine, TaskDefinition(
                namespace="default", name=name, spec=spec))
        yield app
    finally:
        await app.stop()


async def run(stack: Standalone, task: str, payload: Any) -> dict[str, Any]:
    created, _ = await control.trigger(stack.engine, "default", task,
                                       TriggerRequest(payload=payload))
    done = await wait_for_status(stack.engine, created.id, {RunStatus.SUCCEEDED}, timeout=120)
    result: dict[str, Any] = done.result
    return {**result, "id": str(created.id)}


async def test_rss_growing_across_warm_starts_is_flagged_and_clears(
        stack: Standalone) -> None:
    async def flagged() -> dict[tuple[str, str], Any]:
        return {(i.task, i.pattern): i for i in (await insights.page(stack.engine)).items}

    # One at a time, so that a warm runner serves them while it lasts: its third run
    # takes it past the 20 MiB growth limit. Runs go on (at most 12) until the pattern
    # shows: a run that found no idle runner on a loaded machine starts a new one.
    leaky: list[dict[str, Any]] = []
    while len(leaky) < 12 and ("leaky-warm", "memory_growth") not in await flagged():
        leaky.append(await run(stack, "leaky-warm", {"grow_mb": 15}))
    # The same code without the leak, run as often.
    steady = [await run(stack, "steady-warm", {}) for _ in leaky]
    # Warm runners served them: some process ran more than one of the leaky runs.
    assert max(r["count"] for r in leaky) >= 2, leaky

    deadline = time.monotonic() + 60
    while True:
        found = await flagged()
        if ("leaky-warm", "memory_growth") in found or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert ("leaky-warm", "memory_growth") in found, (found, leaky)
    item = found[("leaky-warm", "memory_growth")]
    assert item.reason == "MemoryGrowth"
    assert item.figures["warmRunnersRecycled"] >= 1
    assert item.figures["warmGrowthBytes"] > GROWTH_LIMIT_MIB * MIB
    assert item.figures["warmRunsServed"] >= 2
    assert "across warm starts" in item.summary
    # The evidence: runs the recycled runner served.
    assert item.evidence and set(item.evidence) <= {r["id"] for r in leaky}, item.evidence
    # The same code without the leak: no pattern, in a pass made after all its runs.
    holding, _ = await insights.run_once(stack.engine)
    assert not [f for f in holding if f.task == "steady-warm"], (steady, holding)

    # Its evidence leaves the window: the pattern clears (the pool's recycling is its
    # own; nothing here acted on the pattern).
    stack.engine.settings = stack.engine.settings.model_copy(update={
        "insights": stack.engine.settings.insights.model_copy(update={
            "window_seconds": 0.001})})
    _, cleared = await insights.run_once(stack.engine)
    assert ("default", "leaky-warm", "memory_growth") in cleared
