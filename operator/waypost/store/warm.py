"""Warm runners' registrations: enroll, poll, assign (the fenced hand-off), retire."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from waypost.store import notify as notify_channels
from waypost.store.pool import RawJson
from waypost.store.sql import bind


@dataclass(frozen=True)
class WarmRunner:
    """A runner's registration as stored."""

    runner_id: uuid.UUID
    namespace: str
    task: str
    fingerprint: str
    state: str  # idle | busy | retired
    run_id: uuid.UUID | None
    claim_token: int | None
    runs_served: int
    first_rss_bytes: int | None
    last_rss_bytes: int | None
    retired_reason: str | None
    idle_seconds: float = 0.0


def _runner(row: asyncpg.Record) -> WarmRunner:
    return WarmRunner(
        runner_id=row["runner_id"], namespace=row["namespace"], task=row["task"],
        fingerprint=row["fingerprint"], state=row["state"], run_id=row["run_id"],
        claim_token=row["claim_token"], runs_served=row["runs_served"],
        first_rss_bytes=row["first_rss_bytes"], last_rss_bytes=row["last_rss_bytes"],
        retired_reason=row["retired_reason"],
        idle_seconds=float(row["idle_seconds"]) if "idle_seconds" in row else 0.0,
    )


async def enroll(
    db: asyncpg.Pool | asyncpg.Connection, runner_id: uuid.UUID, *, namespace: str, task: str,
    fingerprint: str, run_id: uuid.UUID, claim_token: int, idle_ttl_seconds: float,
) -> None:
    """Register a runner started in warm mode, bound to its first attempt."""
    await db.execute(*bind("warm_enroll", runner_id=runner_id, namespace=namespace, task=task,
                           fingerprint=fingerprint, run_id=run_id, claim_token=claim_token,
                           idle_ttl_seconds=idle_ttl_seconds))


async def enroll_idle(
    db: asyncpg.Pool | asyncpg.Connection, runner_id: uuid.UUID, *, namespace: str, task: str,
    fingerprint: str, idle_ttl_seconds: float,
) -> None:
    """Register a pre-warmed runner: idle, before it has run anything."""
    await db.execute(*bind("warm_enroll_idle", runner_id=runner_id, namespace=namespace,
                           task=task, fingerprint=fingerprint,
                           idle_ttl_seconds=idle_ttl_seconds))


@dataclass(frozen=True)
class TaskDemand:
    """A Task's spec (JSON text) and its runs ready to be claimed now."""

    namespace: str
    task: str
    spec_json: str
    ready: int


async def demand(
    db: asyncpg.Pool | asyncpg.Connection, recent: Sequence[tuple[str, str]],
) -> list[TaskDemand]:
    """Tasks with ready runs, and the ``recent`` ones (namespace, task), with their specs."""
    rows = await db.fetch(*bind("warm_demand", namespaces=[k[0] for k in recent],
                                tasks=[k[1] for k in recent]))
    return [TaskDemand(r["namespace"], r["task"], r["spec"], r["ready"]) for r in rows]


async def poll(
    db: asyncpg.Pool | asyncpg.Connection, runner_id: uuid.UUID, *,
    finished_run: uuid.UUID | None, finished_attempt: int | None, rss_after_bytes: int,
    growth_limit_bytes: int,
) -> tuple[WarmRunner, bool] | None:
    """Record a poll, and the end of the runner's attempt if it reports one; returns the
    row afterwards and whether this poll ended the attempt (None: no such runner)."""
    row = await db.fetchrow(*bind("warm_poll", runner_id=runner_id, finished_run=finished_run,
                                  finished_attempt=finished_attempt, rss_bytes=rss_after_bytes,
                                  growth_limit_bytes=growth_limit_bytes))
    return None if row is None else (_runner(row), bool(row["finished_now"]))


async def finish_poll(
    db: asyncpg.Pool | asyncpg.Connection, runner_id: uuid.UUID, *,
    finished_run: uuid.UUID, claim_token: int, finished_attempt: int, result: RawJson,
    rss_after_bytes: int, growth_limit_bytes: int,
) -> tuple[WarmRunner | None, bool, bool]:
    """A poll that carries its attempt's success: the completion (fenced on
    ``claim_token``) and the runner's return to idle in one statement. Returns the row
    afterwards (None: no such runner), whether this poll ended the attempt, and
    whether the result was taken (False: the attempt was no longer current)."""
    row = await db.fetchrow(*bind(
        "warm_finish_poll", runner_id=runner_id, finished_run=finished_run,
        claim_token=claim_token, finished_attempt=finished_attempt, result=result,
        rss_bytes=rss_after_bytes, growth_limit_bytes=growth_limit_bytes))
    assert row is not None  # the statement answers one row
    runner = None if row["runner_id"] is None else _runner(row)
    return runner, bool(row["finished_now"]), bool(row["completed"])


async def get(db: asyncpg.Pool | asyncpg.Connection, runner_id: uuid.UUID) -> WarmRunner | None:
    row = await db.fetchrow(*bind("warm_runner", runner_id=runner_id))
    return None if row is None else _runner(row)


@dataclass(frozen=True)
class Assigned:
    """An attempt bound to a warm runner, with what its attempt document needs."""

    runner_id: uuid.UUID
    run_id: uuid.UUID
    claim_token: int
    attempt: int
    namespace: str
    task: str
    spec_json: str
    payload: Any
    trace_id: str
    idempotency_key: str | None
    checkpoints: list[dict[str, Any]]
    # The trigger's caller's sampled flag; None when the run started its own trace.
    parent_sampled: bool | None = None


async def assign_many(
    db: asyncpg.Pool | asyncpg.Connection, items: Sequence[tuple[str, uuid.UUID, int]],
    candidates: Sequence[uuid.UUID], lease_seconds: float,
) -> list[Assigned]:
    """Bind each claimed attempt (fingerprint, run id, claim token) to an idle runner of
    its fingerprint among ``candidates``, in one statement; returns the pairs made."""
    rows = await db.fetch(*bind(
        "warm_assign_many", run_ids=[i[1] for i in items], claim_tokens=[i[2] for i in items],
        fingerprints=[i[0] for i in items], candidates=list(candidates),
        lease_seconds=lease_seconds))
    return [Assigned(
        runner_id=r["runner_id"], run_id=r["run_id"], claim_token=r["claim_token"],
        attempt=r["attempt"], namespace=r["namespace"], task=r["task"], spec_json=r["spec"],
        payload=r["payload"], trace_id=r["trace_id"], idempotency_key=r["idempotency_key"],
        checkpoints=r["checkpoints"], parent_sampled=r["parent_sampled"]) for r in rows]


CHANNEL = notify_channels.WARM_CHANNEL


async def notify(db: asyncpg.Pool | asyncpg.Connection, runner_id: uuid.UUID) -> None:
    """Wake ``runner_id``'s poll wherever it is held (see ``CHANNEL``)."""
    await db.execute(*bind("warm_notify", runner_id=str(runner_id)))


async def retire(
    db: asyncpg.Pool | asyncpg.Connection, runner_ids: Sequence[uuid.UUID], reason: str, *,
    busy_too: bool = False,
) -> list[uuid.UUID]:
    """Retire idle runners (and busy ones with ``busy_too``); returns those retired."""
    rows = await db.fetch(*bind("warm_retire", runner_ids=list(runner_ids), reason=reason,
                                busy_too=busy_too))
    return [r["runner_id"] for r in rows]


async def retire_attempt(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int, reason: str
) -> list[uuid.UUID]:
    """Retire the runner bound to this attempt, if any."""
    rows = await db.fetch(*bind("warm_retire_attempt", run_id=run_id, claim_token=claim_token,
                                reason=reason))
    return [r["runner_id"] for r in rows]


async def retire_stale(
    db: asyncpg.Pool | asyncpg.Connection, namespace: str, task: str, keep: Sequence[str]
) -> list[uuid.UUID]:
    """Retire the task's idle runners whose fingerprint is not in ``keep``."""
    rows = await db.fetch(*bind("warm_retire_stale", namespace=namespace, task=task,
                                keep=list(keep)))
    return [r["runner_id"] for r in rows]


async def expire_idle(db: asyncpg.Pool | asyncpg.Connection) -> list[WarmRunner]:
    """Retire idle runners past their idle TTL; returns them (ids and tasks only)."""
    rows = await db.fetch(*bind("warm_expire_idle"))
    return [WarmRunner(r["runner_id"], r["namespace"], r["task"], "", "retired", None, None, 0,
                       None, None, "idle_ttl") for r in rows]


async def members(db: asyncpg.Pool | asyncpg.Connection) -> list[WarmRunner]:
    """Every runner in the pool (idle or busy)."""
    return [_runner(r) for r in await db.fetch(*bind("warm_members"))]


async def prune(db: asyncpg.Pool | asyncpg.Connection, older_than_seconds: float) -> int:
    result = await db.execute(*bind("warm_prune", older_than_seconds=older_than_seconds))
    return int(result.split()[-1])
