"""A DLQ requeue runs the Task's current spec by default, or the trigger-time spec
with ``spec: original``; the run records which it runs.

A real ``Standalone`` (engine and coordinator over HTTP, no dispatcher) on the
real Postgres; the test claims attempts itself and reads what a backend would be
handed (``dispatcher.build_launch``): image and memory limit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.factories import api_only
from waypost.engine import control
from waypost.engine.dispatcher import build_launch
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone
from waypost.store import runs

MIB = 1024 * 1024


def definition(image: str, memory: str, generation: int) -> TaskDefinition:
    spec = TaskSpec.model_validate({
        "image": image, "entrypoint": "examples.flaky:always_fails",
        "resources": {"memory": memory}, "retry": {"maxAttempts": 1},
    })
    return TaskDefinition(namespace="default", name="fragile", spec=spec, generation=generation)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Standalone]:
    async with api_only(database_url) as app:
        yield app


async def dead_letter(stack: Standalone, run_id: uuid.UUID) -> tuple[str | None, int]:
    """Claim the run's next attempt, fail it for good; returns (image, memory) the
    attempt was launched with."""
    [claimed] = await runs.claim(stack.engine.pool, limit=1, lease_seconds=30, worker="t")
    assert claimed.run_id == run_id
    launch = build_launch(stack.engine, claimed)
    assert await runs.finish_failed(
        stack.engine.pool, claimed.run_id, claimed.claim_token,
        error={"type": "error", "message": "bug"}, status=RunStatus.DEAD_LETTERED)
    return launch.image, launch.memory_bytes


async def requeue(stack: Standalone, run_id: uuid.UUID, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
        f"{stack.url}/v1/runs/{run_id}/requeue", json=body
    ) as resp:
        return resp.status, await resp.json()


async def test_requeue_runs_the_current_spec_by_default_and_the_original_on_request(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    await control.register_task(stack.engine, definition("example/app:v1", "256Mi", 1))
    run, _ = await control.trigger(stack.engine, "default", "fragile", TriggerRequest())
    run_id = uuid.UUID(run.id)
    assert (run.spec_choice, run.spec_generation) == ("trigger", 1)
    assert await dead_letter(stack, run_id) == ("example/app:v1", 256 * MIB)

    # A fix is deployed: new image, more memory.
    await control.register_task(stack.engine, definition("example/app:v2", "1Gi", 2))

    status, body = await requeue(stack, run_id, None)  # no body: the default
    assert status == 200, body
    assert (body["status"], body["specChoice"], body["specGeneration"]) == ("queued", "current", 2)
    assert body["memoryBytes"] == 1024 * MIB
    assert await dead_letter(stack, run_id) == ("example/app:v2", 1024 * MIB)

    status, body = await requeue(stack, run_id, {"spec": "original"})
    assert status == 200, body
    assert (body["specChoice"], body["specGeneration"]) == ("original", 1)
    assert await dead_letter(stack, run_id) == ("example/app:v1", 256 * MIB)

    status, body = await requeue(stack, run_id, {"spec": "current"})
    assert status == 200 and body["specChoice"] == "current"
    assert await dead_letter(stack, run_id) == ("example/app:v2", 1024 * MIB)

    # Run detail shows the choice; each attempt ran the memory of its spec.
    detail = await control.get(stack.engine, run_id, details=True)
    assert (detail.spec_choice, detail.spec_generation) == ("current", 2)
    assert [a.memory_bytes for a in detail.attempts or []] == [
        256 * MIB, 1024 * MIB, 256 * MIB, 1024 * MIB]


async def test_requeue_refusals_name_the_problem(stack: Standalone, db: asyncpg.Pool) -> None:
    await control.register_task(stack.engine, definition("example/app:v1", "256Mi", 1))
    run, _ = await control.trigger(stack.engine, "default", "fragile", TriggerRequest())
    run_id = uuid.UUID(run.id)

    status, body = await requeue(stack, run_id, {"spec": "newest"})
    assert status == 400 and "spec" in body["error"]["message"], body
    status, body = await requeue(stack, run_id, {})
    assert status == 409 and "only dead-lettered or failed" in body["error"]["message"]

    await dead_letter(stack, run_id)
    await control.delete_task(stack.engine, "default", "fragile")
    status, body = await requeue(stack, run_id, {"spec": "current"})
    assert status == 409 and "no longer exists" in body["error"]["message"], body
    assert "spec original" in body["error"]["message"]
    assert (await control.get(stack.engine, run_id)).status == RunStatus.DEAD_LETTERED
    # The spec stored at trigger time still runs without its Task.
    status, body = await requeue(stack, run_id, {"spec": "original"})
    assert status == 200 and body["specChoice"] == "original", body
    assert await dead_letter(stack, run_id) == ("example/app:v1", 256 * MIB)
