"""Cron schedules of Tasks as the store keeps them, with their next fire time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from waypost.model.enums import MissedRunPolicy
from waypost.model.task import Schedule
from waypost.store.sql import bind

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class StoredSchedule:
    namespace: str
    task: str
    name: str
    cron: str
    timezone: str
    payload: Any
    missed_runs: MissedRunPolicy
    catchup_limit: int
    suspended: bool
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_error: str | None
    updated_at: datetime


def _stored(r: asyncpg.Record) -> StoredSchedule:
    return StoredSchedule(
        namespace=r["namespace"], task=r["task"], name=r["name"], cron=r["cron"],
        timezone=r["timezone"], payload=r["payload"],
        missed_runs=MissedRunPolicy(r["missed_runs"]), catchup_limit=r["catchup_limit"],
        suspended=r["suspended"], next_fire_at=r["next_fire_at"],
        last_fire_at=r["last_fire_at"], last_error=r["last_error"], updated_at=r["updated_at"],
    )


async def upsert(
    db: Db, namespace: str, task: str, schedule: Schedule, *,
    next_fire_at: datetime | None, error: str | None,
) -> datetime | None:
    """Store one schedule; returns its next fire time (kept when cron and zone are unchanged)."""
    found: datetime | None = await db.fetchval(
        *bind("upsert_schedule", namespace=namespace, task=task, name=schedule.name,
              cron=schedule.cron, timezone=schedule.timezone, payload=schedule.payload,
              missed_runs=schedule.missed_runs.value, catchup_limit=schedule.catchup_limit,
              suspended=schedule.suspend, next_fire_at=next_fire_at, last_error=error)
    )
    return found


async def remove_others(db: Db, namespace: str, task: str, keep: Sequence[str]) -> list[str]:
    """Delete the Task's schedules not named in ``keep``; returns the removed names."""
    rows = await db.fetch(*bind("delete_schedules_not_in", namespace=namespace, task=task,
                              keep=list(keep)))
    return [r["name"] for r in rows]


async def delete_for_task(db: Db, namespace: str, task: str) -> list[str]:
    rows = await db.fetch(*bind("delete_task_schedules", namespace=namespace, task=task))
    return [r["name"] for r in rows]


async def lock_due(
    conn: asyncpg.Connection, now: datetime, limit: int, leader_epoch: int | None = None
) -> list[StoredSchedule]:
    """Lock up to ``limit`` due schedules for this transaction (others are skipped)."""
    rows = await conn.fetch(*bind("lock_due_schedules", now=now, limit=limit,
                                 leader_epoch=leader_epoch))
    return [_stored(r) for r in rows]


async def advance(
    conn: asyncpg.Connection, s: StoredSchedule, *, next_fire_at: datetime,
    last_fire_at: datetime | None,
) -> None:
    await conn.execute(
        *bind("advance_schedule", namespace=s.namespace, task=s.task, name=s.name,
              next_fire_at=next_fire_at, last_fire_at=last_fire_at)
    )


async def record_error(
    db: Db, s: StoredSchedule, error: str, *, next_fire_at: datetime | None
) -> None:
    await db.execute(
        *bind("record_schedule_error", namespace=s.namespace, task=s.task, name=s.name,
              last_error=error, next_fire_at=next_fire_at)
    )


async def list_schedules(
    db: Db, namespace: str | None = None, task: str | None = None
) -> list[StoredSchedule]:
    return [_stored(r) for r in await db.fetch(*bind("list_schedules", namespace=namespace,
                                                         task=task))]


async def get(db: Db, namespace: str, task: str, name: str) -> StoredSchedule | None:
    r = await db.fetchrow(*bind("get_schedule", namespace=namespace, task=task, name=name))
    return None if r is None else _stored(r)
