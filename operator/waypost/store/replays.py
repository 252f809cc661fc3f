"""Replays: a new run from an earlier run's checkpoints, and its audit record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from waypost.model.run import Checkpoint, ReplayRecord
from waypost.store.pool import RawJson
from waypost.store.sql import bind


@dataclass(frozen=True)
class Source:
    """The run being replayed, as the replay needs it."""

    id: uuid.UUID
    namespace: str
    task: str
    queue: str
    status: str
    priority: int
    payload: Any
    concurrency_key: str | None
    spec: dict[str, Any]
    spec_generation: int | None


async def source(conn: asyncpg.Connection, run_id: uuid.UUID) -> Source | None:
    """The run, held until the caller's transaction ends."""
    r = await conn.fetchrow(*bind("replay_source", run_id=run_id))
    if r is None:
        return None
    return Source(r["id"], r["namespace"], r["task"], r["queue"], r["status"], r["priority"],
                  r["payload"], r["concurrency_key"], r["spec"], r["spec_generation"])


async def checkpoints_in_order(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID
) -> list[Checkpoint]:
    rows = await db.fetch(*bind("checkpoints_in_order", run_id=run_id))
    return [Checkpoint(key=r["key"], data=r["data"], attempt=r["attempt"],
                       size_bytes=r["size_bytes"], created_at=r["created_at"]) for r in rows]


async def enqueue(
    conn: asyncpg.Connection, *, run_id: uuid.UUID, source: Source, queue: str,
    payload: RawJson, idempotency_key: str | None, spec: dict[str, Any], memory_bytes: int,
    trace_id: str, taskrun_name: str | None, spec_generation: int | None,
) -> bool:
    """Queue the replay's run; False when its idempotency key was already used."""
    row = await conn.fetchrow(*bind(
        "enqueue_replay_run", run_id=run_id, namespace=source.namespace, task=source.task,
        queue=queue, priority=source.priority, payload=payload,
        idempotency_key=idempotency_key, concurrency_key=source.concurrency_key, spec=spec,
        memory_bytes=memory_bytes, trace_id=trace_id, replay_of=source.id,
        taskrun_name=taskrun_name, spec_generation=spec_generation,
    ))
    return row is not None


async def copy_checkpoints(
    conn: asyncpg.Connection, from_run: uuid.UUID, to_run: uuid.UUID, keys: Sequence[str],
    edited: dict[str, RawJson],
) -> None:
    await conn.execute(*bind(
        "copy_checkpoints", from_run=from_run, to_run=to_run, keys=list(keys),
        edited_keys=list(edited), edited_data=list(edited.values()),
        edited_sizes=[len(v.text.encode()) for v in edited.values()],
    ))


def _record(r: asyncpg.Record) -> ReplayRecord:
    return ReplayRecord(
        run_id=str(r["run_id"]), replay_of=str(r["replay_of"]),
        from_checkpoint=r["from_checkpoint"], spec=r["spec_source"],
        requested_by=r["requested_by"], requested_at=r["requested_at"], diff=r["diff"],
    )


async def record(
    conn: asyncpg.Connection, *, run_id: uuid.UUID, replay_of: uuid.UUID,
    from_checkpoint: str | None, spec_source: str, requested_by: str, diff: dict[str, Any],
) -> ReplayRecord:
    r = await conn.fetchrow(*bind(
        "record_replay", run_id=run_id, replay_of=replay_of, from_checkpoint=from_checkpoint,
        spec_source=spec_source, requested_by=requested_by, diff=diff))
    return _record(r)


async def replay_of_run(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID
) -> ReplayRecord | None:
    r = await db.fetchrow(*bind("replay_of_run", run_id=run_id))
    return None if r is None else _record(r)


async def replays_of_run(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID
) -> list[ReplayRecord]:
    return [_record(r) for r in await db.fetch(*bind("replays_of_run", run_id=run_id))]
