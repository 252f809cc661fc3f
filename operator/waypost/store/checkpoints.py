"""Checkpoints: named JSON results of an attempt, read back by later attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from waypost.model.run import Checkpoint
from waypost.store.pool import RawJson
from waypost.store.sql import bind


async def write(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int, key: str,
    data: RawJson,
) -> bool:
    """Store a checkpoint; False when the attempt is no longer current."""
    row = await db.fetchrow(
        *bind("write_checkpoint", run_id=run_id, claim_token=claim_token, key=key, data=data,
              size_bytes=len(data.text.encode()))
    )
    return row is not None


async def list_for_run(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID
) -> list[Checkpoint]:
    rows = await db.fetch(*bind("list_checkpoints", run_id=run_id))
    return [
        Checkpoint(key=r["key"], data=r["data"], attempt=r["attempt"],
                   size_bytes=r["size_bytes"], created_at=r["created_at"])
        for r in rows
    ]


async def heads_for_run(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID
) -> list[Checkpoint]:
    """A run's checkpoints in the order written, without their data (``data`` None)."""
    rows = await db.fetch(*bind("list_checkpoint_heads", run_id=run_id))
    return [
        Checkpoint(key=r["key"], data=None, attempt=r["attempt"], size_bytes=r["size_bytes"],
                   created_at=r["created_at"])
        for r in rows
    ]


async def get(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, key: str
) -> Checkpoint | None:
    """One checkpoint of a run, with its data; None when the run has no such key."""
    r = await db.fetchrow(*bind("get_checkpoint", run_id=run_id, key=key))
    if r is None:
        return None
    return Checkpoint(key=r["key"], data=r["data"], attempt=r["attempt"],
                      size_bytes=r["size_bytes"], created_at=r["created_at"])


async def last_for_runs(
    db: asyncpg.Pool | asyncpg.Connection, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Checkpoint]:
    """The newest checkpoint of each run that has one (without its data)."""
    rows = await db.fetch(*bind("last_checkpoints", run_ids=run_ids))
    return {
        r["run_id"]: Checkpoint(key=r["key"], data=None, attempt=r["attempt"],
                                size_bytes=r["size_bytes"], created_at=r["created_at"])
        for r in rows
    }


@dataclass(frozen=True)
class StoredVersion:
    """A checkpoint as stored now: its version (``seq``), writer, size and data."""

    seq: int
    attempt: int
    size_bytes: int
    data: Any


async def versions(
    db: asyncpg.Pool | asyncpg.Connection, wanted: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], StoredVersion]:
    """The stored version of each (run, key) of ``wanted`` that exists."""
    if not wanted:
        return {}
    rows = await db.fetch(*bind("checkpoint_versions", run_ids=[w[0] for w in wanted],
                                keys=[w[1] for w in wanted]))
    return {(r["run_id"], r["key"]): StoredVersion(r["seq"], r["attempt"], r["size_bytes"],
                                                   r["data"]) for r in rows}
