"""Runners' memory reports (and when they started), written in the background, batched.

A report rides on the attempt's completion or failure request. Waiting for its
write would add a statement and a commit to every run; instead the reports are
queued and written by one task, many per statement (as completions are, see
engine.completions). A report still queued when the process dies is lost: it is
telemetry, and the outcome it came with was written first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from waypost.store.insights import RunnerStart, Usage

log = logging.getLogger("waypost.engine.usage")

WriteUsage = Callable[[Sequence[Usage | RunnerStart]], Awaitable[None]]

#: Reports held at most; past it new ones are dropped (the database is away).
MAX_PENDING = 10_000
#: How long the writer waits for more reports before it writes: under load many
#: attempts end each second, and one statement per report was a commit per run.
GATHER_SECONDS = 0.05


class UsageRecorder:
    def __init__(self, write: WriteUsage, *, max_batch: int = 500,
                 gather_seconds: float = GATHER_SECONDS) -> None:
        self._write = write
        self._max_batch = max_batch
        self._gather_seconds = gather_seconds
        self._pending: list[Usage | RunnerStart] = []
        self._writer: asyncio.Task[None] | None = None

    def record(self, usage: Usage | RunnerStart) -> None:
        """Queue a report; never waits."""
        if len(self._pending) >= MAX_PENDING:
            return
        self._pending.append(usage)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(self._gather_seconds)
            while self._pending:
                batch = self._pending[:self._max_batch]
                del self._pending[:self._max_batch]
                try:
                    await self._write(batch)
                except Exception as exc:
                    log.warning("memory reports not stored", extra={
                        "error": str(exc), "reports": len(batch)})
        finally:
            self._writer = None

    async def flush(self) -> None:
        """Wait until what was queued is written (tests, shutdown)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)
