"""An attempt the backend could not start because its control plane did not answer (the
Kubernetes API during an apiserver outage, while the leader still leads) is handed
back, not failed: the run is claimable again after a short delay and the attempt does
not count against its retry budget, so even a run with maxAttempts 1 succeeds. Any
other failure to start is still the attempt's failure (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from tests.factories import StalledBackend, settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control, dispatcher
from waypost.engine.backend import AttemptLaunch
from waypost.engine.errors import BackendUnavailable
from waypost.model.enums import RunStatus
from waypost.model.run import Run, TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone


class RefusingBackend(ProcessBackend):
    """A process backend whose first ``refusals`` starts fail with ``error``."""

    def __init__(self, error: Exception, refusals: int, log_dir: Path) -> None:
        super().__init__(max_parallel=2, log_dir=log_dir)
        self.error = error
        self.refusals = refusals

    async def start(self, launch: AttemptLaunch) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise self.error
        await super().start(launch)


async def _run_once(database_url: str, backend: ProcessBackend) -> tuple[Standalone, str]:
    stack = await Standalone(settings(database_url, poll_interval_seconds=0.2), backend).start()
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello",
                                    "retry": {"maxAttempts": 1}})
    await control.register_task(
        stack.engine, TaskDefinition(namespace="default", name="once", spec=spec))
    run, _ = await control.trigger(stack.engine, "default", "once",
                                   TriggerRequest(payload={"name": "outage"}))
    return stack, run.id


async def _run_to_the_end(database_url: str, backend: ProcessBackend) -> Run:
    stack, run_id = await _run_once(database_url, backend)
    try:
        return await wait_for_status(stack.engine, run_id, {
            RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD_LETTERED}, timeout=120)
    finally:
        await stack.stop()


async def test_a_start_the_api_did_not_answer_is_handed_back_and_not_counted(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    backend = RefusingBackend(
        BackendUnavailable("the Kubernetes API did not answer (MaxRetryError)"), 1, tmp_path)
    done = await _run_to_the_end(database_url, backend)
    assert done.status == RunStatus.SUCCEEDED, done
    rows = await db.fetch("SELECT attempt, status, error, started_at, finished_at "
                          "FROM attempts WHERE run_id = $1 ORDER BY attempt", done.id)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "succeeded")]
    error = json.loads(rows[0]["error"]) if isinstance(rows[0]["error"], str) \
        else rows[0]["error"]
    assert error["type"] == "lost"
    assert error["message"].startswith("not started: the Kubernetes API did not answer")
    run = await db.fetchrow("SELECT attempt, attempt_base FROM runs WHERE id = $1", done.id)
    assert (run["attempt"], run["attempt_base"]) == (2, 1)  # attempt 1 did not count
    # Claimable again only after the hand-back delay (both times from the database clock).
    gap = (rows[1]["started_at"] - rows[0]["finished_at"]).total_seconds()
    assert gap >= dispatcher.HAND_BACK_DELAY_SECONDS, gap


async def test_any_other_failure_to_start_is_the_attempts_failure(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    backend = RefusingBackend(RuntimeError("the Pod is invalid"), 1, tmp_path)
    done = await _run_to_the_end(database_url, backend)
    assert done.status in (RunStatus.FAILED, RunStatus.DEAD_LETTERED), done
    assert done.error is not None and done.error.message == (
        "the backend could not start it: the Pod is invalid")


class HangingBackend(StalledBackend):
    """Its start never returns, as a Kubernetes API call while the apiserver is away."""

    async def start(self, launch: AttemptLaunch) -> None:
        self.launches.append(launch)
        await asyncio.Event().wait()


async def test_a_start_still_hanging_when_the_engine_stops_is_handed_back(
    database_url: str, db: asyncpg.Pool
) -> None:
    """A leader stepping down cancels its dispatcher mid-start: the claim goes back to
    the queue at once, instead of holding its start timeout (and its queue's slot)."""
    backend = HangingBackend()
    stack = await Standalone(settings(database_url, poll_interval_seconds=0.2),
                             backend).start()  # type: ignore[arg-type]
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello",
                                    "retry": {"maxAttempts": 1}})
    await control.register_task(
        stack.engine, TaskDefinition(namespace="default", name="hang", spec=spec))
    run, _ = await control.trigger(stack.engine, "default", "hang", TriggerRequest())
    await backend.launched(run.id, timeout=60)
    await stack.stop()
    row = await db.fetchrow("SELECT r.status, r.attempt_base, q.state, a.error "
                            "FROM runs r JOIN run_queue q ON q.run_id = r.id "
                            "JOIN attempts a ON a.run_id = r.id WHERE r.id = $1", run.id)
    assert row is not None
    assert (row["status"], row["attempt_base"], row["state"]) == ("retrying", 1, "ready")
    error = json.loads(row["error"]) if isinstance(row["error"], str) else row["error"]
    assert error["message"] == (
        "not started: the engine stopped before the attempt was started")
