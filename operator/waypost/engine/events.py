"""Following the run event log: logs pages, and live streams for many subscribers.

One :class:`EventHub` per coordinator process reads new events for all of its
subscribers with one query per tick (only while anyone subscribes) and hands each
subscriber the events it asked for; no client polls the database on its own except
for the catch-up when it (re)joins. Writers pay the event rows, and a NOTIFY per
transaction only while a hub sleeps waiting for one (migration 0015).

Joining a stream is gap-free: a subscription is registered first, the hub marks
the cursor its next tick starts from, and only then does the subscriber read the
events between its own cursor and the hub's from the database; whatever the hub
delivers at or below the subscriber's cursor is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from waypost.engine.errors import InvalidValue, RunNotFound
from waypost.model.run import EVENT_KINDS, LogEntry, RunEvent
from waypost.sdk.protocol import LOG_LEVELS
from waypost.store import checkpoints, events, notify, runs
from waypost.store import pool as store_pool
from waypost.store.events import Cursor, Event

log = logging.getLogger("waypost.engine.events")



def parse_cursor(text: str | None, name: str = "cursor") -> Cursor | None:
    if text is None or text == "":
        return None
    try:
        return Cursor.parse(text)
    except ValueError as exc:
        raise InvalidValue(f"{name}: {exc}") from None


def levels_from(minimum: str | None) -> list[str] | None:
    """The levels at or above ``minimum`` (None: all)."""
    if minimum is None or minimum == "":
        return None
    if minimum not in LOG_LEVELS:
        raise InvalidValue(f"level must be one of {', '.join(LOG_LEVELS)}, got {minimum!r}")
    return list(LOG_LEVELS[LOG_LEVELS.index(minimum):])


def kinds_from(text: str | None) -> list[str] | None:
    if text is None or text == "":
        return None
    kinds = text.split(",")
    unknown = [k for k in kinds if k not in EVENT_KINDS]
    if unknown:
        raise InvalidValue(f"kinds: unknown kind {unknown[0]!r}; use {', '.join(EVENT_KINDS)}")
    return kinds


def to_api(event: Event) -> RunEvent:
    return RunEvent(id=str(event.cursor), run_id=str(event.run_id), namespace=event.namespace,
                    task=event.task, kind=event.kind, attempt=event.attempt, ts=event.ts,
                    data=event.data)


def to_log_entry(event: Event) -> LogEntry:
    data = event.data
    fields = data.get("fields")
    return LogEntry(
        cursor=str(event.cursor), run_id=str(event.run_id), attempt=event.attempt or 0,
        step=data.get("step"), ts=event.ts, level=str(data.get("level", "info")),
        message=str(data.get("message", "")),
        fields=fields if isinstance(fields, dict) else {},
    )


@dataclass(frozen=True)
class Filter:
    """What a subscriber wants: one run or all runs (of a namespace, a task), some kinds,
    log lines of one attempt or some levels, from a time on."""

    run_id: uuid.UUID | None = None
    namespace: str | None = None
    task: str | None = None
    kinds: Sequence[str] | None = None
    attempt: int | None = None
    levels: Sequence[str] | None = None
    since: datetime | None = None

    def matches(self, e: Event) -> bool:
        if self.run_id is not None and e.run_id != self.run_id:
            return False
        if self.namespace is not None and e.namespace != self.namespace:
            return False
        if self.task is not None and e.task != self.task:
            return False
        if self.kinds is not None and e.kind not in self.kinds:
            return False
        if self.attempt is not None and e.kind == "log" and e.attempt != self.attempt:
            return False
        if self.levels is not None and e.kind == "log" and e.data.get("level") not in self.levels:
            return False
        return self.since is None or e.ts >= self.since


async def with_checkpoint_data(pool: asyncpg.Pool, batch: list[Event]) -> list[Event]:
    """``batch`` with each checkpoint event's stored JSON in ``data.data``, when the
    stored checkpoint is still the version the event records; else ``data.superseded``
    is true (the key was written again since: a later event carries that write).
    One query per batch."""
    wanted = list(dict.fromkeys(
        (e.run_id, str(e.data.get("key"))) for e in batch if e.kind == "checkpoint"))
    if not wanted:
        return batch
    stored = await checkpoints.versions(pool, wanted)
    out: list[Event] = []
    for e in batch:
        if e.kind != "checkpoint":
            out.append(e)
            continue
        now = stored.get((e.run_id, str(e.data.get("key"))))
        seq = e.data.get("seq")
        # Events written before migration 0016 carry no seq: attempt and size decide.
        same = now is not None and (
            now.seq == seq if seq is not None
            else (now.attempt == e.attempt and now.size_bytes == e.data.get("sizeBytes")))
        extra = {"data": now.data} if same and now is not None else {"superseded": True}
        out.append(dataclasses.replace(e, data={**e.data, **extra}, encoded={}))
    return out


async def read_logs(
    pool: asyncpg.Pool, run_id: uuid.UUID, *, after: Cursor | None, attempt: int | None,
    level: str | None, since: datetime | None, limit: int,
) -> tuple[list[LogEntry], Cursor]:
    """A page of a run's log lines after ``after`` and the cursor to continue from."""
    if not 1 <= limit <= 5000:
        raise InvalidValue(f"limit must be between 1 and 5000, got {limit}")
    levels = levels_from(level)
    if await runs.get(pool, run_id) is None:
        raise RunNotFound(f"no run {run_id}")
    found, cursor = await events.for_run(
        pool, run_id, after or events.START, kinds=["log"], attempt=attempt, levels=levels,
        since=since, limit=limit,
    )
    return [to_log_entry(e) for e in found], cursor


@dataclass(eq=False)
class Subscription:
    """One subscriber's place at the hub: a bounded queue of event batches."""

    filter: Filter
    capacity: int
    queue: asyncio.Queue[list[Event]] = field(default_factory=asyncio.Queue)
    # The cursor of the first hub tick that read on this subscriber's behalf.
    covered_from: Cursor | None = None
    covered: asyncio.Event = field(default_factory=asyncio.Event)
    lagged: bool = False
    closed: bool = False

    def deliver(self, batch: list[Event]) -> None:
        if self.lagged:
            return
        if self.queue.qsize() >= self.capacity:
            # A subscriber this far behind reads from the database instead: the hub
            # never waits for one slow client.
            self.lagged = True
            self.queue.put_nowait([])  # wakes the subscriber, which then sees `lagged`
            return
        self.queue.put_nowait(batch)


Listen = Callable[[], Awaitable[asyncpg.Connection]]


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class EventHub:
    """Reads new events for every subscriber of this process, one query per read.

    While events keep coming, the hub reads every ``interval`` seconds. Once a read
    finds nothing and nothing notified is still pending, it arms itself (migration
    0015: writers then NOTIFY ``waypost_events``) and sleeps until a NOTIFY wakes it,
    reading anyway every ``idle_poll`` seconds in case a writer did not notify (one
    of the previous release, or one whose snapshot predates the arming). Without a
    ``listen`` connection factory it polls every ``interval``.

    ``listen`` makes the pump's own connection: it LISTENs on it and reads on it
    too, with a generic plan (``store.events.reader_session``): planning the read
    anew every time cost Postgres as much CPU as running it, and a pooled
    connection's acquire and release cost the pump a third of its Python CPU per
    read. While that connection cannot be had, the pump reads from the pool.
    """

    def __init__(self, pool: asyncpg.Pool, *, interval: float = 0.02, batch: int = 2000,
                 capacity: int = 1000, listen: Listen | None = None,
                 idle_poll: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._interval = interval
        self._batch = batch
        self._capacity = capacity
        self._listen = listen
        self._idle_poll = idle_poll
        self._clock = clock
        self._subs: set[Subscription] = set()
        # Kept as subscribers come and go, so that a read costs nothing per subscriber.
        self._by_run: dict[uuid.UUID, set[Subscription]] = {}
        self._everyone: set[Subscription] = set()
        self._run_ids: events.RunIds | None = None
        # Subscribers the next read covers for the first time (see Subscription).
        self._uncovered: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        # Whether anything woke the pump since its last read, and the future its
        # sleep waits on (a plain future and timer: asyncio.timeout around an Event
        # raised and caught two exceptions per busy read).
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._reader = uuid.uuid4()
        self._conn: asyncpg.Connection | None = None
        self._listening = False
        self._listen_retry_at = 0.0
        # The newest transaction a NOTIFY named; read once the horizon is past it.
        self._notified_tx = 0
        self.ticks = 0
        self.notifications = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def _add(self, flt: Filter) -> Subscription:
        sub = Subscription(flt, self._capacity)
        self._subs.add(sub)
        self._uncovered.add(sub)
        if flt.run_id is None:
            self._everyone.add(sub)
        else:
            self._by_run.setdefault(flt.run_id, set()).add(sub)
        self._run_ids = None
        self._wake_up()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._pump())
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        self._uncovered.discard(sub)
        self._everyone.discard(sub)
        if sub.filter.run_id is not None:
            subs = self._by_run.get(sub.filter.run_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_run[sub.filter.run_id]
        self._run_ids = None

    async def close(self) -> None:
        """End every stream (each returns after its current event) and the pump."""
        self._closed = True
        for sub in self._subs:
            sub.closed = True
            sub.queue.put_nowait([])
            sub.covered.set()
        self._subs.clear()
        self._uncovered.clear()
        self._by_run.clear()
        self._everyone.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._unlisten()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        with contextlib.suppress(ValueError):
            self._notified_tx = max(self._notified_tx, int(payload))
        self._wake_up()

    def _wake_up(self) -> None:
        self._woken = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _connection(self) -> asyncpg.Connection | None:
        """The pump's own connection (see the class), or None: read from the pool."""
        if self._listen is None:
            return None
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn, self._listening = None, False
        if self._clock() < self._listen_retry_at:
            return None
        try:
            conn = await self._listen()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("event pump: no connection of its own, reading from the pool and "
                        "polling: %s", exc)
            self._listen_retry_at = self._clock() + 5.0
            return None
        try:
            await events.reader_session(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("event pump: cannot set up its connection: %s", exc)
            self._listen_retry_at = self._clock() + 5.0
            conn.terminate()
            return None
        self._conn = conn
        return conn

    async def _ensure_listening(self) -> bool:
        conn = await self._connection()
        if conn is None:
            return False
        if not self._listening:
            try:
                await conn.add_listener(notify.EVENTS_CHANNEL, self._on_notify)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("event pump: cannot listen for events, polling: %s", exc)
                self._listen_retry_at = self._clock() + 5.0
                await self._drop_connection()
                return False
            self._listening = True
        return True

    async def _drop_connection(self) -> None:
        conn, self._conn, self._listening = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                # A read cancelled by close() may leave it busy: terminate after a while.
                await conn.close(timeout=2.0)

    async def _unlisten(self) -> None:
        await self._drop_connection()
        with contextlib.suppress(Exception):
            await events.disarm_reader(self._pool, self._reader)

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until woken (a NOTIFY, a new subscriber) since the last
        read began; True if woken."""
        if self._woken:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._woken

    async def _pump(self) -> None:
        while True:
            await self._pump_while_subscribed()
            await self._unlisten()
            # No await between this check and the end of the task: a subscriber that
            # comes later finds the task done and starts a new one.
            if not self._subs or self._closed:
                return

    async def _pump_while_subscribed(self) -> None:
        cursor: Cursor | None = None
        armed_at: float | None = None  # monotonic time of the arming, None: disarmed
        armed_xmax: int | None = None  # the first read after arming: its snapshot's xmax
        arm_seconds = max(10.0, 5 * self._idle_poll)
        # Armed only after this long without new events: a read that found nothing in
        # a gap between two writers' commits does not make the next writers NOTIFY.
        quiet_seconds = max(5 * self._interval, 0.1)
        last_busy = self._clock()
        while self._subs:
            try:
                if cursor is None:
                    cursor = await events.horizon(self._pool)
                # Cleared before the read: a NOTIFY during it makes the next wait
                # return at once instead of being lost.
                self._woken = False
                # Busy while any run's events keep coming, not only the subscribers':
                # a hub that armed itself whenever its own runs were quiet would make
                # every writer of a busy system NOTIFY.
                started = self._clock()
                busy, cursor, xmax = await self._tick(cursor)
                if busy:
                    last_busy = started
                pending = self._notified_tx >= cursor.tx
                quiet = self._clock() - last_busy >= quiet_seconds
                if (busy or pending or (armed_at is None and not quiet)
                        or not await self._ensure_listening()):
                    if armed_at is not None:
                        # Busy: writers need not NOTIFY (it would serialise their
                        # commits); the reads come every interval anyway.
                        armed_at = None
                        await events.disarm_reader(self._pool, self._reader)
                    await self._sleep(self._until_next_read(started))
                    continue
                if armed_at is None or self._clock() - armed_at > arm_seconds / 2:
                    await events.arm_reader(self._pool, self._reader, arm_seconds)
                    armed_at, armed_xmax = self._clock(), None
                    continue  # this read's snapshot predates the arming: read again
                if armed_xmax is None:
                    armed_xmax = xmax
                if cursor.tx < armed_xmax:
                    # A transaction that began before the arming may write events
                    # without a NOTIFY: poll until every one of them has ended.
                    await self._sleep(self._until_next_read(started))
                    continue
                await self._sleep(self._idle_poll)
            except store_pool.UNAVAILABLE_ERRORS as exc:
                log.warning("event pump: store unavailable: %s", exc)
                armed_at = None
                await self._drop_connection()  # made again by the next read
                await asyncio.sleep(1.0)

    def _until_next_read(self, started: float) -> float:
        """Busy reads start every ``interval`` (start to start): a commit waits at most
        one interval plus one read for the read that sees it, not an interval after a
        read that may itself have taken as long. A read that overran still leaves a
        quarter interval, so a loaded machine does not get a pump reading flat out."""
        return max(self._interval - (self._clock() - started), self._interval / 4)

    async def _tick(self, cursor: Cursor) -> tuple[bool, Cursor, int]:
        """Read and hand out everything new; whether any run had new events (for
        these subscribers or not), the next cursor and the xmax of the last read's
        snapshot."""
        for sub in self._uncovered:
            sub.covered_from = cursor
            sub.covered.set()
        self._uncovered.clear()
        if self._everyone:
            run_ids = None
        else:
            if self._run_ids is None:
                self._run_ids = events.RunIds(tuple(self._by_run))
            run_ids = self._run_ids
        any_new = False
        db: asyncpg.Pool | asyncpg.Connection = await self._connection() or self._pool
        while True:
            read = await events.read_everyone(db, cursor, run_ids=run_ids, limit=self._batch)
            self.ticks += 1
            any_new = any_new or read.any_new
            batches: dict[Subscription, list[Event]] = {}
            for e in read.events:
                for sub in (*self._by_run.get(e.run_id, ()), *self._everyone):
                    if sub.filter.matches(e):
                        batches.setdefault(sub, []).append(e)
            for sub, batch in batches.items():
                sub.deliver(batch)
            cursor = read.cursor
            if len(read.events) < self._batch:
                return any_new, cursor, read.xmax

    async def stream(
        self, flt: Filter, after: Cursor | None, *, heartbeat: float,
    ) -> AsyncGenerator[list[Event], None]:
        """Batches of the events matching ``flt`` after ``after`` (None: from the hub's
        position, i.e. from now), oldest first, then live ones; an empty batch once the
        stored ones are sent (caught up), and every ``heartbeat`` seconds without an
        event, so that the caller can keep its connection alive."""
        while not self._closed:
            sub = self._add(flt)
            try:
                await sub.covered.wait()
                if sub.closed or sub.covered_from is None:
                    return
                cursor = after if after is not None else sub.covered_from
                # Catch up from the database to at least the hub's first tick.
                while True:
                    page, next_cursor, full = await self._catch_up(flt, cursor)
                    if page:
                        yield page
                    cursor = next_cursor
                    if not full and cursor >= sub.covered_from:
                        break
                yield []
                while not sub.lagged:
                    if sub.closed:
                        return
                    try:
                        async with asyncio.timeout(heartbeat):
                            batch = await sub.queue.get()
                    except TimeoutError:
                        yield []
                        continue
                    fresh = [e for e in batch if e.cursor > cursor]
                    if fresh:
                        cursor = fresh[-1].cursor
                        yield fresh
                after = cursor
            finally:
                self._remove(sub)

    async def _catch_up(self, flt: Filter, cursor: Cursor) -> tuple[list[Event], Cursor, bool]:
        """One page from the database after ``cursor``; whether the page was full."""
        if flt.run_id is not None:
            found, next_cursor = await events.for_run(
                self._pool, flt.run_id, cursor, kinds=flt.kinds, attempt=flt.attempt,
                levels=flt.levels, since=flt.since, limit=self._batch,
            )
            return found, next_cursor, len(found) >= self._batch
        found, next_cursor = await events.everyone_after(
            self._pool, cursor, namespace=flt.namespace, task=flt.task, limit=self._batch)
        return [e for e in found if flt.matches(e)], next_cursor, len(found) >= self._batch
