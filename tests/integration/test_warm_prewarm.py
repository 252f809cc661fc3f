"""Pre-warming with the process backend: warm runners started ahead of demand, from
queue depth (runs waiting for their queue's concurrency limit) and from a task's
recent run rate (it keeps a runner after its idle TTL retired the last one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.factories import settings, wait_for_status
from tests.integration.test_warm_process import probe_spec, register, run, wait_until
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Standalone]:
    backend = ProcessBackend(max_parallel=4, warm=True, warm_max_total=4)
    app = await Standalone(settings(database_url), backend).start()
    try:
        yield app
    finally:
        await app.stop()


async def test_queue_depth_warms_runners_for_the_waiting_runs(
        stack: Standalone, db: asyncpg.Pool) -> None:
    backend: ProcessBackend = stack.backend
    # One at a time (the queue's limit), three runners allowed: two runs wait.
    await register(stack, "queued", probe_spec(queue={"maxConcurrency": 1},
                                               warmPool={"maxWarm": 3}))
    created = [(await control.trigger(stack.engine, "default", "queued",
                                      TriggerRequest(payload={"sleep": 2})))[0]
               for _ in range(3)]
    # While the first runs, the two waiting runs get a warm runner each.
    await wait_until(lambda: len(backend.warm_workers()) == 3, timeout=30)
    running = [await control.get(stack.engine, c.id) for c in created]
    assert sum(r.status == RunStatus.RUNNING for r in running) == 1
    idle_unused = await db.fetchval(
        "SELECT count(*) FROM warm_runners WHERE task = 'queued' AND state = 'idle' "
        "AND runs_served = 0")
    assert idle_unused == 2
    for c in created:
        await wait_for_status(stack.engine, c.id, {RunStatus.SUCCEEDED}, timeout=60)
    assert len(backend.warm_workers()) <= 3
    prewarmed = stack.engine.warm.stats.registry.get_sample_value(
        "waypost_warm_prewarmed_total", {"namespace": "default", "task": "queued"})
    assert prewarmed == 2


async def test_a_frequently_run_task_keeps_a_runner_past_its_idle_ttl(
        stack: Standalone, db: asyncpg.Pool) -> None:
    backend: ProcessBackend = stack.backend
    await register(stack, "frequent", probe_spec(warmPool={"idleTTLSeconds": 3}))
    first = await run(stack, "frequent")
    for _ in range(4):  # five runs in a few seconds: a rate far above 2 a minute
        await run(stack, "frequent")
    # Its runner retires after 3 s idle; another is started without a run.
    await wait_until(lambda: first.result["pid"] not in backend.warm_workers().values(),
                     timeout=20)
    await wait_until(lambda: len(backend.warm_workers()) == 1, timeout=20)
    [(runner_id, pid)] = backend.warm_workers().items()
    assert pid != first.result["pid"]
    # Its idle time starts with its first poll (the task imported), not at its start.
    deadline = asyncio.get_running_loop().time() + 30
    while not await db.fetchval(
            "SELECT idle_since > registered_at "
            "FROM warm_runners WHERE runner_id = $1", runner_id):
        assert asyncio.get_running_loop().time() < deadline, "the runner never polled"
        await asyncio.sleep(0.05)
    # It takes the next run (it may still be importing the task: the assignment waits).
    created, _ = await control.trigger(stack.engine, "default", "frequent",
                                       TriggerRequest(payload={}))
    done = await wait_for_status(stack.engine, created.id, {RunStatus.SUCCEEDED}, timeout=30)
    detail = await control.get(stack.engine, created.id, details=True)
    assert detail.attempts is not None
    assert [a.worker for a in detail.attempts] == [f"warm:{runner_id}"]
    assert done.result["pid"] == pid and done.result["count"] == 1
    # A task run once is not kept warm: its runner goes with its idle TTL.
    await register(stack, "rare", probe_spec(warmPool={"idleTTLSeconds": 1}))
    rare = await run(stack, "rare")
    await wait_until(lambda: rare.result["pid"] not in backend.warm_workers().values(),
                     timeout=20)
    await asyncio.sleep(2.5)  # two pre-warming passes
    tasks = await db.fetch("SELECT task FROM warm_runners WHERE state <> 'retired'")
    assert "rare" not in {t["task"] for t in tasks}
