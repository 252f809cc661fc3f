"""Pages of a run's log read backwards from its end: the UI shows the tail of a log
first (store.events reads forwards, for streams and the logs API)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from waypost.model.run import LogEntry
from waypost.store.events import Cursor
from waypost.store.sql import bind


async def tail(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, *, before: Cursor | None,
    attempt: int | None, levels: Sequence[str] | None, limit: int,
) -> tuple[list[LogEntry], Cursor]:
    """The newest ``limit`` lines before ``before`` (or the end), oldest first, and the
    cursor to follow the log from (the commit horizon, or past the newest line)."""
    rows = await db.fetch(*bind(
        "run_log_tail", run_id=run_id, before_tx=str(before.tx) if before else None,
        before_id=before.id if before else None, attempt=attempt,
        levels=list(levels) if levels else None, limit=limit))
    entries = []
    newest = Cursor(int(rows[0]["horizon"]), 0)
    for r in reversed(rows):
        if r["id"] is None:
            continue
        cursor = Cursor(int(r["tx"]), r["id"])
        newest = max(newest, cursor)
        data = r["data"]
        fields = data.get("fields")
        entries.append(LogEntry(
            cursor=str(cursor), run_id=str(run_id), attempt=r["attempt"] or 0,
            step=data.get("step"), ts=r["ts"], level=str(data.get("level", "info")),
            message=str(data.get("message", "")),
            fields=fields if isinstance(fields, dict) else {}))
    return entries, newest
