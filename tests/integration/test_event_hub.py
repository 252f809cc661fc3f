"""The event pump on a real Postgres: an idle hub sleeps until a writer's NOTIFY
(migration 0015), a writer that began before the hub armed itself is still read at
once, without a LISTEN connection the hub polls; checkpoint data when asked."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.factories import register_task
from waypost.engine import events as run_events
from waypost.engine.events import EventHub, Filter, Listen
from waypost.store import checkpoints, runs, sql
from waypost.store import events as store_events
from waypost.store import pool as store_pool
from waypost.store.events import Event
from waypost.store.pool import RawJson

# Long enough that an event delivered within a second cannot have come by the
# hub's idle poll.
IDLE_POLL = 30.0


async def enqueue(db: asyncpg.Pool | asyncpg.Connection) -> uuid.UUID:
    return await enqueue_as(db, uuid.uuid4())


async def enqueue_as(db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID) -> uuid.UUID:
    assert await runs.enqueue(
        db, namespace="default", task="t", run_id=run_id, payload=RawJson("{}"), priority=None,
        idempotency_key=None, concurrency_key=None, trace_id="0" * 32, source="test")
    return run_id


@pytest.fixture
async def hub(database_url: str, db: asyncpg.Pool) -> AsyncIterator[EventHub]:
    await register_task(db)
    hub = EventHub(db, interval=0.02, idle_poll=IDLE_POLL,
                   listen=lambda: store_pool.connect(database_url))
    try:
        yield hub
    finally:
        await hub.close()


async def first_event_of(hub: EventHub, run_id: uuid.UUID) -> Event:
    async for batch in hub.stream(Filter(task="t"), None, heartbeat=60):
        for e in batch:
            if e.run_id == run_id:
                return e
    raise AssertionError("the stream ended")


async def until_armed(db: asyncpg.Pool, hub: EventHub, quiet: float = 0.3) -> None:
    """Wait until the hub has armed itself and stopped reading."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        armed = await db.fetchval(
            "SELECT count(*) FROM run_event_readers WHERE armed_until > now()")
        ticks = hub.ticks
        await asyncio.sleep(quiet)
        if armed and hub.ticks == ticks:
            return
    raise AssertionError("the hub never went to sleep")


async def test_an_idle_hub_sleeps_until_a_writer_notifies_it(
    hub: EventHub, db: asyncpg.Pool
) -> None:
    follower = asyncio.create_task(first_event_of(hub, run_id := uuid.uuid4()))
    await until_armed(db, hub)
    ticks = hub.ticks
    await asyncio.sleep(1.0)
    # Polling every 20 ms would have read 50 times.
    assert hub.ticks - ticks <= 1
    committed = time.monotonic()
    assert await runs.enqueue(
        db, namespace="default", task="t", run_id=run_id, payload=RawJson("{}"), priority=None,
        idempotency_key=None, concurrency_key=None, trace_id="0" * 32, source="test")
    event = await asyncio.wait_for(follower, 10)
    assert event.kind == "status" and event.data["status"] == "queued"
    assert time.monotonic() - committed < 1.0
    assert hub.notifications >= 1


async def test_a_closed_hub_is_disarmed_and_writers_send_no_notify(
    hub: EventHub, db: asyncpg.Pool
) -> None:
    follower = asyncio.create_task(first_event_of(hub, uuid.uuid4()))
    await until_armed(db, hub)
    await hub.close()
    assert await db.fetchval("SELECT count(*) FROM run_event_readers") == 0
    follower.cancel()
    # Nobody armed: a writer sends no NOTIFY.
    heard: list[str] = []
    def hear(*args: object) -> None:
        heard.append(str(args[-1]))

    listener = await db.acquire()
    try:
        await listener.add_listener("waypost_events", hear)
        await enqueue(db)
        await asyncio.sleep(0.5)
        await listener.remove_listener("waypost_events", hear)
    finally:
        await db.release(listener)
    assert heard == []


async def test_a_writer_that_began_before_the_hub_armed_is_read_without_its_notify(
    hub: EventHub, db: asyncpg.Pool
) -> None:
    conn = await db.acquire()
    try:
        tx = conn.transaction()
        await tx.start()
        run_id = await enqueue(conn)  # its trigger ran while no reader was armed
        follower = asyncio.create_task(first_event_of(hub, run_id))
        await asyncio.sleep(1.0)  # the hub has armed itself by now
        assert await db.fetchval(
            "SELECT count(*) FROM run_event_readers WHERE armed_until > now()") == 1
        committed = time.monotonic()
        await tx.commit()
    finally:
        await db.release(conn)
    event = await asyncio.wait_for(follower, 10)
    assert event.data["status"] == "queued"
    # Found by the hub's reads every 20 ms until that transaction ended, not by its
    # 30 s idle poll.
    assert time.monotonic() - committed < 1.0


async def test_without_listen_the_hub_polls(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)

    async def refused() -> asyncpg.Connection:
        raise OSError("no LISTEN today")

    listen: Listen = refused
    hub = EventHub(db, interval=0.02, idle_poll=IDLE_POLL, listen=listen)
    try:
        follower = asyncio.create_task(first_event_of(hub, run_id := uuid.uuid4()))
        await asyncio.sleep(0.5)
        assert await db.fetchval("SELECT count(*) FROM run_event_readers") == 0
        committed = time.monotonic()
        assert await runs.enqueue(
            db, namespace="default", task="t", run_id=run_id, payload=RawJson("{}"),
            priority=None, idempotency_key=None, concurrency_key=None, trace_id="0" * 32,
            source="test")
        event = await asyncio.wait_for(follower, 10)
        assert time.monotonic() - committed < 1.0
        assert event.data["status"] == "queued" and hub.notifications == 0
    finally:
        await hub.close()


async def test_checkpoint_data_when_asked_names_the_version_the_event_records(
    db: asyncpg.Pool,
) -> None:
    await register_task(db)
    run_id = await enqueue(db)
    [claimed] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    token = claimed.claim_token
    assert await checkpoints.write(db, run_id, token, "step", RawJson('{"v": 1}'))
    assert await checkpoints.write(db, run_id, token, "step", RawJson('{"v": 2}'))
    assert await checkpoints.write(db, run_id, token, "other", RawJson('[1, 2]'))
    found, _ = await store_events.for_run(db, run_id, store_events.START, kinds=["checkpoint"])
    # By default an event says which key, its size and version, never the data.
    assert [sorted(e.data) for e in found] == [["key", "seq", "sizeBytes"]] * 3
    with_data = await run_events.with_checkpoint_data(db, found)
    assert [(e.data["key"], e.data.get("data"), e.data.get("superseded")) for e in with_data] == [
        ("step", None, True),  # written again since: the next event carries that write
        ("step", {"v": 2}, None),
        ("other", [1, 2], None),
    ]
    assert [e.cursor for e in with_data] == [e.cursor for e in found]
    assert all("data" not in e.data for e in found)  # the hub's copies are untouched


async def test_a_busy_system_does_not_make_writers_notify(
    hub: EventHub, db: asyncpg.Pool
) -> None:
    # The hub's one subscriber follows a run that stays quiet while other runs are
    # written to: it must stay busy (reading every interval), not arm itself again
    # after each read that found nothing for its subscriber.
    async def follow_one_run() -> None:
        async for _ in hub.stream(Filter(run_id=uuid.uuid4()), None, heartbeat=60):
            pass

    follower = asyncio.create_task(follow_one_run())
    await until_armed(db, hub)
    before = hub.notifications
    for _ in range(50):
        await enqueue(db)  # one transaction each
        await asyncio.sleep(0.02)
    # The first write wakes it; then it reads every 20 ms while events keep coming.
    # (A loaded machine can leave a gap now and then in which it arms again; a hub
    # that armed after every read that found nothing for its subscriber heard 49.)
    assert hub.notifications - before <= 15
    follower.cancel()


async def test_the_pumps_connection_plans_its_read_once(db: asyncpg.Pool,
                                                        database_url: str) -> None:
    # Planned anew per read (Postgres' choice for it: the cursor makes a custom plan
    # look cheaper), the pump's read cost Postgres as much CPU as running it.
    await register_task(db)
    await enqueue(db)

    async def plans(session: bool) -> tuple[int, int]:
        conn = await store_pool.connect(database_url)
        try:
            if session:
                await store_events.reader_session(conn)
            for _ in range(8):
                await store_events.read_everyone(
                    conn, store_events.START, run_ids=store_events.RunIds((uuid.uuid4(),)))
            generic, custom = await conn.fetchrow(
                "SELECT coalesce(sum(generic_plans), 0)::int, coalesce(sum(custom_plans), 0)::int"
                " FROM pg_prepared_statements WHERE statement LIKE '%AS any_new%'")
            return generic, custom
        finally:
            await conn.close()

    generic, custom = await plans(session=True)
    assert custom == 0 and generic >= 1, (generic, custom)
    # Without it, Postgres plans the first five executions anew at least.
    generic, custom = await plans(session=False)
    assert custom >= 5, (generic, custom)


async def test_the_hub_reads_on_its_own_connection(database_url: str, db: asyncpg.Pool) -> None:
    await register_task(db)
    made: list[asyncpg.Connection] = []

    async def listen() -> asyncpg.Connection:
        made.append(conn := await store_pool.connect(database_url))
        return conn

    hub = EventHub(db, interval=0.02, idle_poll=IDLE_POLL, listen=listen)
    caught_up = asyncio.Event()
    run_id = uuid.uuid4()

    async def follow() -> Event:
        async for batch in hub.stream(Filter(task="t"), None, heartbeat=60):
            caught_up.set()  # the first batch: the stream covers what comes from now on
            for e in batch:
                if e.run_id == run_id:
                    return e
        raise AssertionError("the stream ended")

    try:
        follower = asyncio.create_task(follow())
        await asyncio.wait_for(caught_up.wait(), 30)
        await enqueue_as(db, run_id)
        assert (await asyncio.wait_for(follower, 30)).run_id == run_id
        assert len(made) == 1
        pid = made[0].get_server_pid()
        # pg_stat_activity holds the first 1 kB of a backend's last statement. Between
        # reads the connection may LISTEN once (when the hub arms itself); the hub
        # reads again at once after that.
        read = sql.statement("events_after").text
        deadline = time.monotonic() + 30
        while not read.startswith(last := await db.fetchval(
                "SELECT query FROM pg_stat_activity WHERE pid = $1", pid) or "-"):
            assert time.monotonic() < deadline, f"the hub's connection never read: {last!r}"
            await asyncio.sleep(0.05)
    finally:
        await hub.close()
    assert made[0].is_closed()
