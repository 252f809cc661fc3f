"""Cancelling a running run reaches its task (process backend, real runners).

A cancelled run's runner hears of it at its next heartbeat; the task sees
``ctx.cancelled`` (or RunCancelled at its next step); the runner reports the
attempt cancelled and exits. A task that never looks is killed when the Task's
grace period runs out. Either way the run ends ``cancelled`` once, its process
is gone, and no later write of that attempt is accepted.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from examples import cancellable
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.sdk import protocol
from waypost.standalone import Standalone

GRACE = 4


@pytest.fixture
async def stack(database_url: str, tmp_path: Path) -> AsyncIterator[Standalone]:
    backend = ProcessBackend(max_parallel=3, log_dir=tmp_path)
    app = await Standalone(
        settings(database_url, heartbeat_interval_seconds=0.5), backend
    ).start()
    try:
        for fn in (cancellable.cancellable_loop, cancellable.stuck_async,
                   cancellable.stuck_sync):
            spec = TaskSpec.model_validate({
                "entrypoint": f"examples.cancellable:{fn.__name__}",
                "cancellation": {"gracePeriodSeconds": GRACE},
            })
            await control.register_task(app.engine, TaskDefinition(
                namespace="default", name=fn.__name__.replace("_", "-"), spec=spec))
        yield app
    finally:
        await app.stop()


async def _running_pid(stack: Standalone, run_id: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = await control.get(stack.engine, uuid.UUID(run_id), details=True)
        for checkpoint in run.checkpoints or []:
            if checkpoint.key == "pid":
                return int(checkpoint.data)
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never recorded its process id")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.parametrize(("task", "how"), [
    ("cancellable-loop", "the task stopped"),
    ("stuck-sync", "the task was interrupted; the runner exited"),
    ("stuck-async", "the grace period ran out; the attempt was killed"),
])
async def test_cancelling_a_running_run_stops_its_task(
    stack: Standalone, db: asyncpg.Pool, task: str, how: str
) -> None:
    run, _ = await control.trigger(stack.engine, "default", task, TriggerRequest())
    pid = await _running_pid(stack, run.id)
    assert _alive(pid)
    row = await db.fetchrow("SELECT claim_token FROM run_queue WHERE run_id = $1",
                            uuid.UUID(run.id))
    token = row["claim_token"]

    cancelled_at = time.monotonic()
    requested = await control.cancel(stack.engine, uuid.UUID(run.id), "cancelled by a test")
    assert requested.status is RunStatus.RUNNING  # asked, not yet ended

    done = await wait_for_status(stack.engine, run.id, {RunStatus.CANCELLED},
                                 timeout=GRACE + 10)
    ended_in = time.monotonic() - cancelled_at
    assert ended_in <= GRACE + 2, f"ended {ended_in:.1f} s after the cancellation"
    assert done.error is not None and done.error.message == f"cancelled by a test: {how}"
    assert done.attempts is not None and [a.status for a in done.attempts] == ["cancelled"]
    assert done.result is None

    # The process is gone (reaped by the backend) within the same bound.
    while _alive(pid) and time.monotonic() - cancelled_at <= GRACE + 2:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert not _alive(pid), "the runner process outlived the grace period"

    # No later write of that attempt is accepted.
    credential = stack.engine.signer.issue(uuid.UUID(run.id), token)
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {credential}"}
    ) as http:
        for path, body in ((protocol.PATH_HEARTBEAT, {}),
                           (protocol.PATH_CHECKPOINTS, {"key": "late", "data": 1}),
                           (protocol.PATH_COMPLETE, {"result": 1}),
                           (protocol.PATH_FAIL, {"error": {"message": "late"}}),
                           (protocol.PATH_CANCELLED, {})):
            async with http.post(f"{stack.url}{path}", json=body) as resp:
                assert resp.status == 409, (path, await resp.text())

    # Exactly one terminal transition: the run and its attempt ended once.
    await asyncio.sleep(1)
    final = await control.get(stack.engine, uuid.UUID(run.id), details=True)
    assert final.status is RunStatus.CANCELLED
    assert final.finished_at == done.finished_at
    assert [(a.status, a.finished_at) for a in final.attempts or []] == [
        (a.status, a.finished_at) for a in done.attempts]
    assert await db.fetchval("SELECT count(*) FROM run_queue WHERE run_id = $1",
                             uuid.UUID(run.id)) == 0


