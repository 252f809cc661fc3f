"""Successful completions share statements and commits (group commit in the engine).

Each runner reports its result with its own HTTP request. Written one by one,
every completion is a statement and a durable commit of its own; under load the
commits, not the work, bound how many runs finish per second. ``CompletionBatcher``
writes every completion that arrives while a write is in flight with the next
single ``complete_attempts`` statement, each still fenced on its own claim token.
An idle engine writes a completion at once: nothing waits for a timer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence

from waypost.store.pool import RawJson
from waypost.store.runs import Ack

# Writes a batch; returns the runs whose attempt was still current.
WriteBatch = Callable[[Sequence[Ack]], Awaitable[list[uuid.UUID]]]


class CompletionBatcher:
    """Collects completions and writes them in batches of at most ``max_batch``."""

    def __init__(self, write: WriteBatch, *, max_batch: int = 200) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[Ack, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def complete(self, run_id: uuid.UUID, claim_token: int, result: RawJson) -> bool:
        """Record a success; False if the attempt was no longer the current one."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(((run_id, claim_token, result), future))
        if self._writer is None:
            # A task of its own: a caller that goes away (a runner that hung up)
            # does not cancel the write of the others' completions.
            self._writer = asyncio.create_task(self._write_pending())
        # shield: the caller's cancellation must not cancel the shared future.
        return await asyncio.shield(future)

    async def _write_pending(self) -> None:
        try:
            while self._pending:
                batch = self._next_batch()
                try:
                    accepted = set(await self._write([ack for ack, _ in batch]))
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (run_id, _, _), future in batch:
                    if not future.done():
                        future.set_result(run_id in accepted)
        finally:
            self._writer = None

    def _next_batch(self) -> list[tuple[Ack, asyncio.Future[bool]]]:
        # One completion per run in a statement: a second report of the same run
        # (a runner retrying its request) waits for the next one, where the fencing
        # answers it on its own (False once the first has finished the attempt).
        batch: list[tuple[Ack, asyncio.Future[bool]]] = []
        rest: list[tuple[Ack, asyncio.Future[bool]]] = []
        runs_in_batch: set[uuid.UUID] = set()
        for item in self._pending:
            run_id = item[0][0]
            if len(batch) < self._max_batch and run_id not in runs_in_batch:
                batch.append(item)
                runs_in_batch.add(run_id)
            else:
                rest.append(item)
        self._pending = rest
        return batch
