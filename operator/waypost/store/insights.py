"""Failure-pattern evidence, memory reports and the task_insights table (issue 11)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from waypost.store.sql import bind, query

DB: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def timeout_loops(db: DB, since: datetime, min_attempts: int,
                        min_runs: int) -> list[asyncpg.Record]:
    return list(await db.fetch(*bind("timeout_loops", since=since, min_attempts=min_attempts,
                                     min_runs=min_runs)))


async def retry_storms(db: DB, since: datetime, ratio: float,
                       min_runs: int) -> list[asyncpg.Record]:
    return list(await db.fetch(*bind("retry_storms", since=since, ratio=ratio,
                                     min_runs=min_runs)))


async def checkpoint_gaps(db: DB, since: datetime, gap_seconds: float,
                          limit: int = 1000) -> list[asyncpg.Record]:
    return list(await db.fetch(*bind("checkpoint_gaps", since=since, gap_seconds=gap_seconds,
                                     limit=limit)))


async def attempt_memory(db: DB, since: datetime) -> list[asyncpg.Record]:
    return list(await db.fetch(*bind("attempt_memory", since=since)))


async def warm_memory_growth(db: DB, since: datetime) -> list[asyncpg.Record]:
    return list(await db.fetch(*bind("warm_memory_growth", since=since)))


async def step_memory(db: DB, since: datetime) -> list[asyncpg.Record]:
    return list(await db.fetch(*bind("step_memory", since=since)))


@dataclass(frozen=True)
class Usage:
    """A runner's memory report for its attempt."""

    claim_token: int
    run_id: uuid.UUID
    peak_bytes: int
    step_peaks: dict[str, int]
    task_seconds: float | None = None


@dataclass(frozen=True)
class RunnerStart:
    """A runner fetched its attempt document: the attempt's task is about to start."""

    claim_token: int
    run_id: uuid.UUID


async def record_usage(db: DB, reports: Sequence[Usage | RunnerStart]) -> None:
    starts = [r for r in reports if isinstance(r, RunnerStart)]
    if starts:
        await db.execute(*bind("record_runner_starts",
                               claim_tokens=[r.claim_token for r in starts],
                               run_ids=[r.run_id for r in starts]))
    usages = [r for r in reports if isinstance(r, Usage)]
    if not usages:
        return
    await db.execute(*bind(
        "record_attempt_usage", claim_tokens=[u.claim_token for u in usages],
        run_ids=[u.run_id for u in usages], peaks=[u.peak_bytes for u in usages],
        steps=[u.step_peaks or None for u in usages],
        seconds=[u.task_seconds for u in usages]))


@dataclass(frozen=True)
class StoredInsight:
    namespace: str
    task: str
    pattern: str
    since: datetime
    updated_at: datetime | None
    cleared_at: datetime | None
    details: dict[str, Any]


async def reconcile(pool: asyncpg.Pool, found: Sequence[tuple[str, str, str, dict[str, Any]]],
                    keep_seconds: float = 86400.0) -> list[tuple[str, str, str]]:
    """Store what a detection pass found; returns the patterns that stopped."""
    async with pool.acquire() as conn, conn.transaction():
        if found:
            await conn.execute(*bind(
                "raise_insights", namespaces=[f[0] for f in found], tasks=[f[1] for f in found],
                patterns=[f[2] for f in found], details=[f[3] for f in found]))
        rows = await conn.fetch(*bind(
            "clear_insights", namespaces=[f[0] for f in found], tasks=[f[1] for f in found],
            patterns=[f[2] for f in found], keep_seconds=keep_seconds))
    return [(r["namespace"], r["task"], r["pattern"]) for r in rows]


async def active(db: DB, namespace: str | None = None,
                 task: str | None = None) -> list[StoredInsight]:
    rows = await db.fetch(*bind("active_insights", namespace=namespace, task=task))
    return [StoredInsight(r["namespace"], r["task"], r["pattern"], r["since"], r["updated_at"],
                          None, r["details"]) for r in rows]


async def cleared_tasks(db: DB) -> list[tuple[str, str]]:
    return [(r["namespace"], r["task"]) for r in await db.fetch(query("cleared_insight_tasks"))]


async def unannounced(db: DB, limit: int = 100) -> list[StoredInsight]:
    rows = await db.fetch(*bind("unannounced_insights", limit=limit))
    return [StoredInsight(r["namespace"], r["task"], r["pattern"], r["since"], None,
                          r["cleared_at"], r["details"]) for r in rows]


async def mark_announced(db: DB, insight: StoredInsight, announced: str) -> None:
    await db.execute(*bind("mark_insight_announced", namespace=insight.namespace,
                           task=insight.task, pattern=insight.pattern, announced=announced))
