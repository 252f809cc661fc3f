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


#: Keys of a status row's data that hold the attempt event written in the same
#: statement (migration 0025), with that event's kind and its id's offset from the
#: row's: the attempt's start came right after the change to running, a successful
#: attempt's end right before the change to succeeded.
FOLDED = {"attemptStarted": ("attempt_started", 1), "attemptFinished": ("attempt_finished", -1)}


def unfold(cursor: Cursor, kind: str, data: dict[str, Any]
           ) -> list[tuple[Cursor, str, dict[str, Any]]]:
    """The events one stored row stands for, in cursor order: itself, and the attempt
    event folded into a status row (migration 0025) at its reserved neighbouring id."""
    if kind != "status" or not (FOLDED.keys() & data.keys()):
        return [(cursor, kind, data)]
    own = {k: v for k, v in data.items() if k not in FOLDED}
    out = [(cursor, kind, own)]
    for key, (folded_kind, offset) in FOLDED.items():
        if key in data:
            out.append((Cursor(cursor.tx, cursor.id + offset), folded_kind, data[key]))
    out.sort(key=lambda e: e[0])
    return out


def _page(rows: Sequence[asyncpg.Record], after: Cursor, limit: int,
          kinds: Sequence[str] | None = None) -> tuple[list[Event], Cursor]:
    """The events of a page (of ``kinds`` when given) and where the next read starts:
    after the last event of a full page, else at the horizon (nothing below it is
    left unread)."""
    found: list[Event] = []
    last_end = after
    for r in rows:
        if r["id"] is None:
            continue
        unfolded = unfold(Cursor(int(r["tx"]), r["id"]), r["kind"], r["data"])
        last_end = unfolded[-1][0]
        found.extend(
            Event(cursor, r["run_id"], r["namespace"], r["task"], kind, r["attempt"], r["ts"],
                  data)
            for cursor, kind, data in unfolded
            if cursor > after and (not kinds or kind in kinds))
    return found, next_cursor(rows, [e.cursor for e in found], after, limit, last_end)


def next_cursor(rows: Sequence[asyncpg.Record], found: Sequence[Cursor], after: Cursor,
                limit: int, last_end: Cursor | None = None) -> Cursor:
    """Where the read after a page starts: after its last row when the page of stored
    rows was full, else at the horizon that came back on every row (nothing below it
    is left unread). ``found`` are the cursors of the events kept of those rows;
    ``last_end`` is the cursor of the last event the last row stands for (``unfold``;
    that row's own cursor when not given)."""
    stored = [Cursor(int(r["tx"]), r["id"]) for r in rows if r["id"] is not None]
    if len(stored) >= limit:
        return max(after, last_end or stored[-1], found[-1] if found else after)
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
    return _page(rows, after, limit, kinds)


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
