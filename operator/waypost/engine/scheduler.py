"""The scheduler: fires the cron schedules of Tasks into runs.

Leader only: with ``engine.leader_epoch`` set, a pass changes nothing unless
that epoch is still the current one in the store. Every ``interval_seconds``
(``Settings.schedule_interval_seconds``, ``WAYPOST_SCHEDULE_INTERVAL``, 10 s by
default) a pass locks the schedules whose ``next_fire_at`` has passed by the
injected clock (``FOR UPDATE SKIP LOCKED``) and, for each, in one transaction,
enqueues its firings and advances ``next_fire_at``. A firing's idempotency key
is ``schedule:<name>:<fire time in UTC>`` (unique per Task), so a scheduler
that dies between the two writes (the transaction rolls back), or two
schedulers on the same ticks (one skips the locked row, or the key refuses the
second insert), still make exactly one run per tick. Runs get ``source='schedule'``.

Missed ticks, that is ticks more than ``interval_seconds + grace_seconds`` in
the past when a pass sees them (after downtime, a failover or a long stall):

- ``Skip`` (the default) fires none of them. Only the newest due tick that is
  not yet missed fires; the schedule then moves on to its next tick after now.
- ``Catchup`` fires the due ticks in order, oldest first, at most
  ``catchupLimit`` of them: when more were missed, the *newest* ``catchupLimit``
  ticks are kept and the older ones dropped (a catch-up never runs work older
  than it has to).

A schedule that cannot fire (malformed cron or timezone stored somehow, a payload
over the size limit, a database error for that one schedule) gets ``last_error``
and the other schedules carry on. A malformed one is parked (``next_fire_at``
NULL) until its Task is applied again with a fixed schedule.

Schedules are kept in step with ``Task.spec.schedules`` by ``sync_schedules``
(called by ``control.register_task``): an unchanged cron and timezone keep the
stored next fire time, a changed one (or a resumed one) starts from now, and
schedules no longer in the spec are removed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from waypost import aiotime
from waypost.engine import cron, encoding
from waypost.engine.clock import Clock
from waypost.engine.core import Engine
from waypost.engine.errors import EngineError, UnknownTask
from waypost.model.enums import MissedRunPolicy
from waypost.model.schedule import ScheduleInfo
from waypost.model.task import TaskDefinition
from waypost.store import pool as store_pool
from waypost.store import runs, schedules
from waypost.store.schedules import StoredSchedule

log = logging.getLogger("waypost.engine.scheduler")

SOURCE = "schedule"
_MAX_BATCHES_PER_TICK = 100


@dataclass(frozen=True)
class Firing:
    namespace: str
    task: str
    schedule: str
    fire_time: datetime
    run_id: uuid.UUID | None
    """The new run, or None when the key was used already (or the Task is gone)."""


@dataclass
class TickResult:
    """What one pass did."""

    firings: list[Firing] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """``namespace/task/schedule`` -> the error recorded for it."""

    @property
    def runs_created(self) -> int:
        return sum(1 for f in self.firings if f.run_id is not None)


async def sync_schedules(
    db: asyncpg.Pool | asyncpg.Connection, definition: TaskDefinition, now: datetime
) -> list[cron.InvalidSchedule]:
    """Store a Task's schedules and drop the ones its spec no longer has.

    Malformed schedules are stored parked, with ``last_error``; they are returned
    so the caller can report them (Ready=False, reason InvalidSchedule). Call it in
    the transaction that stores the Task.
    """
    problems: list[cron.InvalidSchedule] = []
    for schedule in definition.spec.schedules:
        try:
            next_fire: datetime | None = cron.validate(schedule).next_after(now)
            error = None
        except cron.InvalidSchedule as exc:
            problems.append(exc)
            next_fire, error = None, str(exc)
        await schedules.upsert(
            db, definition.namespace, definition.name, schedule,
            next_fire_at=next_fire, error=error,
        )
    await schedules.remove_others(
        db, definition.namespace, definition.name,
        [s.name for s in definition.spec.schedules],
    )
    return problems


class Scheduler:
    """Fires due schedules; ``tick`` is one pass, ``run`` loops until stopped."""

    def __init__(
        self, engine: Engine, clock: Clock | None = None, *, interval_seconds: float | None = None,
        grace_seconds: float = 5.0, batch_size: int = 100,
    ) -> None:
        if interval_seconds is None:
            interval_seconds = engine.settings.schedule_interval_seconds
        if interval_seconds <= 0 or grace_seconds < 0 or batch_size < 1:
            raise ValueError("interval_seconds > 0, grace_seconds >= 0 and batch_size >= 1")
        self.engine = engine
        self.clock = clock or engine.clock
        self.interval_seconds = interval_seconds
        self.grace_seconds = grace_seconds
        self.batch_size = batch_size

    @property
    def on_time_window(self) -> timedelta:
        """A tick older than this when a pass sees it counts as missed."""
        return timedelta(seconds=self.interval_seconds + self.grace_seconds)

    async def tick(self) -> TickResult:
        """One pass: fire every due schedule as of the clock's now.

        Due schedules are taken ``batch_size`` at a time, each batch in its own
        transaction, until none is left (or a batch only met database errors).
        """
        now = self.clock.now()
        result = TickResult()
        for _ in range(_MAX_BATCHES_PER_TICK):
            locked, progressed = await self._batch(now, result)
            if locked < self.batch_size or not progressed:
                break
        for f in result.firings:
            if f.run_id is not None:
                log.info("schedule %s/%s/%s fired for %s: run %s", f.namespace, f.task,
                         f.schedule, f.fire_time.isoformat(), f.run_id)
        return result

    async def _batch(self, now: datetime, result: TickResult) -> tuple[int, bool]:
        """Fire one batch of due schedules; returns how many were locked and whether
        any of them moved on (fired, skipped or parked)."""
        progressed = False
        async with self.engine.pool.acquire() as conn, conn.transaction():
            due = await schedules.lock_due(conn, now, self.batch_size, self.engine.leader_epoch)
            for s in due:
                ident = f"{s.namespace}/{s.task}/{s.name}"
                try:
                    async with conn.transaction():  # a savepoint: one schedule's failure
                        firings = await self._fire(conn, s, now)
                    result.firings.extend(firings)
                    progressed = True
                except cron.InvalidSchedule as exc:
                    result.errors[ident] = str(exc)
                    log.warning("schedule %s is malformed and parked: %s", ident, exc)
                    await schedules.record_error(conn, s, str(exc), next_fire_at=None)
                    progressed = True
                except EngineError as exc:
                    # The payload cannot be sent; try again at the next tick.
                    result.errors[ident] = exc.message
                    log.warning("schedule %s cannot fire: %s", ident, exc.message)
                    await schedules.record_error(
                        conn, s, exc.message, next_fire_at=self._next_or_none(s, now)
                    )
                    progressed = True
                except asyncpg.PostgresError as exc:
                    # That schedule's writes were rolled back to the savepoint; it
                    # stays due and is tried again by the next pass.
                    result.errors[ident] = f"{type(exc).__name__}: {exc}"
                    log.warning("schedule %s failed to fire: %s", ident, exc)
                    await schedules.record_error(
                        conn, s, result.errors[ident], next_fire_at=s.next_fire_at
                    )
        return len(due), progressed

    async def _fire(
        self, conn: asyncpg.Connection, s: StoredSchedule, now: datetime
    ) -> list[Firing]:
        parsed = cron.parse(s.name, s.cron, s.timezone)
        assert s.next_fire_at is not None  # lock_due selects only scheduled rows
        if s.missed_runs is MissedRunPolicy.CATCHUP:
            fire_times = parsed.due(s.next_fire_at, now, s.catchup_limit)
        else:
            fire_times = parsed.due(max(s.next_fire_at, now - self.on_time_window), now, 1)
        payload = encoding.encode_limited(
            s.payload, self.engine.settings.limits.payload_bytes, f"schedule {s.name!r} payload"
        )
        firings: list[Firing] = []
        for fire_time in fire_times:
            run_id = uuid.uuid4()
            inserted = await runs.enqueue(
                conn, namespace=s.namespace, task=s.task, run_id=run_id, payload=payload,
                priority=None, idempotency_key=cron.fire_key(s.name, fire_time),
                concurrency_key=None, trace_id=secrets.token_hex(16), source=SOURCE,
            )
            firings.append(Firing(s.namespace, s.task, s.name, fire_time,
                                  run_id if inserted else None))
        await schedules.advance(
            conn, s, next_fire_at=parsed.next_after(now),
            last_fire_at=fire_times[-1] if fire_times else None,
        )
        return firings

    @staticmethod
    def _next_or_none(s: StoredSchedule, now: datetime) -> datetime | None:
        try:
            return cron.parse(s.name, s.cron, s.timezone).next_after(now)
        except cron.InvalidSchedule:
            return None

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval_seconds`` until ``stop`` is set; outages are waited out."""
        failures = 0
        while not stop.is_set():
            try:
                await self.tick()
                failures = 0
                delay = self.interval_seconds
            except (*store_pool.UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                failures += 1
                log.warning("scheduler cannot reach the store: %s", exc)
                delay = aiotime.reconnect_delay(
                    failures, ceiling=min(aiotime.RECONNECT_MAX_SECONDS, self.interval_seconds))
            await aiotime.sleep(delay, stop, sleeper=self.clock.sleep)


async def trigger_now(
    engine: Engine, namespace: str, task: str, name: str, *, clock: Clock | None = None,
) -> tuple[uuid.UUID, str]:
    """Fire a schedule once, now, outside its cron times (``waypost schedules trigger``).

    The run gets a fresh idempotency key ``schedule:<name>:manual:<time>:<random>``;
    the schedule's next fire time is not changed. Returns the run id and the key.
    """
    stored = await schedules.get(engine.pool, namespace, task, name)
    if stored is None:
        raise UnknownSchedule(f"no schedule {name!r} on task {task!r} in namespace {namespace!r}")
    now = (clock or engine.clock).now()
    payload = encoding.encode_limited(
        stored.payload, engine.settings.limits.payload_bytes, f"schedule {name!r} payload"
    )
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    key = f"schedule:{name}:manual:{stamp}:{secrets.token_hex(4)}"
    run_id = uuid.uuid4()
    inserted = await runs.enqueue(
        engine.pool, namespace=namespace, task=task, run_id=run_id, payload=payload,
        priority=None, idempotency_key=key, concurrency_key=None,
        trace_id=secrets.token_hex(16), source=SOURCE,
    )
    if not inserted:
        raise UnknownTask(f"no task {task!r} in namespace {namespace!r}")
    return run_id, key


class UnknownSchedule(EngineError):
    code = "unknown_schedule"
    status = 404


async def list_schedules(
    engine: Engine, *, namespace: str | None = None, task: str | None = None
) -> list[ScheduleInfo]:
    """The schedules of active Tasks with their next and last fire times."""
    return [
        ScheduleInfo(
            namespace=s.namespace, task=s.task, name=s.name, cron=s.cron, timezone=s.timezone,
            payload=s.payload, missed_runs=s.missed_runs, catchup_limit=s.catchup_limit,
            suspended=s.suspended, next_fire_at=s.next_fire_at, last_fire_at=s.last_fire_at,
            last_error=s.last_error,
        )
        for s in await schedules.list_schedules(engine.pool, namespace, task)
    ]
