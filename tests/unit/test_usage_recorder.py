"""Memory reports are written in the background, many per statement."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from waypost.engine.usage import UsageRecorder
from waypost.store.insights import RunnerStart, Usage


async def test_reports_of_attempts_ending_together_share_one_write() -> None:
    writes: list[list[Usage | RunnerStart]] = []

    async def write(reports: Sequence[Usage | RunnerStart]) -> None:
        writes.append(list(reports))

    recorder = UsageRecorder(write, gather_seconds=1.0)
    for token in range(20):
        recorder.record(RunnerStart(token, uuid.uuid4()))
        for _ in range(3):  # attempts ending a moment apart: the writer got to run
            await asyncio.sleep(0)
    await recorder.flush()
    assert len(writes) == 1 and len(writes[0]) == 20
    # Without the wait, the first report goes out alone.
    alone = UsageRecorder(write, gather_seconds=0.0)
    for token in range(3):
        alone.record(RunnerStart(token, uuid.uuid4()))
        for _ in range(3):
            await asyncio.sleep(0)
    await alone.flush()
    assert len(writes[1]) == 1
    writes.clear()
    # A later report is written by a new writer, on its own.
    recorder.record(RunnerStart(99, uuid.uuid4()))
    await recorder.flush()
    assert [len(w) for w in writes] == [1]


async def test_batches_are_capped() -> None:
    writes: list[int] = []

    async def write(reports: Sequence[Usage | RunnerStart]) -> None:
        writes.append(len(reports))

    recorder = UsageRecorder(write, max_batch=8, gather_seconds=0.0)
    for token in range(20):
        recorder.record(RunnerStart(token, uuid.uuid4()))
    await recorder.flush()
    assert writes == [8, 8, 4]
