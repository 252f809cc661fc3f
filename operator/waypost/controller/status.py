"""Pure functions that decide what the operator writes into Task and TaskRun status.

Every status is built as its pydantic model (:class:`TaskRunStatus`,
:class:`TaskStatus`), the same models the CRD schemas are generated from, and
dumped with :func:`patch_body`: a field the schema does not declare cannot be
written (the API server would drop it silently).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from waypost.backends import pod_spec
from waypost.model.enums import FailureType
from waypost.model.insights import Pattern
from waypost.model.run import Run
from waypost.model.taskrun import (
    READY,
    WAITING,
    Condition,
    ConditionStatus,
    TaskReason,
    TaskRunError,
    TaskRunReason,
    TaskRunStatus,
    TaskStatus,
    WaitingReason,
    find_condition,
    set_condition,
    succeeded_condition,
)


def patch_body(status: TaskRunStatus | TaskStatus) -> dict[str, Any]:
    """``status`` as the body of a merge patch of ``.status``: camelCase JSON with
    every field that was set, ``None`` included (it clears what an earlier patch
    wrote, such as the error of a failed attempt once the run succeeds)."""
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _generation(generation: int | None) -> dict[str, Any]:
    # Only a known generation is written: None would clear the one already there.
    return {} if generation is None else {"observed_generation": generation}


def _conditions(raw: Any) -> list[Condition]:
    out: list[Condition] = []
    for item in raw or []:
        try:
            out.append(Condition.model_validate(item))
        except ValueError:
            continue  # not ours to fix: a condition we do not understand is replaced
    return out


def _message(run: Run, reason: TaskRunReason) -> str:
    if reason is TaskRunReason.SUCCEEDED:
        return f"succeeded on attempt {run.attempt}"
    if reason is TaskRunReason.RUNNING:
        return f"attempt {run.attempt} of {run.max_attempts} is running"
    if reason is TaskRunReason.RETRYING and run.error is not None:
        return f"attempt {run.attempt} failed ({run.error.type}): {run.error.message}; retrying"
    if reason is TaskRunReason.QUEUED:
        return "waiting in queue " + run.queue
    if reason in (TaskRunReason.WAITING, TaskRunReason.DELAYED) and run.waiting is not None:
        return _wait_message(run)
    if run.error is not None:
        return f"{run.error.type}: {run.error.message}"
    return str(reason)


def _wait_message(run: Run) -> str:
    wait = run.waiting
    assert wait is not None
    until = f" until {wait.until.isoformat()}" if wait.until is not None else ""
    if wait.kind == "delay":
        return f"delayed{until}"
    if wait.kind == "sleep":
        return f"sleeping at {wait.step_key!r}{until}"
    if wait.kind == "token":
        return f"waiting at {wait.step_key!r} for token {wait.token_id}{until}"
    return (f"waiting at {wait.step_key!r} for {wait.children_active} of "
            f"{len(wait.children or [])} child runs")


def _waiting(run: Run, conditions: list[Condition], current: dict[str, Any], *,
             now: datetime, generation: int | None) -> tuple[list[Condition], dict[str, Any]]:
    """The Waiting condition and fields: True with what the run waits for, False
    (Resumed) once a run that waited goes on; absent for a run that never waited."""
    wait = run.waiting
    if wait is None and find_condition(conditions, WAITING) is None:
        return conditions, {}
    if wait is None:
        condition = Condition(type=WAITING, status=ConditionStatus.FALSE,
                              reason=WaitingReason.RESUMED, message="the run does not wait",
                              last_transition_time=now, observed_generation=generation)
        # What an earlier patch wrote is cleared (None in a merge patch).
        cleared = dict(waiting_until=None, waiting_for_token=None, waiting_for_children=None)
        fields = {name: None for name, key in zip(
            cleared, ("waitingUntil", "waitingForToken", "waitingForChildren"), strict=True)
            if current.get(key) is not None}
        return set_condition(conditions, condition), fields
    condition = Condition(type=WAITING, status=ConditionStatus.TRUE,
                          reason=WaitingReason.of_wait(wait.kind), message=_wait_message(run),
                          last_transition_time=now, observed_generation=generation)
    return set_condition(conditions, condition), dict(
        waiting_until=wait.until, waiting_for_token=wait.token_id,
        waiting_for_children=wait.children)


def taskrun_status(
    run: Run, last_checkpoint: str | None, current: dict[str, Any] | None, *, now: datetime,
    generation: int | None = None,
) -> dict[str, Any]:
    """The TaskRun status that mirrors ``run``, as a JSON patch body for ``status``."""
    reason = TaskRunReason.from_run_status(run.status)
    conditions = set_condition(
        _conditions((current or {}).get("conditions")),
        succeeded_condition(reason, _message(run, reason), now=now, generation=generation),
    )
    conditions, waiting = _waiting(run, conditions, current or {}, now=now,
                                   generation=generation)
    error = None
    if run.error is not None and reason is not TaskRunReason.SUCCEEDED:
        error = TaskRunError(
            type=run.error.type, message=run.error.message[:32768],
            exit_code=run.error.exit_code, oom_killed=run.error.type == FailureType.OOM,
        )
    pod = None
    if run.attempt > 0:
        pod = pod_spec.pod_name_for(run.task, run.id, run.attempt)
    return patch_body(TaskRunStatus(
        conditions=conditions,
        run_id=run.id,
        attempt=run.attempt,
        start_time=run.started_at,
        completion_time=run.finished_at,
        last_checkpoint=last_checkpoint,
        result=run.result if reason is TaskRunReason.SUCCEEDED else None,
        error=error,
        pod_name=pod,
        trace_id=run.trace_id,
        **waiting,
        **_generation(generation),
    ))


def taskrun_not_enqueued(
    reason: TaskRunReason, message: str, current: dict[str, Any] | None, *, now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """Status of a TaskRun that could not be enqueued (missing Task, invalid input)."""
    conditions = set_condition(
        _conditions((current or {}).get("conditions")),
        succeeded_condition(reason, message, now=now, generation=generation),
    )
    return patch_body(TaskRunStatus(conditions=conditions, observed_generation=generation))


def task_ready(
    ok: bool, reason: TaskReason, message: str, current: dict[str, Any] | None, *,
    now: datetime, generation: int | None,
) -> dict[str, Any]:
    """A Task's ``Ready`` condition and observedGeneration."""
    condition = Condition(
        type=READY, status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason, message=message[:32768], last_transition_time=now,
        observed_generation=generation,
    )
    conditions = set_condition(_conditions((current or {}).get("conditions")), condition)
    return patch_body(TaskStatus(conditions=conditions, observed_generation=generation))


def task_figures(
    *, queued: int, running: int, next_schedule: datetime | None,
    last_schedule: datetime | None, warm_pods: int = 0,
) -> dict[str, Any]:
    """A Task's queue figures, idle warm Pods and schedule times (its conditions are
    left alone)."""
    return patch_body(TaskStatus(
        queue_depth=queued, running=running,
        warm_pods=warm_pods,
        next_schedule_time=next_schedule, last_schedule_time=last_schedule,
    ))


#: The Task condition that says a failure pattern holds (issue 11).
DEGRADED = "Degraded"
NO_PATTERNS = "NoFailurePatterns"
#: Which pattern's reason a condition shows when several hold.
PATTERN_ORDER = (Pattern.TIMEOUT_LOOP, Pattern.RETRY_STORM, Pattern.MEMORY_GROWTH,
                 Pattern.CHECKPOINT_GAP)


def task_degraded(
    patterns: dict[Pattern, str], current: dict[str, Any] | None, *, now: datetime,
) -> tuple[dict[str, Any], bool]:
    """A Task's ``Degraded`` condition for the failure patterns that hold (each with its
    summary): True with the first pattern's reason (all listed in the message), or
    False once none holds. Returns the status patch and whether it changes anything."""
    if patterns:
        first = next(p for p in PATTERN_ORDER if p in patterns)
        condition = Condition(
            type=DEGRADED, status=ConditionStatus.TRUE, reason=first.reason,
            message="; ".join(f"{p.reason}: {patterns[p]}" for p in PATTERN_ORDER
                              if p in patterns)[:32768],
            last_transition_time=now)
    else:
        condition = Condition(type=DEGRADED, status=ConditionStatus.FALSE, reason=NO_PATTERNS,
                              message="no failure pattern holds", last_transition_time=now)
    conditions = _conditions((current or {}).get("conditions"))
    old = next((c for c in conditions if c.type == DEGRADED), None)
    changed = old is None or (old.status, old.reason, old.message) != (
        condition.status, condition.reason, condition.message)
    if old is None and not patterns:
        changed = False  # nothing to say about a Task that never had a pattern
    return patch_body(TaskStatus(conditions=set_condition(conditions, condition))), changed
