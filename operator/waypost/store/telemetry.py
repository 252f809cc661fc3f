"""What metrics and traces read: the run event log's signals, and run counts by status.

Counting runs by status with ``GROUP BY status`` scans the whole runs table, which
holds every finished run. :func:`status_counts` counts the active runs exactly
from the hot table and estimates the finished ones from the planner's statistics
once the table is large (see :data:`EXACT_BELOW`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg

from waypost.sdk.tracing import TraceSampler
from waypost.store.events import Cursor
from waypost.store.sql import bind, query

#: Below this many rows (by the planner's count) the finished runs are counted
#: exactly: the scan costs little, and a small table's statistics may be stale.
EXACT_BELOW = 100_000

ACTIVE_STATUSES = ("queued", "running", "retrying")


class Signal(NamedTuple):
    """An event of the run log that a span is made from, with its run's facts.

    Only the fields of the event's data that a series or span uses are read (the
    reader never decodes a run's result): ``status`` (status events: the new status;
    attempt_finished: the attempt's), ``has_previous`` (a status change, not the
    run's creation), ``source`` (how it was triggered), ``failure_type``,
    ``oom_killed`` and ``duration_ms`` (attempt_finished), ``size_bytes``
    (checkpoint) and ``error_type`` (a run's final error). A tuple: the leader makes
    one per event, and a frozen dataclass's __init__ cost more than the rest."""

    cursor: Cursor
    run_id: uuid.UUID
    kind: str
    attempt: int | None
    ts: datetime
    namespace: str
    task: str
    queue: str
    created_at: datetime
    trace_id: str
    parent_span_id: str | None
    # attempt_started only: when the run became claimable (database clock).
    available_at: datetime | None
    status: str | None = None
    has_previous: bool = False
    source: str | None = None
    failure_type: str | None = None
    oom_killed: bool = False
    duration_ms: float | None = None
    size_bytes: int | None = None
    error_type: str | None = None
    # The trigger's caller's sampled flag; None when the run started its own trace.
    parent_sampled: bool | None = None


class Tally(NamedTuple):
    """What a page of the event log adds to one series' child, summed by the database:
    ``n`` events (a counter's increment, or a histogram's observations in bucket
    ``bucket``, whose values add up to ``total``). ``series`` names a
    :class:`waypost.engine.metrics.RunMetrics` series; ``label`` is its label past
    the task's (a status, an outcome, a source), None for a series without one."""

    namespace: str
    task: str
    series: str
    label: str | None
    bucket: int | None
    n: int
    total: float | None


class Page(NamedTuple):
    """One page of the event log for the leader's telemetry."""

    tallies: list[Tally]
    #: The events a span is made of (a run's end, an attempt's start) of the runs
    #: the sampler records, as the database encoded them (:func:`decode_spans`), or
    #: None: the leader hands the text to its span exporter process undecoded.
    spans: str | None
    #: How many stored rows the page held (a full page means more are waiting).
    events: int
    #: Where the next read starts.
    cursor: Cursor


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def decode_spans(text: str | None) -> list[Signal]:
    """The signals of a page's ``spans`` (telemetry.sql: a JSON array of arrays, times
    in microseconds since the epoch), in log order."""
    if not text:
        return []
    return [
        Signal(Cursor(int(tx), id_), uuid.UUID(run_id), kind, attempt,
               _EPOCH + timedelta(microseconds=ts), namespace, task, queue,
               _EPOCH + timedelta(microseconds=created), trace_id, parent_span_id,
               _time(available), status, bool(has_previous), error_type=error_type,
               parent_sampled=parent_sampled)
        for (tx, id_, run_id, kind, attempt, ts, namespace, task, queue, created, trace_id,
             parent_span_id, parent_sampled, available, status, has_previous, error_type)
        in json.loads(text)
    ]


async def page_after(
    db: asyncpg.Pool | asyncpg.Connection, after: Cursor, *, limit: int = 2000,
    spans: TraceSampler | None, second_bounds: Sequence[float],
    byte_bounds: Sequence[float],
) -> Page:
    """The series' increments of the ``limit`` events after ``after`` (summed in
    SQL: a few rows per page, not one per event), with ``spans`` (a sampler) the
    events the spans of the runs it records are made of, and the cursor the next
    read starts from. ``second_bounds`` and ``byte_bounds`` are the histograms'
    upper bounds (without +Inf)."""
    rows = await db.fetch(*bind("telemetry_page", after_tx=str(after.tx),
                                after_id=after.id, limit=limit, spans=spans is not None,
                                parent_based=spans is not None and spans.parent_based,
                                sample_bound=str(spans.bound if spans is not None else 0),
                                second_bounds=list(second_bounds),
                                byte_bounds=list(byte_bounds)))
    tallies: list[Tally] = []
    span_text: str | None = None
    events_read, cursor = 0, after
    for r in rows:
        if r["what"] == "tally":
            tallies.append(Tally(r["namespace"], r["task"], r["series"], r["label"],
                                 r["bucket"], r["n"], r["total"]))
            continue
        # The page's end: how many rows, its last event, the horizon, the spans.
        events_read, span_text = r["n"], r["spans"]
        if events_read >= limit:
            cursor = Cursor(int(r["tx"]), r["id"])
        else:
            last = Cursor(int(r["tx"]), r["id"]) if events_read else after
            cursor = max(after, Cursor(int(r["horizon"]), 0), last)
    return Page(tallies, span_text, events_read, cursor)


@dataclass(frozen=True)
class StatusCounts:
    """Runs by status; ``estimated`` when the finished ones come from statistics."""

    counts: dict[str, int]
    estimated: bool


async def status_counts(
    db: asyncpg.Pool | asyncpg.Connection, exact_below: int = EXACT_BELOW
) -> StatusCounts:
    """Runs by status without scanning a large runs table.

    Active runs (queued, running, retrying) are counted exactly from the hot table.
    Finished ones are the planner's row count times each status's frequency in
    its sample (``pg_stats``): as fresh as autovacuum's last ANALYZE of runs, and
    a status too rare to be in the sample reads 0. A table the planner counts
    below ``exact_below`` rows (or has never analyzed) is counted exactly."""
    est = await db.fetchrow(query("runs_table_estimate"))
    assert est is not None
    reltuples = float(est["reltuples"])
    if reltuples < exact_below:
        rows = await db.fetch(query("status_counts"))
        return StatusCounts({r["status"]: int(r["n"]) for r in rows}, estimated=False)
    counts: dict[str, int] = {}
    statuses: Sequence[str] = est["statuses"] or ()
    freqs: Sequence[float] = est["freqs"] or ()
    for status, freq in zip(statuses, freqs, strict=False):
        if status not in ACTIVE_STATUSES:
            counts[status] = round(reltuples * freq)
    for r in await db.fetch(query("active_status_counts")):
        counts[r["status"]] = int(r["n"])
    return StatusCounts(counts, estimated=True)
