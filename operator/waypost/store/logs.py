"""Log lines of attempts, shipped in batches by runners."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from waypost.model.run import LogEntry
from waypost.store.sql import bind


async def append(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, claim_token: int,
    lines: Sequence[tuple[datetime, str, str, dict[str, Any]]],
) -> bool:
    """Store a batch of (ts, level, message, fields); False if the attempt is stale."""
    status: str = await db.execute(
        *bind("append_logs", run_id=run_id, claim_token=claim_token,
              ts=[line[0] for line in lines], levels=[line[1] for line in lines],
              messages=[line[2] for line in lines], fields=[line[3] for line in lines])
    )
    return not status.endswith(" 0") or not lines


async def list_for_run(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, after_seq: int = 0,
    limit: int = 500,
) -> list[tuple[int, LogEntry]]:
    rows = await db.fetch(*bind("list_logs", run_id=run_id, after_seq=after_seq,
                                    limit=limit))
    return [
        (r["seq"], LogEntry(attempt=r["attempt"], ts=r["ts"], level=r["level"],
                            message=r["message"], fields=r["fields"]))
        for r in rows
    ]
