"""Runs and their queue: enqueue, claim, finish, cancel, requeue, read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from waypost.model.enums import RequeueSpec, RunStatus, SpecChoice
from waypost.model.run import Attempt, Run
from waypost.store.pool import RawJson
from waypost.store.sql import bind, query


@dataclass(frozen=True)
class ClaimedAttempt:
    """An attempt the dispatcher just claimed, with what a backend needs to start it."""

    run_id: uuid.UUID
    attempt: int
    claim_token: int
    lease_expires_at: datetime
    namespace: str
    task: str
    # The task's spec as the run was triggered, as JSON text (claims of the same task
    # version carry the same text, so the dispatcher validates it once).
    spec_json: str
    memory_bytes: int
    trace_id: str
    attempt_base: int
    idempotency_key: str | None = None
    taskrun_name: str | None = None


@dataclass(frozen=True)
class CurrentAttempt:
    """The run behind a valid, current attempt credential."""

    run_id: uuid.UUID
    attempt: int
    claim_token: int
    namespace: str
    task: str
    spec: dict[str, Any]
    payload: Any
    memory_bytes: int
    trace_id: str
    idempotency_key: str | None
    attempt_base: int
    cancel_requested: bool = False
    # The trigger's caller's sampled flag; None when the run started its own trace.
    parent_sampled: bool | None = None


async def enqueue(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    namespace: str,
    task: str,
    run_id: uuid.UUID,
    payload: RawJson,
    priority: int | None,
    idempotency_key: str | None,
    concurrency_key: str | None,
    trace_id: str,
    source: str,
    replay_of: uuid.UUID | None = None,
    taskrun_name: str | None = None,
    parent_span_id: str | None = None,
    parent_sampled: bool = True,
) -> Run | None:
    """Insert the run and return it; None when nothing was inserted (unknown task or
    used key). ``parent_span_id`` and ``parent_sampled``: the caller's span and its
    sampled flag, for a trigger that carried a ``traceparent``."""
    row = await db.fetchrow(
        *bind("enqueue_run", namespace=namespace, task=task, run_id=run_id, priority=priority,
              payload=payload, idempotency_key=idempotency_key,
              concurrency_key=concurrency_key, trace_id=trace_id, source=source,
              replay_of=replay_of, taskrun_name=taskrun_name)
    )
    if row is not None and parent_span_id is not None:
        await set_parent_span(db, run_id, parent_span_id, parent_sampled)
    return None if row is None else _run(row)


async def set_parent_span(db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID,
                          parent_span_id: str, parent_sampled: bool) -> None:
    """Record the caller's span (and its sampled flag) of a run triggered with a
    ``traceparent``; the run's trace id is the caller's already."""
    await db.execute(*bind("set_parent_span", run_id=run_id, parent_span_id=parent_span_id,
                           parent_sampled=parent_sampled))


async def enqueue_bulk(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    namespace: str,
    task: str,
    run_ids: Sequence[uuid.UUID],
    priorities: Sequence[int | None],
    payloads: Sequence[RawJson],
    idempotency_keys: Sequence[str | None],
    concurrency_keys: Sequence[str | None],
    trace_ids: Sequence[str],
    source: str,
) -> int:
    """Insert many runs of one task in one statement; returns how many were new."""
    inserted: int = await db.fetchval(
        *bind("enqueue_runs_bulk", namespace=namespace, task=task, run_ids=list(run_ids),
              priorities=list(priorities), payloads=list(payloads),
              idempotency_keys=list(idempotency_keys), concurrency_keys=list(concurrency_keys),
              trace_ids=list(trace_ids), source=source)
    )
    return inserted


@dataclass(frozen=True)
class KeyHolder:
    """The run that holds an idempotency key, with what a repeated trigger is compared to."""

    run_id: uuid.UUID
    same_payload: bool
    priority: int
    concurrency_key: str | None


async def find_by_idempotency_key(
    db: asyncpg.Pool | asyncpg.Connection, namespace: str, task: str, key: str, payload: RawJson
) -> KeyHolder | None:
    row = await db.fetchrow(
        *bind("find_run_by_idempotency_key", namespace=namespace, task=task,
              idempotency_key=key, payload=payload)
    )
    if row is None:
        return None
    return KeyHolder(row["id"], bool(row["same_payload"]), row["priority"],
                     row["concurrency_key"])


Ack = tuple[uuid.UUID, int, RawJson]  # (run id, claim token, result)


async def claim(
    pool: asyncpg.Pool, *, limit: int, lease_seconds: float, worker: str,
    leader_epoch: int | None = None,
) -> list[ClaimedAttempt]:
    """Claim up to ``limit`` ready runs within every queue's concurrency limits.

    One call of the ``claim_runs`` function (migration 0005): one round trip and one
    READ COMMITTED transaction in which the locks of the queues with limits come first
    so that the claim statement, which takes a new snapshot, counts running runs that
    no other dispatcher can change before we commit; queues without limits are claimed
    row by row (SKIP LOCKED), by several claimers at once. With ``leader_epoch``,
    nothing is claimed unless that epoch is still the current one.
    """
    _, claimed = await ack_and_claim(pool, acks=(), limit=limit, lease_seconds=lease_seconds,
                                     worker=worker, leader_epoch=leader_epoch)
    return claimed


async def ack_and_claim(
    pool: asyncpg.Pool, *, acks: Sequence[Ack], limit: int, lease_seconds: float, worker: str,
    leader_epoch: int | None = None,
) -> tuple[list[uuid.UUID], list[ClaimedAttempt]]:
    """Complete ``acks`` and claim the next batch in one call: one round trip and one
    commit (one WAL flush) for a whole batch of acknowledgements and claims. Returns the runs whose
    completion was accepted (the others were superseded) and the claimed attempts."""
    rows = await pool.fetch(
        *bind("claim_runs", ack_run_ids=[a[0] for a in acks], ack_tokens=[a[1] for a in acks],
              ack_results=[a[2] for a in acks], limit=limit, lease_seconds=lease_seconds,
              worker=worker, leader_epoch=leader_epoch)
    )
    return [r["run_id"] for r in rows if r["acked"]], [
        ClaimedAttempt(
            run_id=r["run_id"], attempt=r["attempt"], claim_token=r["claim_token"],
            lease_expires_at=r["lease_expires_at"], namespace=r["namespace"], task=r["task"],
            spec_json=r["spec_json"], memory_bytes=r["memory_bytes"], trace_id=r["trace_id"],
            attempt_base=r["attempt_base"], idempotency_key=r["idempotency_key"],
            taskrun_name=r["taskrun_name"],
        )
        for r in rows
        if not r["acked"]
    ]


async def current_attempt(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int
) -> CurrentAttempt | None:
    r = await db.fetchrow(*bind("current_attempt", run_id=run_id, claim_token=claim_token))
    if r is None:
        return None
    return CurrentAttempt(
        run_id=r["run_id"], attempt=r["attempt"], claim_token=r["claim_token"],
        namespace=r["namespace"], task=r["task"], spec=r["spec"], payload=r["payload"],
        memory_bytes=r["memory_bytes"], trace_id=r["trace_id"],
        idempotency_key=r["idempotency_key"], attempt_base=r["attempt_base"],
        cancel_requested=r["cancel_requested"], parent_sampled=r["parent_sampled"],
    )


async def heartbeat(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int,
    lease_seconds: float,
) -> bool | None:
    """Extend the lease; None when the attempt is no longer current, else whether
    the run's cancellation was requested."""
    row = await db.fetchrow(*bind("heartbeat", run_id=run_id, claim_token=claim_token,
                                  lease_seconds=lease_seconds))
    return None if row is None else bool(row["cancel_requested"])


async def complete_many(
    db: asyncpg.Pool | asyncpg.Connection, acks: Sequence[Ack]
) -> list[uuid.UUID]:
    """Complete many attempts in one statement, each fenced on its token; returns the
    runs that were still current."""
    if not acks:
        return []
    rows = await db.fetch(*bind("complete_attempts", run_ids=[a[0] for a in acks],
                                claim_tokens=[a[1] for a in acks],
                                results=[a[2] for a in acks]))
    return [r["run_id"] for r in rows]


async def retry(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int, *,
    delay_seconds: float, error: dict[str, Any], memory_bytes: int,
    lost_after: float | None = None,
) -> bool:
    """Back to ready after a failure; False when stale (or, with ``lost_after``, when
    the lease is no longer over by that many seconds)."""
    row = await db.fetchrow(
        *bind("retry_attempt", run_id=run_id, claim_token=claim_token,
              delay_seconds=delay_seconds, error=error, memory_bytes=memory_bytes,
              lost_after=lost_after)
    )
    return row is not None


async def hand_over(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int, *,
    error: dict[str, Any], delay_seconds: float = 0.0,
) -> bool:
    """Requeue a run whose attempt the engine stopped at shutdown, or could not start
    (ready again after ``delay_seconds``), not counted; False when stale."""
    row = await db.fetchrow(
        *bind("hand_over_attempt", run_id=run_id, claim_token=claim_token, error=error,
              delay_seconds=delay_seconds))
    return row is not None


async def finish_failed(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int, *,
    error: dict[str, Any], status: RunStatus, lost_after: float | None = None,
) -> bool:
    """End the run failed or dead-lettered; False as :func:`retry`."""
    assert status in (RunStatus.FAILED, RunStatus.DEAD_LETTERED)
    row = await db.fetchrow(
        *bind("finish_failed_attempt", run_id=run_id, claim_token=claim_token, error=error,
              status=str(status), lost_after=lost_after)
    )
    return row is not None


async def expired_attempts(
    db: asyncpg.Pool | asyncpg.Connection, limit: int = 100, latency: float = 0.0
) -> list[tuple[uuid.UUID, int, bool]]:
    """(run id, claim token, cancellation requested) of attempts whose lease ran out
    (heartbeat leases ``latency`` seconds ago)."""
    rows = await db.fetch(*bind("expired_attempts", limit=limit, latency=latency))
    return [(r["run_id"], r["claim_token"], r["cancel_requested"]) for r in rows]


async def finish_cancelled(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int, how: str
) -> bool:
    """End a run whose cancellation was requested; False when its attempt is no longer
    current (or no cancellation was requested)."""
    row = await db.fetchrow(*bind("finish_cancelled_attempt", run_id=run_id,
                                  claim_token=claim_token, how=how))
    return row is not None


async def cancel(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, reason: str,
    default_grace_seconds: float,
) -> str | None:
    """Cancel an active run: at once when it waits, by request when it runs (see the
    query). Returns the hot state it was in, or None if it was not active."""
    row = await db.fetchrow(*bind("cancel_run", run_id=run_id, reason=reason,
                                  default_grace_seconds=default_grace_seconds))
    return None if row is None else str(row["state"])


async def cancel_task_runs(
    db: asyncpg.Pool | asyncpg.Connection, namespace: str, task: str
) -> list[uuid.UUID]:
    return [r["id"] for r in await db.fetch(*bind("cancel_task_runs", namespace=namespace,
                                                              task=task))]


async def bump(db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID) -> int | None:
    """Move a waiting run to the front of its queue; its new priority, or None."""
    row = await db.fetchrow(*bind("bump_run", run_id=run_id))
    return None if row is None else int(row["priority"])


async def requeue(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, spec: RequeueSpec
) -> bool:
    """Queue a dead-lettered or failed run again with the chosen spec; False when it
    is not requeueable (or ``current`` was asked and its Task no longer exists)."""
    row = await db.fetchrow(*bind("requeue_run", run_id=run_id, spec_choice=str(spec)))
    return row is not None


def _run(r: asyncpg.Record) -> Run:
    return Run(
        id=str(r["id"]), namespace=r["namespace"], task=r["task"], queue=r["queue"],
        status=RunStatus(r["status"]), priority=r["priority"], attempt=r["attempt"],
        max_attempts=(r["max_attempts"] or 1) + r["attempt_base"],
        payload=r["payload"], result=r["result"], error=r["error"],
        idempotency_key=r["idempotency_key"], concurrency_key=r["concurrency_key"],
        memory_bytes=r["memory_bytes"], trace_id=r["trace_id"],
        replay_of=str(r["replay_of"]) if r["replay_of"] else None, source=r["source"],
        created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"],
        updated_at=r["updated_at"], taskrun_name=r["taskrun_name"],
        spec_choice=SpecChoice(r["spec_choice"]), spec_generation=r["spec_generation"],
        parent_run_id=str(r["parent_run_id"]) if r.get("parent_run_id") else None,
    )


async def get(db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID) -> Run | None:
    r = await db.fetchrow(*bind("get_run", run_id=run_id))
    return None if r is None else _run(r)


async def list_runs(
    db: asyncpg.Pool | asyncpg.Connection, *, namespace: str | None = None,
    task: str | None = None, statuses: Sequence[RunStatus] | None = None, limit: int = 50,
    before_seq: int | None = None, created_after: datetime | None = None,
    created_before: datetime | None = None, search: str | None = None,
    id_range: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> tuple[list[Run], int | None]:
    """A page of runs, newest first, and the cursor of the next page. ``search`` is a
    prefix of the run id or of the idempotency key; ``id_range`` keeps the runs whose
    id lies between its bounds (a short id's prefix)."""
    low, high = id_range or (None, None)
    rows = await db.fetch(
        *bind("list_runs", namespace=namespace, task=task,
              statuses=[str(s) for s in statuses] if statuses else None, limit=limit,
              before_seq=before_seq, created_after=created_after,
              created_before=created_before, search=search, id_low=low, id_high=high)
    )
    cursor = rows[-1]["seq"] if len(rows) == limit else None
    return [_run(r) for r in rows], cursor


async def count_runs(
    db: asyncpg.Pool | asyncpg.Connection, *, namespace: str | None = None,
    task: str | None = None, statuses: Sequence[RunStatus] | None = None,
    created_after: datetime | None = None, created_before: datetime | None = None,
    search: str | None = None, id_range: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> int:
    """How many runs match the filters of :func:`list_runs`."""
    low, high = id_range or (None, None)
    total: int = await db.fetchval(
        *bind("count_runs", namespace=namespace, task=task,
              statuses=[str(s) for s in statuses] if statuses else None,
              created_after=created_after, created_before=created_before, search=search,
              id_low=low, id_high=high)
    )
    return total


async def list_attempts(db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID) -> list[Attempt]:
    rows = await db.fetch(*bind("list_attempts", run_id=run_id))
    return [
        Attempt(
            attempt=r["attempt"], status=r["status"], memory_bytes=r["memory_bytes"],
            worker=r["worker"], error=r["error"], started_at=r["started_at"],
            finished_at=r["finished_at"],
        )
        for r in rows
    ]


async def running_counts(
    db: asyncpg.Pool | asyncpg.Connection,
) -> dict[tuple[str, str, str | None], int]:
    """Running attempts by (namespace, queue, concurrency key)."""
    rows = await db.fetch(query("count_running"))
    return {(r["namespace"], r["queue"], r["concurrency_key"]): r["running"] for r in rows}


async def queue_depths(
    db: asyncpg.Pool | asyncpg.Connection,
) -> dict[tuple[str, str], tuple[int, int]]:
    """(ready, running) by (namespace, queue)."""
    rows = await db.fetch(query("queue_depths"))
    return {(r["namespace"], r["queue"]): (r["ready"], r["running"]) for r in rows}


async def status_counts(db: asyncpg.Pool | asyncpg.Connection) -> dict[str, int]:
    return {r["status"]: r["n"] for r in await db.fetch(query("status_counts"))}


async def taskrun_runs_changed(
    db: asyncpg.Pool | asyncpg.Connection, since: datetime, limit: int = 500
) -> list[tuple[Run, str | None]]:
    """Runs of TaskRun objects changed after ``since``, with their latest checkpoint key."""
    rows = await db.fetch(*bind("taskrun_runs_changed", since=since, limit=limit))
    return [(_run(r), r["last_checkpoint"]) for r in rows]


@dataclass(frozen=True)
class ScheduledRun:
    id: uuid.UUID
    namespace: str
    task: str
    payload: Any
    idempotency_key: str | None
    created_at: datetime


async def scheduled_runs_without_taskrun(
    db: asyncpg.Pool | asyncpg.Connection, limit: int = 100
) -> list[ScheduledRun]:
    rows = await db.fetch(*bind("scheduled_runs_without_taskrun", limit=limit))
    return [ScheduledRun(r["id"], r["namespace"], r["task"], r["payload"], r["idempotency_key"],
                         r["created_at"]) for r in rows]


async def link_taskrun(db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID,
                       taskrun_name: str) -> bool:
    return await db.fetchrow(*bind("link_taskrun", run_id=run_id,
                                        taskrun_name=taskrun_name)) is not None


@dataclass(frozen=True)
class FailureRate:
    """Runs of one task that finished in a window, and how many of them failed."""

    namespace: str
    task: str
    finished: int
    failed: int


async def failure_rates(
    db: asyncpg.Pool | asyncpg.Connection, since: datetime
) -> list[FailureRate]:
    rows = await db.fetch(*bind("task_failure_rates", since=since))
    return [FailureRate(r["namespace"], r["task"], r["finished"], r["failed"]) for r in rows]


@dataclass(frozen=True)
class BulkSelection:
    """The runs a bulk action looks at (see the bulk_candidates query)."""

    statuses: Sequence[RunStatus]
    namespace: str | None = None
    task: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error_type: str | None = None
    exclude_key_prefix: str | None = None


def _selection(sel: BulkSelection) -> dict[str, Any]:
    return {"namespace": sel.namespace, "task": sel.task,
            "statuses": [str(s) for s in sel.statuses], "since": sel.since,
            "until": sel.until, "error_type": sel.error_type,
            "exclude_key_prefix": sel.exclude_key_prefix}


async def bulk_candidates(
    db: asyncpg.Pool | asyncpg.Connection, sel: BulkSelection, *, before_seq: int | None,
    limit: int,
) -> list[tuple[uuid.UUID, int]]:
    """A batch of (run id, seq), newest first, older than ``before_seq``."""
    rows = await db.fetch(*bind("bulk_candidates", **_selection(sel),
                                before_seq=before_seq, limit=limit))
    return [(r["id"], r["seq"]) for r in rows]


async def bulk_count(db: asyncpg.Pool | asyncpg.Connection, sel: BulkSelection) -> int:
    n: int = await db.fetchval(*bind("bulk_count", **_selection(sel)))
    return n


async def list_children(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, limit: int = 1000
) -> list[Run]:
    """The runs started by ``run_id`` (ctx.trigger_and_wait), oldest first."""
    return [_run(r) for r in await db.fetch(*bind("list_children", run_id=run_id,
                                                  limit=limit))]
