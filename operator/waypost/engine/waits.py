"""Durable waits, delayed runs, TTLs, wait tokens, child runs and batch triggers.

A run that waits holds nothing: its attempt ends ``suspended`` (its process or
Pod exits), its hot row leaves ``run_queue`` so its concurrency slot is free, and
a row in ``run_waits`` says what it waits for. The :class:`Waker` (leader only,
beside the dispatcher) moves due waits back into ``run_queue`` in one statement
each pass, writing each wait's outcome as the checkpoint under the wait's key,
so the next attempt runs the task from the top and passes through every step
and wait that already ended. Delayed runs wait in the same table; runs past
their ttl are expired by the same loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from waypost import aiotime
from waypost.engine import encoding
from waypost.engine.core import Engine
from waypost.engine.credentials import AttemptIdentity
from waypost.engine.errors import (
    AttemptSuperseded,
    InvalidState,
    InvalidValue,
    RunNotFound,
    TokenAlreadyCompleted,
    TokenNotFound,
    TokenTimedOut,
    UnknownTask,
)
from waypost.model.enums import RunStatus
from waypost.model.run import BatchItem, Run, WaitInfo
from waypost.model.waits import Token
from waypost.sdk import protocol, tracing
from waypost.store import checkpoints, runs, tasks
from waypost.store import pool as store_pool
from waypost.store import waits as store

log = logging.getLogger("waypost.engine.waits")

#: Waits the waker resumes per statement.
WAKE_BATCH = 1000
#: Statements the waker runs at once while a full batch keeps coming back (SKIP
#: LOCKED gives each its own waits): resuming is CPU in Postgres, and one statement
#: at a time used one core (10,000 due at once: bench.waits, docs/benchmarks.md).
WAKE_PARALLEL = 3


def _superseded(ident: AttemptIdentity) -> AttemptSuperseded:
    return AttemptSuperseded(
        f"attempt with claim token {ident.claim_token} of run {ident.run_id} is no longer "
        "current (it was superseded, cancelled, or the run already finished)")


# --- triggers with a delay, a ttl, in batches --------------------------------------

@dataclass(frozen=True)
class BatchOutcome:
    """One item's run: its id, whether it is new, its status."""

    run_id: uuid.UUID
    new: bool
    status: RunStatus


def _row(engine: Engine, item: BatchItem, index: int | None, now: datetime,
         idempotency_key: str | None = None) -> store.BatchRow:
    what = "payload" if index is None else f"items[{index}].payload"
    payload = encoding.encode_limited(item.payload, engine.settings.limits.payload_bytes, what)
    run_at = item.run_at
    if item.delay is not None and item.delay > 0:
        run_at = now + timedelta(seconds=item.delay)
    # The ttl counts from when the run may start: the trigger, or the end of its delay.
    start = max(run_at, now) if run_at is not None else now
    expires_at = None if item.ttl is None else start + timedelta(seconds=item.ttl)
    return store.BatchRow(
        run_id=uuid.uuid4(), payload=payload, trace_id=secrets.token_hex(16),
        priority=item.priority, idempotency_key=idempotency_key or item.idempotency_key,
        concurrency_key=item.concurrency_key, run_at=run_at, expires_at=expires_at)


async def _enqueue(
    conn: asyncpg.Connection, namespace: str, task: str, rows: Sequence[store.BatchRow], *,
    source: str, parent_run_id: uuid.UUID | None = None, taskrun_name: str | None = None,
) -> list[BatchOutcome]:
    new = await store.enqueue_batch(conn, namespace=namespace, task=task, rows=rows,
                                    source=source, parent_run_id=parent_run_id,
                                    taskrun_name=taskrun_name)
    if not new and await tasks.get(conn, namespace, task) is None:
        raise UnknownTask(f"no task {task!r} in namespace {namespace!r}")
    taken = [r.idempotency_key for r in rows
             if r.run_id not in new and r.idempotency_key is not None]
    holders = await store.runs_by_idempotency_keys(conn, namespace, task, taken) if taken else {}
    out: list[BatchOutcome] = []
    for r in rows:
        if r.run_id in new:
            out.append(BatchOutcome(r.run_id, True, RunStatus(new[r.run_id])))
        elif r.idempotency_key is not None and r.idempotency_key in holders:
            held, status = holders[r.idempotency_key]
            out.append(BatchOutcome(held, False, RunStatus(status)))
        else:  # the task vanished between the statements
            raise UnknownTask(f"no task {task!r} in namespace {namespace!r}")
    return out


async def trigger_batch(
    engine: Engine, namespace: str, task: str, items: Sequence[BatchItem], *,
    source: str = "api",
) -> list[BatchOutcome]:
    """Queue up to 1,000 runs of one task in one transaction, all or none. An item
    whose idempotency key is taken (by an older run, or an earlier item) gets the run
    that holds it (``new`` False)."""
    now = engine.clock.now()
    rows = [_row(engine, item, i, now) for i, item in enumerate(items)]
    async with engine.pool.acquire() as conn, conn.transaction():
        return await _enqueue(conn, namespace, task, rows, source=source)


async def trigger_one(
    engine: Engine, namespace: str, task: str, item: BatchItem, *, source: str,
    taskrun_name: str | None = None, parent: tracing.TraceParent | None = None,
) -> tuple[uuid.UUID, bool]:
    """A single trigger with a delay, runAt or ttl (plain ones take the fast path).
    With the caller's trace context (``parent``) the run joins the caller's trace, as
    a plain trigger's does."""
    row = _row(engine, item, None, engine.clock.now())
    if parent is not None:
        row = dataclasses.replace(row, trace_id=parent.trace_id)
    async with engine.pool.acquire() as conn, conn.transaction():
        (outcome,) = await _enqueue(conn, namespace, task, [row], source=source,
                                    taskrun_name=taskrun_name)
        if outcome.new and parent is not None:
            await runs.set_parent_span(conn, outcome.run_id, parent.span_id, parent.sampled)
    return outcome.run_id, outcome.new


async def reschedule(engine: Engine, run_id: uuid.UUID, *, delay: float | None,
                     run_at: datetime | None) -> Run:
    """Give a delayed run another start time (now or in the past: it starts now)."""
    when = run_at if run_at is not None else engine.clock.now() + timedelta(seconds=delay or 0)
    async with engine.pool.acquire() as conn, conn.transaction():
        done = await store.reschedule(conn, run_id, when)
        run = await runs.get(conn, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    if not done:
        raise InvalidState(f"run {run_id} is {run.status}; only delayed runs can be "
                           "rescheduled")
    return await describe(engine, run)


# --- what a run waits for -------------------------------------------------------------

def _wait_info(wait: store.Wait) -> WaitInfo:
    until = wait.until
    if wait.kind == "token":
        until = wait.token_timeout_at
    return WaitInfo(
        kind=wait.kind,
        step_key=wait.step_key, until=until,
        token_id=str(wait.token_id) if wait.token_id else None,
        children=[str(c) for c in wait.child_ids] if wait.child_ids is not None else None,
        children_active=wait.children_active if wait.kind == "children" else None)


async def describe(engine: Engine, run: Run) -> Run:
    """The run with what it waits for, when it waits."""
    if run.status not in (RunStatus.WAITING, RunStatus.DELAYED):
        return run
    found = await store.waits_of(engine.pool, [uuid.UUID(run.id)])
    wait = found.get(uuid.UUID(run.id))
    return run if wait is None else run.model_copy(update={"waiting": _wait_info(wait)})


async def describe_many(engine: Engine, found: Sequence[Run]) -> list[Run]:
    ids = [uuid.UUID(r.id) for r in found if r.status in (RunStatus.WAITING, RunStatus.DELAYED)]
    if not ids:
        return list(found)
    waits = await store.waits_of(engine.pool, ids)
    return [r.model_copy(update={"waiting": _wait_info(waits[uuid.UUID(r.id)])})
            if uuid.UUID(r.id) in waits else r for r in found]


async def children(engine: Engine, run_id: uuid.UUID, limit: int = 1000) -> list[Run]:
    if await runs.get(engine.pool, run_id) is None:
        raise RunNotFound(f"no run {run_id}")
    return await describe_many(engine, await runs.list_children(engine.pool, run_id, limit))


# --- the runner's waits -----------------------------------------------------------------

async def wait(engine: Engine, ident: AttemptIdentity,
               body: protocol.WaitBody) -> protocol.WaitAnswer:
    """The attempt's task waits: suspend the run, or (the wait has ended already, say
    a token completed before the task waited for it) answer the outcome at once."""
    async with engine.pool.acquire() as conn, conn.transaction():
        current = await runs.current_attempt(conn, ident.run_id, ident.claim_token)
        if current is None or current.cancel_requested:
            raise _superseded(ident)
        if body.kind == "sleep":
            answer = await _sleep(engine, conn, ident, body)
        elif body.kind == "token":
            answer = await _token_wait(engine, conn, ident, body)
        else:
            answer = await _children_wait(engine, conn, ident, body, current.namespace)
    log.info("run waits" if answer.suspended else "wait already over", extra={
        "run_id": str(ident.run_id), "kind": body.kind, "key": body.key})
    return answer


async def _suspend(conn: asyncpg.Connection, ident: AttemptIdentity, **kw: Any) -> None:
    if not await store.suspend(conn, ident.run_id, ident.claim_token, **kw):
        raise _superseded(ident)


async def _resolved(engine: Engine, conn: asyncpg.Connection, ident: AttemptIdentity,
                    key: str, data: Any) -> protocol.WaitAnswer:
    encoded = encoding.encode_limited(data, engine.settings.limits.checkpoint_bytes,
                                      f"outcome of wait {key!r}")
    if not await checkpoints.write(conn, ident.run_id, ident.claim_token, key, encoded):
        raise _superseded(ident)
    return protocol.WaitAnswer(suspended=False, data=data)


async def _sleep(engine: Engine, conn: asyncpg.Connection, ident: AttemptIdentity,
                 body: protocol.WaitBody) -> protocol.WaitAnswer:
    now = engine.clock.now()
    until = body.until if body.until is not None else now + timedelta(seconds=body.seconds or 0)
    if until <= now:
        return await _resolved(engine, conn, ident, body.key,
                               {"wait": "sleep", "until": until.isoformat()})
    await _suspend(conn, ident, kind="sleep", step_key=body.key, due_at=until, until=until)
    return protocol.WaitAnswer(suspended=True)


def _token_outcome(token_id: uuid.UUID, status: str, data: Any) -> dict[str, Any]:
    if status == "completed":
        return {"wait": "token", "tokenId": str(token_id), "ok": True, "data": data}
    return {"wait": "token", "tokenId": str(token_id), "ok": False, "timedOut": True}


async def _token_wait(engine: Engine, conn: asyncpg.Connection, ident: AttemptIdentity,
                      body: protocol.WaitBody) -> protocol.WaitAnswer:
    token_id = _token_id(body.token_id or "")
    # Held until commit: a completion that comes meanwhile waits, then wakes this wait.
    token = await store.lock_token(conn, token_id)
    if token is None:
        raise TokenNotFound(f"no wait token {token_id}")
    if token.status != "pending":
        return await _resolved(engine, conn, ident, body.key,
                               _token_outcome(token_id, token.status, token.data))
    recheck = engine.clock.now() + timedelta(seconds=engine.settings.wait_recheck_seconds)
    due = recheck if token.timeout_at is None else min(recheck, token.timeout_at)
    await _suspend(conn, ident, kind="token", step_key=body.key, due_at=due,
                   token_id=token_id)
    return protocol.WaitAnswer(suspended=True)


def child_key(parent: uuid.UUID, key: str, index: int) -> str:
    """The idempotency key of a parent's child: a retried parent finds the same children."""
    return f"{parent}:{key}:{index}"


async def _children_wait(engine: Engine, conn: asyncpg.Connection, ident: AttemptIdentity,
                         body: protocol.WaitBody, namespace: str) -> protocol.WaitAnswer:
    assert body.task is not None and body.children is not None
    now = engine.clock.now()
    limit = engine.settings.limits.payload_bytes
    rows = [store.BatchRow(
        run_id=uuid.uuid4(), trace_id=secrets.token_hex(16),
        payload=encoding.encode_limited(c.payload, limit, f"children[{i}].payload"),
        priority=c.priority, concurrency_key=c.concurrency_key,
        idempotency_key=child_key(ident.run_id, body.key, i)) for i, c in enumerate(body.children)]
    made = await _enqueue(conn, namespace, body.task, rows, source="parent",
                          parent_run_id=ident.run_id)
    child_ids = [m.run_id for m in made]
    if all(m.status.is_final for m in made):
        found = await store.child_outcomes(conn, child_ids)
        return await _resolved(engine, conn, ident, body.key, _children_outcome(found))
    due = now + timedelta(seconds=engine.settings.wait_recheck_seconds)
    await _suspend(conn, ident, kind="children", step_key=body.key, due_at=due,
                   child_ids=child_ids)
    return protocol.WaitAnswer(suspended=True)


def _children_outcome(found: Sequence[store.ChildOutcome]) -> dict[str, Any]:
    return {"wait": "children", "runs": [
        {"id": str(c.id), "task": c.task, "status": c.status, "result": c.result,
         "error": c.error} for c in found]}


# --- tokens ----------------------------------------------------------------------------

def _token_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidValue(f"{value[:60]!r} is not a token id (expected a UUID)") from None


def token_url(base_url: str, token: store.TokenRow) -> str:
    return f"{base_url.rstrip('/')}/v1/tokens/{token.id}/callback/{token.secret}"


def token_model(token: store.TokenRow, url_base: str | None = None) -> Token:
    return Token(
        id=str(token.id), namespace=token.namespace,
        run_id=str(token.run_id) if token.run_id else None,
        idempotency_key=token.idempotency_key, status=token.status,
        data=token.data, timeout_at=token.timeout_at, created_at=token.created_at,
        completed_at=token.completed_at, waiting_runs=[str(r) for r in token.waiting_runs],
        url=token_url(url_base, token) if url_base is not None else None)


async def create_token(
    engine: Engine, *, namespace: str, timeout_seconds: float | None,
    idempotency_key: str | None, run_id: uuid.UUID | None = None,
) -> store.TokenRow:
    """A new wait token; the same key in the same scope (the run that creates it, or
    the namespace) returns the token made first."""
    scope = f"run:{run_id}" if run_id is not None else f"namespace:{namespace}"
    return await store.create_token(
        engine.pool, token_id=uuid.uuid4(), namespace=namespace, run_id=run_id, scope=scope,
        idempotency_key=idempotency_key, secret=secrets.token_urlsafe(24),
        timeout_seconds=timeout_seconds)


async def runner_token(engine: Engine, ident: AttemptIdentity,
                       body: protocol.TokenBody) -> protocol.TokenAnswer:
    current = await runs.current_attempt(engine.pool, ident.run_id, ident.claim_token)
    if current is None:
        raise _superseded(ident)
    token = await create_token(engine, namespace=current.namespace,
                               timeout_seconds=body.timeout_seconds, idempotency_key=body.key,
                               run_id=ident.run_id)
    return protocol.TokenAnswer(id=str(token.id), status=token.status,
                                url=token_url(engine.settings.runner_coordinator_url, token),
                                timeout_at=token.timeout_at)


async def get_token(engine: Engine, token_id: str) -> store.TokenRow:
    token = await store.get_token(engine.pool, _token_id(token_id))
    if token is None:
        raise TokenNotFound(f"no wait token {token_id}")
    return token


async def list_tokens(
    engine: Engine, *, namespace: str | None, run_id: str | None, status: str | None,
    limit: int, cursor: str | None,
) -> tuple[list[store.TokenRow], str | None]:
    before = None
    if cursor is not None:
        micros, _, ident = cursor.partition("_")
        before = (datetime.fromtimestamp(int(micros) / 1e6).astimezone(), _token_id(ident))
    rid = None if run_id is None else uuid.UUID(run_id)
    found = await store.list_tokens(engine.pool, namespace=namespace, run_id=rid,
                                    status=status, limit=limit, before=before)
    nxt = None
    if len(found) == limit:
        last = found[-1]
        nxt = f"{int(last.created_at.timestamp() * 1e6)}_{last.id}"
    return found, nxt


async def complete_token(engine: Engine, token_id: str, data: Any, *,
                         secret: str | None = None) -> store.TokenRow:
    """Complete a token with ``data`` (once); with ``secret``, only when it is the
    token's own (the webhook callback)."""
    ident = _token_id(token_id)
    encoded = encoding.encode_limited(data, engine.settings.limits.payload_bytes, "data")
    async with engine.pool.acquire() as conn, conn.transaction():
        token = await store.get_token(conn, ident)
        if token is None or (secret is not None and not secrets.compare_digest(
                secret.encode(), token.secret.encode())):
            # An unknown token and a wrong secret look the same from outside.
            raise TokenNotFound(f"no wait token {token_id}"
                                + (" with that secret" if secret is not None else ""))
        if not await store.complete_token(conn, ident, encoded):
            after = await store.get_token(conn, ident)
            status = after.status if after is not None else token.status
            if status == "timed_out":
                raise TokenTimedOut(f"wait token {token_id} timed out at "
                                    f"{token.timeout_at}; its waiters resumed without it")
            raise TokenAlreadyCompleted(f"wait token {token_id} was completed already; "
                                        "the second completion changed nothing")
    done = await store.get_token(engine.pool, ident)
    assert done is not None
    log.info("wait token completed", extra={"token_id": token_id,
                                            "waiting_runs": len(token.waiting_runs)})
    return done


# --- cancelling ---------------------------------------------------------------------

async def cancel_waiting(conn: asyncpg.Connection, run_id: uuid.UUID, reason: str) -> bool:
    return await store.cancel_waiting(conn, run_id, reason)


async def active_children(engine: Engine, run_id: uuid.UUID) -> list[uuid.UUID]:
    return await store.active_children(engine.pool, run_id)


# --- the waker ----------------------------------------------------------------------

class Waker:
    """Resumes due waits and delayed runs, and expires runs past their ttl (leader only).

    Each pass expires and wakes in statements of at most WAKE_BATCH runs each (while
    wake statements come back full, WAKE_PARALLEL of them run at a time); then it
    sleeps until the earliest due time, at most ``wait_poll_seconds``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.woken = 0
        self.expired = 0

    async def pass_once(self) -> tuple[int, int]:
        """One pass; (runs resumed, runs expired)."""
        pool = self.engine.pool
        # Read once, before the first await: LeaderWork.halt clears the epoch and sets
        # the stop event together, so a pass never runs unfenced after a loss; a leader
        # deposed mid-pass (or frozen) keeps passing its old epoch, which the store
        # refuses once a newer one is recorded.
        epoch = self.engine.leader_epoch
        expired = await store.expire_due(pool, limit=WAKE_BATCH, leader_epoch=epoch)
        total, full = await self._wake(epoch)
        if full:
            # Many are due at once: drain the rest with several statements at a time.
            drained = await asyncio.gather(*(self._drain(epoch) for _ in range(WAKE_PARALLEL)),
                                           return_exceptions=True)
            for outcome in drained:
                if isinstance(outcome, BaseException):
                    raise outcome  # after every drain ended: none is left running
                total += outcome
        self.woken += total
        self.expired += len(expired)
        if expired:
            log.info("runs expired", extra={"count": len(expired)})
        return total, len(expired)

    async def _wake(self, epoch: int | None) -> tuple[int, bool]:
        """One statement: (runs resumed, whether the batch was full)."""
        result = await store.wake_due(self.engine.pool, limit=WAKE_BATCH,
                                      recheck_seconds=self.engine.settings.wait_recheck_seconds,
                                      leader_epoch=epoch)
        return result.woken, result.woken + result.rechecked >= WAKE_BATCH

    async def _drain(self, epoch: int | None) -> int:
        total = 0
        while True:
            woken, full = await self._wake(epoch)
            total += woken
            if not full:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        poll = self.engine.settings.wait_poll_seconds
        failures = 0
        while not stop.is_set():
            pause = poll
            try:
                _, expired = await self.pass_once()
                if expired == WAKE_BATCH:
                    continue
                next_due, now = await store.next_due(self.engine.pool)
                if next_due is not None:
                    pause = max(0.0, min(poll, (next_due - now).total_seconds()))
                failures = 0
            except (*store_pool.UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                failures += 1
                log.warning("waker cannot reach the store: %s", exc)
                pause = aiotime.reconnect_delay(failures)
            await aiotime.sleep(pause, stop)
