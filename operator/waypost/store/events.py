"""The run event log (migration 0012): read by cursor, below the commit horizon."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from waypost.store.sql import bind, query


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the event log: (transaction id, event id), ordered as events are.

    ``Cursor(h, 0)`` for a horizon ``h`` means "every event below h has been seen".
    Its text form ``"<tx>-<id>"`` is the SSE event id and the API's cursor.
    """

    tx: int
    id: int

    def __str__(self) -> str:
        return f"{self.tx}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Raise ValueError unless ``text`` is ``"<tx>-<id>"`` of non-negative integers."""
        tx, sep, ident = text.strip().partition("-")
        if not sep or not tx.isdigit() or not ident.isdigit():
            raise ValueError(f"{text!r} is not an event cursor (expected <number>-<number>)")
        return cls(int(tx), int(ident))


START = Cursor(0, 0)


@dataclass(frozen=True)
class Event:
    cursor: Cursor
    run_id: uuid.UUID
    namespace: str
    task: str
    kind: str
    attempt: int | None
    ts: datetime
    data: dict[str, Any]
    # Encodings of this event by name (an SSE frame, …), made once for all the
    # subscribers it goes to.
    encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


def _page(rows: Sequence[asyncpg.Record], after: Cursor, limit: int) -> tuple[list[Event], Cursor]:
    """The events of a page and where the next read starts: after the last event of a
    full page, else at the horizon (nothing below it is left unread)."""
    found = [
        Event(Cursor(int(r["tx"]), r["id"]), r["run_id"], r["namespace"], r["task"], r["kind"],
              r["attempt"], r["ts"], r["data"])
        for r in rows if r["id"] is not None
    ]
    return found, next_cursor(rows, [e.cursor for e in found], after, limit)


def next_cursor(rows: Sequence[asyncpg.Record], found: Sequence[Cursor], after: Cursor,
                limit: int) -> Cursor:
    """Where the read after a page starts: after its last event when the page was
    full, else at the horizon that came back on every row (nothing below it is left
    unread)."""
    if len(found) >= limit:
        return found[-1]
    horizon = Cursor(int(rows[0]["horizon"]), 0) if rows else after
    return max(after, horizon, found[-1] if found else after)


async def for_run(
    db: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, after: Cursor, *,
    kinds: Sequence[str] | None = None, attempt: int | None = None,
    levels: Sequence[str] | None = None, since: datetime | None = None, limit: int = 500,
) -> tuple[list[Event], Cursor]:
    """A run's events after ``after`` matching the filters, and the next cursor."""
    rows = await db.fetch(*bind(
        "run_events_after", run_id=run_id, after_tx=str(after.tx), after_id=after.id,
        kinds=list(kinds) if kinds else None, attempt=attempt,
        levels=list(levels) if levels else None, since=since, limit=limit,
    ))
    return _page(rows, after, limit)


@dataclass(frozen=True)
class RunIds:
    """A set of run ids as the pump's every read sends it: its array literal is made
    once, when the set changes, not per read (asyncpg encoding 200 UUIDs cost the
    pump about as much CPU as the rest of a read)."""

    ids: tuple[uuid.UUID, ...]
    literal: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "literal", "{" + ",".join(map(str, self.ids)) + "}")


@dataclass(frozen=True)
class Read:
    """One read of everyone's events: the events, where the next read starts, the
    next transaction id at the time of the read (``xmax``), and whether any run's
    events came after the cursor, whatever the filters (``any_new``)."""

    events: list[Event]
    cursor: Cursor
    xmax: int
    any_new: bool


async def read_everyone(
    db: asyncpg.Pool | asyncpg.Connection, after: Cursor, *,
    run_ids: RunIds | None = None, namespace: str | None = None,
    task: str | None = None, limit: int = 1000,
) -> Read:
    """Events of all runs (or of ``run_ids``, a namespace, a task) after ``after``."""
    rows = await db.fetch(*bind(
        "events_after", after_tx=str(after.tx), after_id=after.id,
        run_ids=None if run_ids is None else run_ids.literal, namespace=namespace, task=task,
        limit=limit,
    ))
    found, cursor = _page(rows, after, limit)
    return Read(found, cursor, int(rows[0]["xmax"]), bool(rows[0]["any_new"]))


async def everyone_after(
    db: asyncpg.Pool | asyncpg.Connection, after: Cursor, *,
    run_ids: Sequence[uuid.UUID] | None = None, namespace: str | None = None,
    task: str | None = None, limit: int = 1000,
) -> tuple[list[Event], Cursor]:
    """Events of all runs (or of ``run_ids``, a namespace, a task) after ``after``."""
    read = await read_everyone(db, after, run_ids=None if run_ids is None else RunIds(
        tuple(run_ids)), namespace=namespace, task=task, limit=limit)
    return read.events, read.cursor


async def reader_session(conn: asyncpg.Connection) -> None:
    """Set up the connection an event pump reads ``events_after`` on, every few
    milliseconds: with one generic plan for all its reads. A custom plan per read
    (what Postgres chooses for it otherwise, since the cursor makes the custom plan
    look cheaper) cost as much CPU as running the read; the plan does not depend on
    the values (index walk from the cursor, runs looked up by key)."""
    await conn.execute(query("event_reader_session"))


async def arm_reader(db: asyncpg.Pool | asyncpg.Connection, reader: uuid.UUID,
                     seconds: float) -> None:
    """Ask writers to NOTIFY ``waypost_events`` for ``seconds`` at most (migration 0015)."""
    await db.execute(*bind("arm_event_reader", reader=reader, seconds=seconds))


async def disarm_reader(db: asyncpg.Pool | asyncpg.Connection, reader: uuid.UUID) -> None:
    """Writers need not wake ``reader`` any more."""
    await db.execute(*bind("disarm_event_reader", reader=reader))


async def horizon(db: asyncpg.Pool | asyncpg.Connection) -> Cursor:
    """The cursor of a stream that starts now."""
    return Cursor(int(await db.fetchval(query("event_horizon"))), 0)
