"""Log lines of attempts: events of kind 'log' in the run's event log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from waypost.store.sql import bind

LogLine = tuple[datetime, str, str, dict[str, Any], str | None]  # ts, level, message, fields, step


async def append(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int,
    lines: Sequence[LogLine],
) -> bool:
    """Store a batch of lines; False if the attempt is stale."""
    status: str = await db.execute(
        *bind("append_logs", run_id=run_id, claim_token=claim_token,
              ts=[line[0] for line in lines], levels=[line[1] for line in lines],
              messages=[line[2] for line in lines], fields=[line[3] for line in lines],
              steps=[line[4] for line in lines])
    )
    return not status.endswith(" 0") or not lines


async def append_output(
    db: asyncpg.Pool | asyncpg.Connection,
    lines: Sequence[tuple[uuid.UUID, int, datetime, str, str, str]],
) -> None:
    """Store lines runner processes printed, of any attempts, in one statement:
    (run id, attempt, ts, level, message, stream)."""
    if lines:
        await db.execute(*bind(
            "append_output", run_ids=[line[0] for line in lines],
            attempts=[line[1] for line in lines], ts=[line[2] for line in lines],
            levels=[line[3] for line in lines], messages=[line[4] for line in lines],
            streams=[line[5] for line in lines]))
