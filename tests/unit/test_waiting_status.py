"""A TaskRun whose run waits: Succeeded stays Unknown with reason Waiting or Delayed, a
Waiting condition says for what and until when, and it turns False once the run goes on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from waypost.controller import status as decide
from waypost.model.enums import RunStatus
from waypost.model.run import Run, WaitInfo
from waypost.model.taskrun import WAITING, ConditionStatus, TaskRunStatus, find_condition

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)


def _run(**overrides: Any) -> Run:
    fields: dict[str, Any] = {
        "id": "0192c2f0-7c1a-7b3e-9f42-5d1e8a6c4b2f", "namespace": "default", "task": "nap",
        "queue": "nap", "status": RunStatus.WAITING, "priority": 0, "attempt": 1,
        "max_attempts": 3, "memory_bytes": 1 << 27, "trace_id": "ab" * 16,
        "source": "taskrun", "created_at": NOW, "started_at": NOW,
    }
    return Run(**{**fields, **overrides})


@pytest.mark.parametrize(("wait", "status", "reason", "outer"), [
    (WaitInfo(kind="sleep", step_key="nap", until=LATER), RunStatus.WAITING, "Sleeping",
     "Waiting"),
    (WaitInfo(kind="token", step_key="approval", token_id="t-1", until=LATER),
     RunStatus.WAITING, "WaitingForToken", "Waiting"),
    (WaitInfo(kind="children", step_key="fan-out", children=["c1", "c2"], children_active=1),
     RunStatus.WAITING, "WaitingForChildren", "Waiting"),
    (WaitInfo(kind="delay", until=LATER), RunStatus.DELAYED, "Delayed", "Delayed"),
])
def test_waiting_condition(wait: WaitInfo, status: RunStatus, reason: str, outer: str) -> None:
    body = decide.taskrun_status(_run(status=status, waiting=wait), None, None, now=NOW)
    parsed = TaskRunStatus.model_validate(body)
    succeeded = parsed.succeeded()
    assert succeeded is not None
    assert (succeeded.status, succeeded.reason) == (ConditionStatus.UNKNOWN, outer)
    waiting = find_condition(parsed.conditions, WAITING)
    assert waiting is not None
    assert (waiting.status, waiting.reason) == (ConditionStatus.TRUE, reason)
    assert parsed.waiting_until == wait.until
    assert parsed.waiting_for_token == wait.token_id
    assert parsed.waiting_for_children == wait.children


def test_resumed_run_turns_waiting_false_and_clears_the_fields() -> None:
    waiting = decide.taskrun_status(
        _run(waiting=WaitInfo(kind="token", step_key="a", token_id="t-1", until=LATER)),
        None, None, now=NOW)
    resumed = decide.taskrun_status(_run(status=RunStatus.RUNNING, attempt=2), None, waiting,
                                    now=LATER)
    assert resumed["waitingUntil"] is None and resumed["waitingForToken"] is None
    assert "waitingForChildren" not in resumed  # never set, nothing to clear
    cond = find_condition(TaskRunStatus.model_validate(resumed).conditions, WAITING)
    assert cond is not None
    assert (cond.status, cond.reason) == (ConditionStatus.FALSE, "Resumed")


def test_a_run_that_never_waited_has_no_waiting_condition() -> None:
    body = decide.taskrun_status(_run(status=RunStatus.RUNNING), None, None, now=NOW)
    assert find_condition(TaskRunStatus.model_validate(body).conditions, WAITING) is None
    assert "waitingUntil" not in body


def test_expired_is_a_failure() -> None:
    body = decide.taskrun_status(_run(status=RunStatus.EXPIRED, finished_at=NOW), None, None,
                                 now=NOW)
    cond = TaskRunStatus.model_validate(body).succeeded()
    assert cond is not None and (cond.status, cond.reason) == (ConditionStatus.FALSE, "Expired")
