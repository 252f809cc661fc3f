"""CompletionBatcher: group commit of successful completions (against an in-memory writer)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from waypost.engine.completions import CompletionBatcher
from waypost.store.pool import RawJson
from waypost.store.runs import Ack

OK = RawJson("null")


class SlowStore:
    """Accepts every (run, token) it has been told is current; each write takes a while."""

    def __init__(self, current: dict[uuid.UUID, int], delay: float = 0.02) -> None:
        self.current = dict(current)
        self.delay = delay
        self.batches: list[list[uuid.UUID]] = []
        self.fail_next: Exception | None = None

    async def write(self, acks: Sequence[Ack]) -> list[uuid.UUID]:
        self.batches.append([a[0] for a in acks])
        await asyncio.sleep(self.delay)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        done = [run for run, token, _ in acks if self.current.get(run) == token]
        for run in done:
            del self.current[run]
        return done


async def test_an_idle_batcher_writes_at_once_and_later_arrivals_share_a_write() -> None:
    runs = [uuid.uuid4() for _ in range(21)]
    store = SlowStore({r: 7 for r in runs})
    batcher = CompletionBatcher(store.write)
    first = asyncio.create_task(batcher.complete(runs[0], 7, OK))
    await asyncio.sleep(0.005)  # the first write is in flight
    assert store.batches == [[runs[0]]]
    rest = await asyncio.gather(*(batcher.complete(r, 7, OK) for r in runs[1:]))
    assert await first is True and all(rest)
    assert store.batches == [[runs[0]], runs[1:]]


async def test_each_completion_is_fenced_on_its_own_token() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    store = SlowStore({a: 1, b: 2})
    batcher = CompletionBatcher(store.write)
    results = await asyncio.gather(batcher.complete(a, 1, OK), batcher.complete(b, 99, OK))
    assert results == [True, False]


async def test_a_repeated_report_of_one_run_waits_for_the_next_write() -> None:
    run = uuid.uuid4()
    store = SlowStore({run: 5})
    batcher = CompletionBatcher(store.write)
    results = await asyncio.gather(batcher.complete(run, 5, OK), batcher.complete(run, 5, OK))
    assert results == [True, False]  # the second finds the attempt already finished
    assert store.batches == [[run], [run]]


async def test_batches_are_capped() -> None:
    runs = [uuid.uuid4() for _ in range(7)]
    store = SlowStore({r: 1 for r in runs})
    batcher = CompletionBatcher(store.write, max_batch=3)
    assert all(await asyncio.gather(*(batcher.complete(r, 1, OK) for r in runs)))
    assert [len(b) for b in store.batches] == [3, 3, 1]


async def test_a_failed_write_fails_its_batch_only() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    store = SlowStore({a: 1, b: 1})
    batcher = CompletionBatcher(store.write)
    store.fail_next = ConnectionError("database down")
    first = asyncio.create_task(batcher.complete(a, 1, OK))
    await asyncio.sleep(0.005)
    second = asyncio.create_task(batcher.complete(b, 1, OK))
    with pytest.raises(ConnectionError, match="database down"):
        await first
    assert await second is True


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    store = SlowStore({a: 1, b: 1})
    batcher = CompletionBatcher(store.write)
    gone = asyncio.create_task(batcher.complete(a, 1, OK))
    stays = asyncio.create_task(batcher.complete(b, 1, OK))
    await asyncio.sleep(0.005)
    gone.cancel()
    assert await stays is True
    assert store.current == {}  # a's completion was written all the same
