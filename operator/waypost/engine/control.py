"""What users do with runs: trigger, read, cancel, bump, requeue."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from waypost.engine import encoding, scheduler, waits
from waypost.engine.core import Engine
from waypost.engine.cron import InvalidSchedule
from waypost.engine.errors import (
    IdempotencyConflict,
    InvalidState,
    InvalidValue,
    RunNotFound,
    UnknownTask,
)
from waypost.model import task as task_model
from waypost.model.enums import RequeueSpec, RunStatus
from waypost.model.run import BatchItem, Checkpoint, Run, TriggerRequest
from waypost.model.task import TaskDefinition
from waypost.sdk import tracing
from waypost.store import checkpoints, replays, runs, schedules, tasks


def parse_run_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidValue(f"{value!r} is not a run id (expected a UUID)") from None


async def register_task(engine: Engine, definition: TaskDefinition) -> list[InvalidSchedule]:
    """Store a Task and its schedules; returns the schedules that are malformed
    (stored but parked; the others work)."""
    async with engine.pool.acquire() as conn, conn.transaction():
        await tasks.upsert(conn, definition)
        invalid = await scheduler.sync_schedules(conn, definition, engine.clock.now())
    # Warm runners of an older spec (image, entrypoint, env, memory) retire.
    await engine.warm.spec_changed(definition.namespace, definition.name, definition.spec)
    return invalid


async def delete_task(engine: Engine, namespace: str, name: str) -> list[uuid.UUID]:
    """Forget a Task and cancel its waiting runs; running ones finish."""
    async with engine.pool.acquire() as conn, conn.transaction():
        await tasks.delete(conn, namespace, name)
        await schedules.delete_for_task(conn, namespace, name)
        return await runs.cancel_task_runs(conn, namespace, name)


async def trigger(
    engine: Engine,
    namespace: str,
    task: str,
    request: TriggerRequest,
    *,
    source: str = "api",
    replay_of: uuid.UUID | None = None,
    taskrun_name: str | None = None,
    traceparent: str | None = None,
) -> tuple[Run, bool]:
    """Queue a run. Returns the run and whether it is new (False: idempotent repeat).
    With a delay or runAt the run is ``delayed`` until then; with a ttl it ends
    ``expired`` when it has not started in time.
    With a valid W3C ``traceparent`` the run joins the caller's trace as a child of
    the caller's span; without one (or an invalid one) its trace starts here."""
    payload = encoding.encode_limited(
        request.payload, engine.settings.limits.payload_bytes, "payload"
    )
    parent = tracing.parse_traceparent(traceparent)
    if request.delay is not None or request.run_at is not None or request.ttl is not None:
        return await _trigger_later(engine, namespace, task, request, payload, source=source,
                                    taskrun_name=taskrun_name, parent=parent)
    run_id = uuid.uuid4()
    created = await runs.enqueue(
        engine.pool, namespace=namespace, task=task, run_id=run_id, payload=payload,
        priority=request.priority, idempotency_key=request.idempotency_key,
        concurrency_key=request.concurrency_key,
        trace_id=parent.trace_id if parent else secrets.token_hex(16),
        parent_span_id=parent.span_id if parent else None,
        parent_sampled=parent.sampled if parent else True,
        source=source, replay_of=replay_of, taskrun_name=taskrun_name,
    )
    if created is None:
        if request.idempotency_key is not None:
            holder = await runs.find_by_idempotency_key(
                engine.pool, namespace, task, request.idempotency_key, payload
            )
            if holder is not None:
                _check_same_request(request, holder)
                return await get(engine, holder.run_id), False
        raise UnknownTask(f"no task {task!r} in namespace {namespace!r}")
    engine.runs_ready()
    return created, True


async def _trigger_later(
    engine: Engine, namespace: str, task: str, request: TriggerRequest, payload: Any, *,
    source: str, taskrun_name: str | None, parent: tracing.TraceParent | None,
) -> tuple[Run, bool]:
    item = BatchItem(payload=request.payload, priority=request.priority,
                     idempotency_key=request.idempotency_key,
                     concurrency_key=request.concurrency_key, delay=request.delay,
                     run_at=request.run_at, ttl=request.ttl)
    run_id, created = await waits.trigger_one(engine, namespace, task, item, source=source,
                                              taskrun_name=taskrun_name, parent=parent)
    if not created and request.idempotency_key is not None:
        holder = await runs.find_by_idempotency_key(
            engine.pool, namespace, task, request.idempotency_key, payload)
        if holder is not None:
            _check_same_request(request, holder)
    return await get(engine, run_id), created


def _check_same_request(request: TriggerRequest, holder: runs.KeyHolder) -> None:
    """A key reused with other parameters is a client bug, not a retry: say so (as
    Stripe does) unless the client asked for the existing run whatever it holds.
    The priority is compared when the trigger gives one (a bump changes it)."""
    if request.idempotency_conflict == "returnExisting":
        return
    differ = []
    if not holder.same_payload:
        differ.append("payload")
    if request.priority is not None and request.priority != holder.priority:
        differ.append(f"priority ({request.priority}, the run has {holder.priority})")
    if request.concurrency_key != holder.concurrency_key:
        differ.append("concurrencyKey")
    if differ:
        raise IdempotencyConflict(
            f"idempotency key {request.idempotency_key!r} belongs to run {holder.run_id}, "
            f"triggered with a different {', '.join(differ)}; use a new key, or "
            '"idempotencyConflict": "returnExisting" to get that run',
            str(holder.run_id),
        )


async def trigger_many(
    engine: Engine, namespace: str, task: str, payloads: Sequence[Any], *,
    priority: int | None = None, source: str = "api",
) -> int:
    """Queue many runs of one task in one statement; returns how many were queued."""
    if not payloads:
        return 0
    limit = engine.settings.limits.payload_bytes
    encoded = [encoding.encode_limited(p, limit, f"payload[{i}]") for i, p in enumerate(payloads)]
    count = await runs.enqueue_bulk(
        engine.pool, namespace=namespace, task=task,
        run_ids=[uuid.uuid4() for _ in payloads], priorities=[priority] * len(payloads),
        payloads=encoded, idempotency_keys=[None] * len(payloads),
        concurrency_keys=[None] * len(payloads),
        trace_ids=[secrets.token_hex(16) for _ in payloads], source=source,
    )
    if count == 0 and await tasks.get(engine.pool, namespace, task) is None:
        raise UnknownTask(f"no task {task!r} in namespace {namespace!r}")
    return count


async def get(engine: Engine, run_id: uuid.UUID, *, details: bool = False,
              checkpoint_data: bool = True) -> Run:
    """A run; with ``details`` its attempts, checkpoints (without their data unless
    ``checkpoint_data``), replay record and replays."""
    run = await runs.get(engine.pool, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    run = await waits.describe(engine, run)
    if details:
        saved = (checkpoints.list_for_run if checkpoint_data else checkpoints.heads_for_run)
        run = run.model_copy(update={
            "attempts": await runs.list_attempts(engine.pool, run_id),
            "checkpoints": await saved(engine.pool, run_id),
            "replay": await replays.replay_of_run(engine.pool, run_id),
            "replays": await replays.replays_of_run(engine.pool, run_id),
        })
    return run


async def get_checkpoint(engine: Engine, run_id: uuid.UUID, key: str) -> Checkpoint:
    """One checkpoint of a run, with its data."""
    found = await checkpoints.get(engine.pool, run_id, key)
    if found is None:
        if await runs.get(engine.pool, run_id) is None:
            raise RunNotFound(f"no run {run_id}")
        raise RunNotFound(f"run {run_id} has no checkpoint {key!r}")
    return found


def id_prefix_range(prefix: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The lowest and highest run id that start with ``prefix`` (hex, dashes ignored),
    so a short id is a range scan of the primary key."""
    digits = prefix.replace("-", "").lower()
    if not 1 <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        raise InvalidValue(
            f"idPrefix must be 1-32 hexadecimal digits of a run id, got {prefix!r}")
    return (uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f")))


async def list_runs(
    engine: Engine, *, namespace: str | None = None, task: str | None = None,
    statuses: Sequence[RunStatus] | None = None, limit: int = 50, cursor: int | None = None,
    since: datetime | None = None, until: datetime | None = None, search: str | None = None,
    id_prefix: str | None = None,
) -> tuple[list[Run], int | None]:
    """A page of runs, newest first. ``since``/``until`` bound the creation time;
    ``search`` is a prefix of the run id or of the idempotency key."""
    if not 1 <= limit <= 1000:
        raise InvalidValue(f"limit must be between 1 and 1000, got {limit}")
    if search is not None and not 1 <= len(search) <= 256:
        raise InvalidValue(f"q must be 1 to 256 characters, got {len(search)}")
    id_range = None if id_prefix is None else id_prefix_range(id_prefix)
    found, next_cursor = await runs.list_runs(
        engine.pool, namespace=namespace, task=task, statuses=statuses, limit=limit,
        before_seq=cursor, created_after=since, created_before=until, search=search,
        id_range=id_range)
    return await waits.describe_many(engine, found), next_cursor


async def count_runs(
    engine: Engine, *, namespace: str | None = None, task: str | None = None,
    statuses: Sequence[RunStatus] | None = None, since: datetime | None = None,
    until: datetime | None = None, search: str | None = None, id_prefix: str | None = None,
) -> int:
    """How many runs :func:`list_runs` pages through with the same filters."""
    id_range = None if id_prefix is None else id_prefix_range(id_prefix)
    return await runs.count_runs(engine.pool, namespace=namespace, task=task,
                                 statuses=statuses, created_after=since, created_before=until,
                                 search=search, id_range=id_range)


async def _changed(engine: Engine, run_id: uuid.UUID, change: Callable[[Any], Awaitable[Any]],
                   refusal: str | Callable[[Run], str]) -> Run:
    """Apply ``change`` and read the run in the same transaction, so the answer shows
    the state the change left (a dispatcher may claim the run right after commit)."""
    async with engine.pool.acquire() as conn, conn.transaction():
        done = await change(conn)
        run = await runs.get(conn, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    if done is None or done is False:
        raise InvalidState(refusal(run) if callable(refusal)
                           else f"run {run_id} is {run.status}; {refusal}")
    return run


async def cancel(engine: Engine, run_id: uuid.UUID, reason: str = "cancelled by user", *,
                 children: str = "cancel") -> Run:
    """Cancel a run: a queued, delayed or waiting one ends at once; a running one is
    asked to stop and ends when its task stops or its grace period (the Task's
    ``spec.cancellation.gracePeriodSeconds``) runs out (see ``attempts``).

    Its active child runs (ctx.trigger_and_wait) are cancelled too, and theirs in
    turn, unless ``children`` is ``detach``: then they go on, and their results
    reach no one."""

    async def change(conn: Any) -> bool:
        if await runs.cancel(conn, run_id, reason,
                             task_model.DEFAULT_CANCEL_GRACE_SECONDS) is not None:
            return True
        return await waits.cancel_waiting(conn, run_id, reason)

    run = await _changed(engine, run_id, change, "only active runs can be cancelled")
    if children == "cancel":
        await _cancel_children(engine, run_id, f"its parent run {run_id} was cancelled")
    return await waits.describe(engine, run)


async def _cancel_children(engine: Engine, parent: uuid.UUID, reason: str) -> None:
    pending = [parent]
    while pending:
        for child in await waits.active_children(engine, pending.pop()):
            async with engine.pool.acquire() as conn, conn.transaction():
                if await runs.cancel(conn, child, reason,
                                     task_model.DEFAULT_CANCEL_GRACE_SECONDS) is None:
                    await waits.cancel_waiting(conn, child, reason)
            pending.append(child)


async def bump(engine: Engine, run_id: uuid.UUID) -> Run:
    return await _changed(engine, run_id, lambda conn: runs.bump(conn, run_id),
                          "only waiting runs can be bumped")


async def requeue(
    engine: Engine, run_id: uuid.UUID, spec: RequeueSpec = RequeueSpec.CURRENT
) -> Run:
    """Queue a dead-lettered or failed run again with a fresh retry budget. ``spec``:
    the Task's spec as it is now (``current``: a fix deployed since is what a requeue
    is for), or the spec stored when the run was triggered (``original``)."""

    def refusal(run: Run) -> str:
        if run.status in (RunStatus.DEAD_LETTERED, RunStatus.FAILED):
            return (f"run {run_id}: its Task {run.namespace}/{run.task} no longer exists, so "
                    "there is no current spec; requeue with spec original to run the spec "
                    "stored when the run was triggered")
        return f"run {run_id} is {run.status}; only dead-lettered or failed runs can be requeued"

    return await _changed(engine, run_id, lambda conn: runs.requeue(conn, run_id, spec),
                          refusal)


async def taskrun_runs_changed(
    engine: Engine, since: datetime, limit: int = 500
) -> list[tuple[Run, str | None]]:
    """Runs triggered by TaskRun objects that changed after ``since`` (status mirror)."""
    changed = await runs.taskrun_runs_changed(engine.pool, since, limit)
    described = await waits.describe_many(engine, [run for run, _ in changed])
    return [(run, checkpoint) for run, (_, checkpoint) in zip(described, changed, strict=True)]


async def task_summaries(engine: Engine) -> list[tasks.TaskSummary]:
    return await tasks.list_tasks(engine.pool)


async def failure_rates(engine: Engine, since: datetime) -> list[runs.FailureRate]:
    """Per task, runs finished since ``since`` and how many failed (the tasks page)."""
    return await runs.failure_rates(engine.pool, since)


async def scheduled_runs_without_taskrun(
    engine: Engine, limit: int = 100
) -> list[runs.ScheduledRun]:
    """Scheduled runs still waiting for their TaskRun object (operator mode)."""
    return await runs.scheduled_runs_without_taskrun(engine.pool, limit)


async def link_taskrun(engine: Engine, run_id: uuid.UUID, taskrun_name: str) -> bool:
    return await runs.link_taskrun(engine.pool, run_id, taskrun_name)
