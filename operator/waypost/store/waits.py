"""The waiting set (run_waits), delayed runs, TTLs, wait tokens and batch enqueues."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from waypost.store.pool import RawJson
from waypost.store.sql import bind, query

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection



@dataclass(frozen=True)
class BatchRow:
    """One item of a batch enqueue (see the enqueue_runs_batch query)."""

    run_id: uuid.UUID
    payload: RawJson
    trace_id: str
    priority: int | None = None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    run_at: datetime | None = None
    expires_at: datetime | None = None


async def enqueue_batch(
    db: Db, *, namespace: str, task: str, rows: Sequence[BatchRow], source: str,
    parent_run_id: uuid.UUID | None = None, taskrun_name: str | None = None,
) -> dict[uuid.UUID, str]:
    """Insert the runs in one statement; {run id: status} of those that are new."""
    found = await db.fetch(*bind(
        "enqueue_runs_batch", namespace=namespace, task=task,
        run_ids=[r.run_id for r in rows], priorities=[r.priority for r in rows],
        payloads=[r.payload for r in rows], idempotency_keys=[r.idempotency_key for r in rows],
        concurrency_keys=[r.concurrency_key for r in rows],
        trace_ids=[r.trace_id for r in rows], run_ats=[r.run_at for r in rows],
        expires_ats=[r.expires_at for r in rows], source=source,
        parent_run_id=parent_run_id, taskrun_name=taskrun_name))
    return {r["id"]: r["status"] for r in found}


async def runs_by_idempotency_keys(
    db: Db, namespace: str, task: str, keys: Sequence[str]
) -> dict[str, tuple[uuid.UUID, str]]:
    """{key: (run id, status)} of the runs that hold ``keys``."""
    rows = await db.fetch(*bind("runs_by_idempotency_keys", namespace=namespace, task=task,
                                idempotency_keys=list(keys)))
    return {r["idempotency_key"]: (r["id"], r["status"]) for r in rows}


async def suspend(
    db: Db, run_id: uuid.UUID, claim_token: int, *, kind: str, step_key: str | None,
    due_at: datetime | None, until: datetime | None = None,
    token_id: uuid.UUID | None = None, child_ids: Sequence[uuid.UUID] | None = None,
) -> bool:
    """End the current attempt as suspended and park the run; False when the attempt
    is no longer current (or its run's cancellation was requested)."""
    row = await db.fetchrow(*bind(
        "suspend_attempt", run_id=run_id, claim_token=claim_token, kind=kind,
        step_key=step_key, due_at=due_at, until=until, token_id=token_id,
        child_ids=list(child_ids) if child_ids is not None else None))
    return row is not None


@dataclass(frozen=True)
class WakeResult:
    woken: int
    rechecked: int


async def wake_due(pool: asyncpg.Pool, *, limit: int, recheck_seconds: float,
                   leader_epoch: int | None = None) -> WakeResult:
    """Resume up to ``limit`` due waits. With ``leader_epoch``, nothing happens unless
    that epoch is still the current one (a deposed leader wakes nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(query("waker_without_jit"))
        row = await conn.fetchrow(*bind("wake_due_runs", limit=limit,
                                        recheck_seconds=recheck_seconds,
                                        leader_epoch=leader_epoch))
    assert row is not None
    return WakeResult(row["woken"], row["rechecked"])


async def expire_due(pool: asyncpg.Pool, *, limit: int,
                     leader_epoch: int | None = None) -> list[uuid.UUID]:
    """Expire up to ``limit`` runs past their ttl; fenced on ``leader_epoch`` as
    :func:`wake_due` is."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(query("waker_without_jit"))
        rows = await conn.fetch(*bind("expire_runs", limit=limit, leader_epoch=leader_epoch))
    return [r["id"] for r in rows]


async def next_due(db: Db) -> tuple[datetime | None, datetime]:
    """(the earliest wait or TTL, or None; the database's now)."""
    row = await db.fetchrow(query("next_due"))
    assert row is not None
    return row["next_due"], row["now"]


async def reschedule(db: Db, run_id: uuid.UUID, run_at: datetime) -> bool:
    return await db.fetchrow(*bind("reschedule_run", run_id=run_id, run_at=run_at)) is not None


async def cancel_waiting(db: Db, run_id: uuid.UUID, reason: str) -> bool:
    return await db.fetchrow(*bind("cancel_waiting_run", run_id=run_id,
                                   reason=reason)) is not None


async def active_children(db: Db, run_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["id"] for r in await db.fetch(*bind("active_children", run_id=run_id))]


@dataclass(frozen=True)
class Wait:
    """A row of the waiting set, with what it takes to describe it."""

    run_id: uuid.UUID
    kind: str
    step_key: str | None
    due_at: datetime | None
    until: datetime | None
    token_id: uuid.UUID | None
    child_ids: list[uuid.UUID] | None
    token_timeout_at: datetime | None
    children_active: int


async def waits_of(db: Db, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Wait]:
    if not run_ids:
        return {}
    rows = await db.fetch(*bind("waits_of_runs", run_ids=list(run_ids)))
    return {r["run_id"]: Wait(r["run_id"], r["kind"], r["step_key"], r["due_at"], r["until"],
                              r["token_id"], r["child_ids"], r["token_timeout_at"],
                              r["children_active"]) for r in rows}


async def parents_of(db: Db, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    if not run_ids:
        return {}
    rows = await db.fetch(*bind("parents_of_runs", run_ids=list(run_ids)))
    return {r["id"]: r["parent_run_id"] for r in rows}


@dataclass(frozen=True)
class ChildOutcome:
    id: uuid.UUID
    task: str
    status: str
    result: Any
    error: Any


async def child_outcomes(db: Db, child_ids: Sequence[uuid.UUID]) -> list[ChildOutcome]:
    rows = await db.fetch(*bind("child_outcomes", child_ids=list(child_ids)))
    return [ChildOutcome(r["id"], r["task"], r["status"], r["result"], r["error"])
            for r in rows]


# --- tokens -----------------------------------------------------------------------

@dataclass(frozen=True)
class TokenRow:
    id: uuid.UUID
    namespace: str
    run_id: uuid.UUID | None
    idempotency_key: str | None
    secret: str
    status: str
    data: Any
    timeout_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    waiting_runs: list[uuid.UUID]


def _token(r: asyncpg.Record) -> TokenRow:
    return TokenRow(r["id"], r["namespace"], r["run_id"], r["idempotency_key"], r["secret"],
                    r["status"], r["data"], r["timeout_at"], r["created_at"],
                    r["completed_at"], list(r["waiting_runs"] or []))


async def create_token(
    db: Db, *, token_id: uuid.UUID, namespace: str, run_id: uuid.UUID | None, scope: str,
    idempotency_key: str | None, secret: str, timeout_seconds: float | None,
) -> TokenRow:
    """Create a token, or return the one that holds (scope, key)."""
    await db.fetchrow(*bind("create_token", id=token_id, namespace=namespace, run_id=run_id,
                            idempotency_scope=scope, idempotency_key=idempotency_key,
                            secret=secret, timeout_seconds=timeout_seconds))
    if idempotency_key is None:
        row = await db.fetchrow(*bind("get_token", id=token_id))
    else:
        row = await db.fetchrow(*bind("token_by_key", idempotency_scope=scope,
                                      idempotency_key=idempotency_key))
    assert row is not None
    return _token(row)


async def get_token(db: Db, token_id: uuid.UUID) -> TokenRow | None:
    row = await db.fetchrow(*bind("get_token", id=token_id))
    return None if row is None else _token(row)


async def list_tokens(
    db: Db, *, namespace: str | None, run_id: uuid.UUID | None, status: str | None,
    limit: int, before: tuple[datetime, uuid.UUID] | None,
) -> list[TokenRow]:
    created, ident = before or (None, None)
    rows = await db.fetch(*bind("list_tokens", namespace=namespace, run_id=run_id,
                                status=status, limit=limit, before_created=created,
                                before_id=ident))
    return [_token(r) for r in rows]


async def complete_token(conn: asyncpg.Connection, token_id: uuid.UUID, data: RawJson) -> bool:
    """Complete a pending token in the caller's transaction (three statements, see
    the queries); False when it is not pending (completed before, or timed out)."""
    await conn.fetch(*bind("lock_token_waits", id=token_id))
    if await conn.fetchrow(*bind("complete_token", id=token_id, data=data)) is None:
        return False
    await conn.fetch(*bind("wake_token_waits", id=token_id))
    return True


@dataclass(frozen=True)
class LockedToken:
    id: uuid.UUID
    status: str
    data: Any
    timeout_at: datetime | None


async def lock_token(conn: asyncpg.Connection, token_id: uuid.UUID) -> LockedToken | None:
    row = await conn.fetchrow(*bind("lock_token", id=token_id))
    return None if row is None else LockedToken(row["id"], row["status"], row["data"],
                                                row["timeout_at"])
