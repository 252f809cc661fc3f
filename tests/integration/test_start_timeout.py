"""Start-up is not heartbeat time (issue 16).

A claimed attempt's lease is the start timeout (process spawn, Pod scheduling,
image pull, importing the task) until its runner's first heartbeat; from then on
it is the heartbeat window. Before, the heartbeat window ran from the claim, and runners that took
longer than it to start on a busy machine were declared lost while healthy.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.factories import StalledBackend, settings, wait_for_status
from tests.integration.test_fencing import Runner, wait_until
from waypost.backends.process import ProcessBackend
from waypost.engine import attempts, control
from waypost.engine.credentials import AttemptIdentity
from waypost.engine.errors import AttemptSuperseded
from waypost.model.enums import FailureType, RunStatus
from waypost.model.run import ErrorInfo, Run, TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone
from waypost.store import runs

RUNNERS = 20


async def test_twenty_runners_starting_at_once_with_a_1s_heartbeat_are_not_lost(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    # 1 s heartbeat, 3 missed beats: a 3 s window, less than 20 Python runners take to
    # spawn and import at once on two shared cores.
    stack = await Standalone(
        settings(database_url, heartbeat_interval_seconds=1.0, missed_heartbeats=3),
        ProcessBackend(max_parallel=RUNNERS, log_dir=tmp_path / "logs"),
    ).start()
    try:
        spec = TaskSpec.model_validate({
            "entrypoint": "examples.flaky:sleepy", "timeout": {"maxDuration": "2m"},
            "retry": {"maxAttempts": 3, "backoff": {"initialSeconds": 0.1, "jitter": 0}},
        })
        await control.register_task(
            stack.engine, TaskDefinition(namespace="default", name="sleepy", spec=spec))
        started = time.monotonic()
        triggered = [
            (await control.trigger(stack.engine, "default", "sleepy",
                                   TriggerRequest(payload={"seconds": 3})))[0]
            for _ in range(RUNNERS)
        ]
        done = [await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED,
                                                             RunStatus.DEAD_LETTERED,
                                                             RunStatus.FAILED}, timeout=180)
                for run in triggered]
        elapsed = time.monotonic() - started
        lost = await db.fetchval(
            "SELECT count(*) FROM attempts WHERE error->>'type' = 'lost'")
        detail = await db.fetch(
            "SELECT a.run_id, a.attempt, a.started_at, a.finished_at, a.error->>'message' AS m "
            "FROM attempts a WHERE a.error->>'type' = 'lost'")
        assert lost == 0, f"{lost} healthy attempts were declared lost: {detail}"
        assert [r.status for r in done] == [RunStatus.SUCCEEDED] * RUNNERS
        assert [r.attempt for r in done] == [1] * RUNNERS
        assert all(r.result == {"slept": 3.0} for r in done)
        print(f"{RUNNERS} runners with a 1 s heartbeat: all succeeded on their first "
              f"attempt in {elapsed:.1f} s, none lost")
    finally:
        await stack.stop()


async def _launch_one(stack: Standalone, backend: StalledBackend, name: str, *,
                      max_attempts: int) -> Run:
    """Register a task, trigger one run and wait until the backend was handed it."""
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello",
                                    "retry": {"maxAttempts": max_attempts}})
    await control.register_task(
        stack.engine, TaskDefinition(namespace="default", name=name, spec=spec))
    run, _ = await control.trigger(stack.engine, "default", name, TriggerRequest())
    await wait_until(lambda: len(backend.launches) == 1)
    return run


async def test_an_attempt_that_never_starts_is_lost_after_the_start_timeout(
    database_url: str, db: asyncpg.Pool
) -> None:
    backend = StalledBackend()
    stack = await Standalone(
        settings(database_url, heartbeat_interval_seconds=0.2, missed_heartbeats=2,
                 poll_interval_seconds=0.1, start_timeout_seconds=2.0),
        backend,  # type: ignore[arg-type]
    ).start()
    try:
        run = await _launch_one(stack, backend, "stuck", max_attempts=1)
        claimed_at = time.monotonic()
        # Far past the 0.4 s heartbeat window, inside the 2 s start timeout: still running.
        await asyncio.sleep(1.0)
        assert (await control.get(stack.engine, uuid.UUID(run.id))).status == RunStatus.RUNNING
        done = await wait_for_status(stack.engine, run.id, {RunStatus.DEAD_LETTERED,
                                                            RunStatus.FAILED}, timeout=10)
        assert time.monotonic() - claimed_at >= 1.9
        assert done.error is not None and done.error.type == "lost"
        assert (uuid.UUID(run.id), "heartbeat lost") in backend.stopped
    finally:
        await stack.stop()


async def test_a_heartbeat_recorded_after_the_reaper_looked_keeps_the_attempt(
    database_url: str, db: asyncpg.Pool
) -> None:
    """The reaper finds an expired lease, then (the store being slow) a heartbeat is
    written before the failure is: the failure is refused and the attempt lives on.
    At load 40 this race lost a healthy attempt: its beats waited 4.6 s in the
    coordinator, the reaper's query ran meanwhile, and its failure landed after them."""
    backend = StalledBackend()
    # A window of hours: the dispatcher's own reaper never judges this attempt.
    stack = await Standalone(settings(database_url, heartbeat_interval_seconds=3600.0),
                             backend).start()  # type: ignore[arg-type]
    try:
        run = await _launch_one(stack, backend, "raced", max_attempts=2)
        launch = backend.launches[0]
        ident = AttemptIdentity(launch.run_id, launch.claim_token)
        lost = ErrorInfo(type=FailureType.LOST, message="presumed lost")
        expire = "UPDATE run_queue SET lease_expires_at = now() - interval '60 seconds' " \
                 "WHERE run_id = $1"
        await db.execute(expire, launch.run_id)
        assert [r for r, _, _ in await runs.expired_attempts(db, latency=30)] == [launch.run_id]
        async with aiohttp.ClientSession() as http:
            runner = Runner(http, stack.url, launch.credential)
            assert (await runner.call("POST", "heartbeat"))[0] == 200
        with pytest.raises(AttemptSuperseded):
            await attempts.fail(stack.engine, ident, lost, lost_after=30)
        kept = await control.get(stack.engine, uuid.UUID(run.id))
        assert kept.status == RunStatus.RUNNING and kept.attempt == 1
        # Without a heartbeat since, the same failure goes through.
        await db.execute(expire, launch.run_id)
        assert await attempts.fail(stack.engine, ident, lost, lost_after=30) == (
            RunStatus.RETRYING)
    finally:
        await stack.stop()


async def test_heartbeats_slow_to_record_do_not_lose_a_live_runner(
    database_url: str, db: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every heartbeat takes 2.5 s to be recorded (a saturated pool, a starved
    database), longer than the 1 s lease plus its 0.5 s allowance: the reaper counts
    that time as the coordinator's (engine.heartbeat_lag), and the runner, alive and
    beating all along, finishes its attempt."""
    record = runs.heartbeat

    async def slow_heartbeat(*args: Any, **kwargs: Any) -> bool | None:
        await asyncio.sleep(2.5)
        return await record(*args, **kwargs)

    monkeypatch.setattr(runs, "heartbeat", slow_heartbeat)
    stack = await Standalone(
        settings(database_url, heartbeat_interval_seconds=0.5, missed_heartbeats=2,
                 poll_interval_seconds=0.1),
        ProcessBackend(max_parallel=2, log_dir=tmp_path / "logs"),
    ).start()
    try:
        spec = TaskSpec.model_validate({"entrypoint": "examples.flaky:sleepy",
                                        "retry": {"maxAttempts": 2}})
        await control.register_task(
            stack.engine, TaskDefinition(namespace="default", name="slowbeat", spec=spec))
        run, _ = await control.trigger(stack.engine, "default", "slowbeat",
                                       TriggerRequest(payload={"seconds": 4}))
        done = await wait_for_status(stack.engine, run.id, {
            RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD_LETTERED}, timeout=120)
        lost = await db.fetchval(
            "SELECT count(*) FROM attempts WHERE run_id = $1 AND error->>'type' = 'lost'",
            uuid.UUID(run.id))
        assert (done.status, done.attempt, lost) == (RunStatus.SUCCEEDED, 1, 0)
        assert stack.engine.heartbeat_lag.seconds() >= 2.5
    finally:
        await stack.stop()
