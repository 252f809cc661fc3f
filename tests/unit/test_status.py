"""What the operator writes into status is built from the status models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from waypost.controller import status as decide
from waypost.model import crd
from waypost.model.enums import FailureType, RunStatus
from waypost.model.run import ErrorInfo, Run
from waypost.model.taskrun import TaskReason, TaskRunReason, TaskRunStatus, TaskStatus

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _run(**overrides: Any) -> Run:
    fields: dict[str, Any] = {
        "id": "0192c2f0-7c1a-7b3e-9f42-5d1e8a6c4b2f", "namespace": "default", "task": "hello",
        "queue": "hello", "status": RunStatus.RUNNING, "priority": 0, "attempt": 2,
        "max_attempts": 3, "memory_bytes": 512 * 1024 * 1024, "trace_id": "ab" * 16,
        "source": "taskrun", "created_at": NOW, "started_at": NOW,
    }
    return Run(**{**fields, **overrides})


def _declared(kind: str) -> set[str]:
    build = crd.task_crd if kind == "Task" else crd.taskrun_crd
    root = build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return set(root["properties"]["status"]["properties"])


def test_taskrun_status_round_trips_through_the_model_and_the_schema() -> None:
    run = _run(status=RunStatus.RETRYING,
               error=ErrorInfo(type=FailureType.OOM, message="killed", exit_code=137))
    body = decide.taskrun_status(run, "step-1", None, now=NOW, generation=3)
    assert set(body) <= _declared("TaskRun")
    parsed = TaskRunStatus.model_validate(body)
    assert parsed.run_id == run.id and parsed.observed_generation == 3
    assert parsed.error is not None and parsed.error.oom_killed and parsed.error.exit_code == 137
    assert parsed.start_time == NOW
    assert body["startTime"] == "2026-11-29T12:00:00Z"
    cond = parsed.succeeded()
    assert cond is not None and cond.reason == TaskRunReason.RETRYING


def test_a_finished_run_clears_the_error_and_an_unknown_generation_is_left_alone() -> None:
    run = _run(status=RunStatus.SUCCEEDED, result={"ok": True}, finished_at=NOW,
               error=ErrorInfo(type=FailureType.ERROR, message="boom"))
    body = decide.taskrun_status(run, None, None, now=NOW)
    # None in a merge patch removes what an earlier failed attempt wrote.
    assert body["error"] is None and body["result"] == {"ok": True}
    assert "observedGeneration" not in body


@pytest.mark.parametrize("ok", [True, False])
def test_task_ready_and_figures_are_task_status(ok: bool) -> None:
    ready = decide.task_ready(ok, TaskReason.SYNCED if ok else TaskReason.INVALID, "m", None,
                              now=NOW, generation=None)
    figures = decide.task_figures(queued=4, running=1, next_schedule=NOW, last_schedule=None)
    for body in (ready, figures):
        assert set(body) <= _declared("Task")
        TaskStatus.model_validate(body)
    assert ready["observedGeneration"] is None
    assert figures == {"queueDepth": 4, "running": 1, "warmPods": 0,
                       "nextScheduleTime": "2026-11-29T12:00:00Z", "lastScheduleTime": None}


def test_not_enqueued_keeps_earlier_conditions_of_other_types() -> None:
    earlier = {"conditions": [{"type": "Other", "status": "True", "reason": "Fine",
                               "lastTransitionTime": "2026-11-28T00:00:00Z"}]}
    body = decide.taskrun_not_enqueued(TaskRunReason.TASK_NOT_FOUND, "no Task", earlier,
                                       now=NOW, generation=1)
    parsed = TaskRunStatus.model_validate(body)
    assert [c.type for c in parsed.conditions] == ["Other", "Succeeded"]
    assert set(body) == {"conditions", "observedGeneration"}
