"""Cron schedules fire exactly one run per tick: controllable clock, real Postgres."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import factories
from waypost.engine import control, cron
from waypost.engine.clock import FakeClock
from waypost.engine.core import Engine
from waypost.engine.scheduler import Scheduler, UnknownSchedule, trigger_now
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone
from waypost.store import runs, schedules
from waypost.store.pool import RawJson

REPO = Path(__file__).resolve().parents[2]
NS = "default"
START = datetime(2026, 1, 1, 11, 59, 55, tzinfo=UTC)


def _at(hour: int, minute: int, second: int = 0, *, day: int = 1, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
async def open_engine(database_url: str) -> AsyncIterator[Callable[[FakeClock], Any]]:
    """Engines on the test database, each with its own pool, closed at the end."""
    opened: list[Engine] = []

    async def make(clock: FakeClock) -> Engine:
        engine = await Engine.open(
            factories.settings(database_url), clock=clock, migrate_schema=False, pool_size=4
        )
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        await engine.close()


async def _register(engine: Engine, task: str = "report", *schedule: dict[str, Any]) -> list[str]:
    spec = TaskSpec.model_validate({"entrypoint": "m:f", "schedules": list(schedule)})
    problems = await control.register_task(
        engine, TaskDefinition(namespace=NS, name=task, spec=spec)
    )
    return [str(p) for p in problems]


async def _keys(db: asyncpg.Pool, task: str = "report") -> list[str]:
    """Idempotency keys of the task's scheduled runs, in the order they were queued."""
    rows = await db.fetch(
        "SELECT idempotency_key, source FROM runs WHERE namespace = $1 AND task = $2 "
        "ORDER BY seq", NS, task)
    assert {r["source"] for r in rows} <= {"schedule"}
    return [r["idempotency_key"] for r in rows]


def _key(name: str, when: datetime) -> str:
    return cron.fire_key(name, when)


async def _tick_until(clock: FakeClock, until: datetime, *schedulers: Scheduler,
                      step: float = 10.0) -> None:
    """Tick every ``step`` simulated seconds up to and including ``until``."""
    while clock.now() + timedelta(seconds=step) <= until:
        clock.advance(step)
        await asyncio.gather(*[s.tick() for s in schedulers])


async def test_per_minute_schedule_over_ten_minutes_makes_ten_runs(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    assert await _register(engine, "report", {"name": "every-minute", "cron": "* * * * *",
                                              "payload": {"kind": "minutely"}}) == []
    scheduler = Scheduler(engine, clock)
    await _tick_until(clock, START + timedelta(minutes=10), scheduler)  # 60 ticks
    assert clock.now() == _at(12, 9, 55)
    assert await _keys(db) == [_key("every-minute", _at(12, m)) for m in range(10)]
    payloads = await db.fetch("SELECT payload, status FROM runs")
    assert {(str(r["payload"]), r["status"]) for r in payloads} == {
        ("{'kind': 'minutely'}", "queued")}
    [stored] = await schedules.list_schedules(db)
    assert stored.next_fire_at == _at(12, 10)
    assert stored.last_fire_at == _at(12, 9)
    assert stored.last_error is None


@pytest.mark.parametrize(
    ("policy", "expected_gap_minutes"),
    [
        ({"missedRuns": "Skip"}, []),
        ({"missedRuns": "Catchup"}, [1, 2, 3, 4, 5]),
        ({"missedRuns": "Catchup", "catchupLimit": 3}, [3, 4, 5]),
    ],
)
async def test_missed_ticks_after_downtime(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool, policy: dict[str, Any],
    expected_gap_minutes: list[int],
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", {"name": "m", "cron": "* * * * *", **policy})
    scheduler = Scheduler(engine, clock)
    await _tick_until(clock, _at(12, 0, 5), scheduler)
    assert await _keys(db) == [_key("m", _at(12, 0))]
    # The scheduler is down through the ticks 12:01 … 12:05 and back at 12:05:30.
    clock.set(_at(12, 5, 30))
    result = await scheduler.tick()
    assert [f.fire_time for f in result.firings] == [_at(12, m) for m in expected_gap_minutes]
    # Then the next tick fires as usual.
    await _tick_until(clock, _at(12, 6, 5), scheduler)
    assert await _keys(db) == [
        _key("m", _at(12, 0)), *[_key("m", _at(12, m)) for m in expected_gap_minutes],
        _key("m", _at(12, 6))]


async def test_skip_still_fires_a_tick_within_the_grace(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", {"name": "m", "cron": "* * * * *"})
    scheduler = Scheduler(engine, clock, interval_seconds=10, grace_seconds=5)
    await _tick_until(clock, _at(12, 0, 5), scheduler)
    # Back 12 s after the 12:05 tick (within interval + grace): 12:01-12:04 are
    # missed and skipped, 12:05 is on time and fires.
    clock.set(_at(12, 5, 12))
    await scheduler.tick()
    assert await _keys(db) == [_key("m", _at(12, 0)), _key("m", _at(12, 5))]


async def test_racing_schedulers_make_one_run_per_tick(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    first, second = await open_engine(clock), await open_engine(clock)
    await _register(first, "report", {"name": "m", "cron": "* * * * *"},
                    {"name": "c", "cron": "* * * * *", "missedRuns": "Catchup"})
    a, b = Scheduler(first, clock), Scheduler(second, clock)
    # Both tick at the same moments for ten minutes.
    await _tick_until(clock, START + timedelta(minutes=10), a, b)
    keys = await _keys(db)
    assert sorted(keys) == sorted(
        [_key(n, _at(12, m)) for m in range(10) for n in ("m", "c")])
    # And after downtime both race over a catch-up: still one run per tick.
    clock.set(_at(12, 15, 1))
    await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())
    caught_up = [k for k in await _keys(db) if k not in keys]
    assert sorted(caught_up) == sorted(
        [_key("c", _at(12, m)) for m in range(10, 16)] + [_key("m", _at(12, 15))])
    # The catch-up went in tick order.
    assert [k for k in caught_up if k.startswith("schedule:c:")] == [
        _key("c", _at(12, m)) for m in range(10, 16)]


async def test_scheduler_killed_between_enqueue_and_advance(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", {"name": "m", "cron": "* * * * *"})
    clock.set(_at(12, 0, 3))

    # A scheduler that locked the schedule and enqueued the 12:00 firing dies
    # before it advances next_fire_at: its transaction rolls back.
    conn = await engine.pool.acquire()
    tx = conn.transaction()
    await tx.start()
    [due] = await schedules.lock_due(conn, clock.now(), 10)
    assert due.name == "m" and due.next_fire_at == _at(12, 0)
    assert await runs.enqueue(
        conn, namespace=NS, task="report", run_id=uuid.uuid4(),
        payload=RawJson("null"), priority=None, idempotency_key=_key("m", _at(12, 0)),
        concurrency_key=None, trace_id="0" * 32, source="schedule")
    # While it hangs holding the row, another scheduler skips it (SKIP LOCKED)…
    other = Scheduler(await open_engine(clock), clock)
    assert (await other.tick()).firings == []
    # …and when it dies nothing it wrote is left.
    await tx.rollback()
    await engine.pool.release(conn)
    assert await _keys(db) == []

    # A firing that did get committed without the advance (as a scheduler that
    # wrote them in two transactions would leave it) is not repeated either.
    assert await runs.enqueue(
        db, namespace=NS, task="report", run_id=uuid.uuid4(),
        payload=RawJson("null"), priority=None, idempotency_key=_key("m", _at(12, 0)),
        concurrency_key=None, trace_id="0" * 32, source="schedule")
    scheduler = Scheduler(engine, clock)
    result = await scheduler.tick()
    assert [(f.fire_time, f.run_id) for f in result.firings] == [(_at(12, 0), None)]
    await _tick_until(clock, _at(12, 2, 5), scheduler, other)
    assert await _keys(db) == [_key("m", _at(12, m)) for m in range(3)]


async def test_europe_berlin_daylight_saving(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    """As documented in waypost.engine.cron: 02:30 daily runs at 03:00 CEST on the
    spring-forward day, and twice (both 02:30s) on the fall-back day."""
    clock = FakeClock(_at(12, 0, day=27, month=3))
    engine = await open_engine(clock)
    await _register(engine, "report",
                    {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin"})
    # Ticks every simulated 10 minutes (interval matched) over three days.
    scheduler = Scheduler(engine, clock, interval_seconds=600)
    await _tick_until(clock, _at(12, 0, day=30, month=3), scheduler, step=600)
    assert await _keys(db) == [
        _key("nightly", _at(1, 30, day=28, month=3)),  # 02:30 CET
        _key("nightly", _at(1, 0, day=29, month=3)),   # 03:00 CEST: 02:30 does not exist
        _key("nightly", _at(0, 30, day=30, month=3)),  # 02:30 CEST
    ]
    await db.execute("DELETE FROM runs")
    clock.set(_at(12, 0, day=24, month=10))
    await scheduler.tick()  # the schedule moves on past the time it was away (Skip)
    await _tick_until(clock, _at(12, 0, day=26, month=10), scheduler, step=600)
    assert await _keys(db) == [
        _key("nightly", _at(0, 30, day=25, month=10)),  # 02:30 CEST
        _key("nightly", _at(1, 30, day=25, month=10)),  # 02:30 CET, the repeated hour
        _key("nightly", _at(1, 30, day=26, month=10)),  # 02:30 CET
    ]


async def test_malformed_schedule_is_parked_and_the_others_fire(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    problems = await _register(
        engine, "report",
        {"name": "good", "cron": "* * * * *"},
        {"name": "never", "cron": "0 0 31 2 *"},
        {"name": "nowhere", "cron": "* * * * *", "timezone": "Mars/Olympus_Mons"},
        {"name": "broken-later", "cron": "* * * * *"},
    )
    assert problems == [
        "schedule 'never': cron '0 0 31 2 *' never fires (no date matches all its fields)",
        "schedule 'nowhere': timezone 'Mars/Olympus_Mons' is not a known IANA time zone "
        "(like Europe/Berlin)",
    ]
    # A row that became malformed in the store somehow.
    await db.execute("UPDATE schedules SET cron = 'not a cron' WHERE name = 'broken-later'")
    scheduler = Scheduler(engine, clock)
    await _tick_until(clock, _at(12, 1, 5), scheduler)
    assert await _keys(db) == [_key("good", _at(12, 0)), _key("good", _at(12, 1))]
    by_name = {s.name: s for s in await schedules.list_schedules(db)}
    assert by_name["good"].last_error is None
    assert by_name["broken-later"].next_fire_at is None
    assert "cron 'not a cron'" in (by_name["broken-later"].last_error or "")
    assert by_name["never"].next_fire_at is None and "never fires" in (
        by_name["never"].last_error or "")
    # Fixing it in the spec starts it again from now.
    await _register(engine, "report", {"name": "good", "cron": "* * * * *"},
                    {"name": "broken-later", "cron": "*/2 * * * *"})
    by_name = {s.name: s for s in await schedules.list_schedules(db)}
    assert set(by_name) == {"good", "broken-later"}
    assert by_name["broken-later"].next_fire_at == _at(12, 2)
    assert by_name["broken-later"].last_error is None


async def test_sync_keeps_next_fire_time_unless_the_cron_changes(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", {"name": "h", "cron": "@hourly"},
                    {"name": "d", "cron": "0 6 * * *", "timezone": "Europe/Berlin"})
    first = {s.name: s.next_fire_at for s in await schedules.list_schedules(db)}
    assert first == {"h": _at(12, 0), "d": _at(5, 0, day=2)}
    # Re-applied later with the same cron (payload changed): next fire time kept,
    # so a tick that is due is still fired, not skipped.
    clock.set(_at(12, 0, 4))
    await _register(engine, "report", {"name": "h", "cron": "@hourly", "payload": 1},
                    {"name": "d", "cron": "0 7 * * *", "timezone": "Europe/Berlin"})
    second = {s.name: s.next_fire_at for s in await schedules.list_schedules(db)}
    assert second == {"h": _at(12, 0), "d": _at(6, 0, day=2)}
    await Scheduler(engine, clock).tick()
    assert await _keys(db) == [_key("h", _at(12, 0))]
    # Suspended schedules do not fire; resumed, they start from now (no catch-up
    # of the suspended time).
    await _register(engine, "report", {"name": "h", "cron": "@hourly", "suspend": True,
                                       "missedRuns": "Catchup"})
    clock.set(_at(15, 30))
    assert (await Scheduler(engine, clock).tick()).firings == []
    await _register(engine, "report", {"name": "h", "cron": "@hourly", "missedRuns": "Catchup"})
    [h] = await schedules.list_schedules(db)
    assert h.next_fire_at == _at(16, 0)
    # Deleting the Task removes its schedules.
    await control.delete_task(engine, NS, "report")
    assert await db.fetchval("SELECT count(*) FROM schedules") == 0


async def test_trigger_now_uses_a_fresh_key_and_keeps_the_schedule(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", {"name": "h", "cron": "@hourly", "payload": {"x": 1}})
    run_a, key_a = await trigger_now(engine, NS, "report", "h")
    run_b, key_b = await trigger_now(engine, NS, "report", "h")
    assert run_a != run_b and key_a != key_b
    assert key_a.startswith("schedule:h:manual:2026-01-01T11:59:55Z:")
    run = await control.get(engine, run_a)
    assert run.payload == {"x": 1} and run.source == "schedule"
    [h] = await schedules.list_schedules(db)
    assert h.next_fire_at == _at(12, 0) and h.last_fire_at is None
    with pytest.raises(UnknownSchedule):
        await trigger_now(engine, NS, "report", "nope")


async def test_run_loop_ticks_every_interval_until_stopped(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    stop = asyncio.Event()
    end = START + timedelta(minutes=3)

    class StoppingClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds)
            if self.now() >= end:
                stop.set()

    clock = StoppingClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", {"name": "m", "cron": "* * * * *"})
    scheduler = Scheduler(engine)  # the engine's clock; interval from settings (10 s)
    assert scheduler.interval_seconds == 10.0
    await asyncio.wait_for(scheduler.run(stop), 30)
    assert await _keys(db) == [_key("m", _at(12, m)) for m in range(3)]


async def test_a_former_leader_fires_nothing(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", {"name": "m", "cron": "* * * * *"})
    await db.execute("INSERT INTO leadership (epoch, holder) VALUES (2, 'new-leader')")
    clock.set(_at(12, 0, 1))
    engine.leader_epoch = 1
    assert (await Scheduler(engine, clock).tick()).firings == []
    assert await _keys(db) == []
    engine.leader_epoch = 2
    assert len((await Scheduler(engine, clock).tick()).firings) == 1
    assert await _keys(db) == [_key("m", _at(12, 0))]


async def test_cli_lists_and_triggers_schedules(database_url: str) -> None:
    async def waypost(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "waypost.cli", *args], cwd=REPO,
            env={**os.environ, "WAYPOST_URL": app.url}, capture_output=True, text=True,
            timeout=60, check=False)

    app = await Standalone(factories.settings(database_url), dispatch=False).start()
    try:
        await _register(app.engine, "report",
                        {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
                         "payload": {"from": "cli"}},
                        {"name": "paused", "cron": "@hourly", "suspend": True})
        listed = await waypost("schedules", "list", "-o", "wide")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:7] == ["NAMESPACE", "TASK", "NAME", "CRON", "TIMEZONE", "NEXT",
                                        "NEXT-AT"]
        nightly = next(line for line in lines if "nightly" in line)
        [stored] = [s for s in await schedules.list_schedules(app.engine.pool)
                    if s.name == "nightly"]
        assert stored.next_fire_at is not None
        assert stored.next_fire_at.strftime("%Y-%m-%dT%H:%M:%S") in nightly
        assert "Europe/Berlin" in nightly and "30 2 * * *" in nightly
        assert "suspended" in next(line for line in lines if "paused" in line)

        fired = await waypost("schedules", "trigger", "report", "nightly")
        assert fired.returncode == 0, fired.stderr
        assert "schedule:nightly:manual:" in fired.stdout
        run_id = fired.stdout.split()[2]
        run = await control.get(app.engine, uuid.UUID(run_id))
        assert run.payload == {"from": "cli"} and run.source == "schedule"

        missing = await waypost("schedules", "trigger", "report", "nope")
        assert missing.returncode == 1
        assert "no schedule 'nope' on task 'report'" in missing.stderr
        assert "unknown_schedule" in missing.stderr
    finally:
        await app.stop()


async def test_a_pass_fires_every_due_schedule_batch_by_batch(
    open_engine: Callable[[FakeClock], Any], db: asyncpg.Pool
) -> None:
    clock = FakeClock(START)
    engine = await open_engine(clock)
    await _register(engine, "report", *[{"name": f"s{i}", "cron": "* * * * *"} for i in range(7)])
    clock.set(_at(12, 0, 1))
    result = await Scheduler(engine, clock, batch_size=3).tick()
    assert result.runs_created == 7
    assert sorted(await _keys(db)) == sorted(_key(f"s{i}", _at(12, 0)) for i in range(7))


async def test_one_schedule_failing_does_not_stop_the_others(database_url: str,
                                                             db: asyncpg.Pool) -> None:
    clock = FakeClock(START)
    engine = await Engine.open(factories.settings(database_url, limits={"payload_bytes": 64}),
                               clock=clock, migrate_schema=False, pool_size=2)
    try:
        await _register(engine, "report",
                        {"name": "good", "cron": "* * * * *"},
                        {"name": "huge", "cron": "* * * * *", "payload": "x" * 100},
                        {"name": "refused", "cron": "* * * * *"})
        # The database refuses the runs of one schedule (a stand-in for any error).
        await db.execute("ALTER TABLE runs ADD CONSTRAINT no_refused "
                         "CHECK (idempotency_key NOT LIKE 'schedule:refused:%')")
        clock.set(_at(12, 0, 1))
        result = await Scheduler(engine, clock).tick()
        assert [f.schedule for f in result.firings] == ["good"]
        assert "over the limit of 64 bytes" in result.errors["default/report/huge"]
        assert "CheckViolationError" in result.errors["default/report/refused"]
        assert await _keys(db) == [_key("good", _at(12, 0))]
        by_name = {s.name: s for s in await schedules.list_schedules(db)}
        # Too large a payload: try again at the next tick. A database error: the
        # tick stays due and the next pass tries it again.
        assert by_name["huge"].next_fire_at == _at(12, 1)
        assert by_name["refused"].next_fire_at == _at(12, 0)
        assert by_name["refused"].last_error is not None
        await db.execute("ALTER TABLE runs DROP CONSTRAINT no_refused")
        clock.set(_at(12, 0, 9))
        await Scheduler(engine, clock).tick()
        assert sorted(await _keys(db)) == sorted(
            [_key("good", _at(12, 0)), _key("refused", _at(12, 0))])
        refused = await schedules.get(db, NS, "report", "refused")
        assert refused is not None and refused.last_error is None
    finally:
        await engine.close()
