"""What a runner process prints, as log lines of its attempt (dev mode).

The process backend reads a runner's stdout and stderr and hands the lines here;
they join the run's event log as ``log`` events with ``fields.stream``. The
runner's stderr also carries a JSON copy of every ``ctx.log`` line, which already
reached the coordinator through the runner API: those copies are left out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import asyncpg

from waypost.sdk.protocol import LOG_LEVELS
from waypost.store import logs

#: (time, stream name, text) of one printed line.
OutputLine = tuple[datetime, str, str]


#: The lines one attempt's process printed: (run id, attempt, lines).
AttemptOutput = tuple[uuid.UUID, int, Sequence[OutputLine]]


class OutputSink(Protocol):
    """Where a backend sends the lines attempts' processes printed (of several
    attempts at once: hot workers print for one attempt after another)."""

    async def write(self, batch: Sequence[AttemptOutput]) -> None:
        ...


def classify(stream: str, text: str) -> tuple[str, str] | None:
    """(level, message) of a printed line, or None for a copy of a ``ctx.log`` line."""
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("message"), str):
            if "run_id" in obj and "attempt" in obj and "logger" not in obj:
                return None  # ctx.log's echo: shipped through the runner API already
            level = obj.get("level")
            return (level if isinstance(level, str) and level in LOG_LEVELS else "info",
                    obj["message"])
    return ("info" if stream == "stdout" else "warning"), text


class StoreOutputSink:
    """Stores printed lines as log events of the attempt."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(self, batch: Sequence[AttemptOutput]) -> None:
        rows = []
        for run_id, attempt, lines in batch:
            for ts, stream, text in lines:
                found = classify(stream, text)
                if found is not None:
                    rows.append((run_id, attempt, ts, found[0], found[1][: 16 * 1024], stream))
        await logs.append_output(self._pool, rows)
