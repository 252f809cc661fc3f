"""The leader follows the run event log and turns it into metrics (and run spans).

One reader per leader: every ``telemetry_poll_seconds`` it reads a page of the
status changes, attempt starts and ends and checkpoints written since its cursor
(one bounded query, log lines left out). The database sums what the page adds to
each series of :mod:`waypost.engine.metrics` (a few rows a page; decoding a row
per event was most of the reader's CPU); when tracing is on, the same query
returns the events the run and queue-wait spans are made of
(:mod:`waypost.engine.tracing`, timed on the database clock), which go to the span
exporter process. It starts at the log's horizon: what happened before this process led was
counted by its predecessor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Protocol

import asyncpg

from waypost.engine.core import Engine
from waypost.engine.metrics import BYTES_BUCKETS, SECONDS_BUCKETS
from waypost.sdk import tracing as sdk_tracing
from waypost.store import events, telemetry

log = logging.getLogger("waypost.engine.telemetry")

FINAL_STATUSES = frozenset({"succeeded", "failed", "dead_lettered", "cancelled"})
PAGE = 2000

class SpanSink(Protocol):
    """Where the events spans are made of go (engine.span_process.SpanProcess): each
    page's, as the database encoded them; the read returns only those of the runs
    its ``sampled`` records."""

    sampled: sdk_tracing.TraceSampler

    def send(self, page: str, /) -> None: ...


async def follow(engine: Engine, stop: asyncio.Event, spans: SpanSink | None = None,
                 cursor: events.Cursor | None = None) -> None:
    """Read the event log until ``stop`` from ``cursor`` (else from the log's
    horizon): each page's series increments (summed by the database) go to the
    engine's metrics, and, with ``spans``, the events of its spans to that sink (the
    leader runs this)."""
    interval = engine.settings.telemetry_poll_seconds
    while not stop.is_set():
        full = False
        try:
            if cursor is None:
                cursor = await events.horizon(engine.pool)
            page = await telemetry.page_after(
                engine.pool, cursor, limit=PAGE,
                spans=spans.sampled if spans is not None else None,
                second_bounds=SECONDS_BUCKETS, byte_bounds=BYTES_BUCKETS)
            cursor = page.cursor
            full = page.events >= PAGE
            try:
                engine.metrics.add(page.tallies)
            except Exception:
                # A bug here must not stop the spans or the reader.
                log.exception("telemetry metrics failed")
            if spans is not None and page.spans:
                try:
                    spans.send(page.spans)
                except Exception:
                    log.exception("telemetry spans failed")
        except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
            log.warning("reading the event log for telemetry failed", extra={"error": str(exc)})
        if not full:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


async def run(engine: Engine, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """The leader's telemetry loop: metrics always, run spans when tracing is on.
    ``ready`` is set once it reads the log (after the span exporter started)."""
    spans = None
    # Counting starts here: what happens while the span exporter process starts
    # (a second or two) is read once it is ready.
    try:
        start: events.Cursor | None = await events.horizon(engine.pool)
    except (TimeoutError, asyncpg.PostgresError, OSError):
        start = None  # follow() reads it when it can
    if sdk_tracing.enabled(os.environ):
        # Imported only when tracing is on: the OpenTelemetry SDK is optional. The
        # spans are built and exported by a child process (engine.span_process).
        from waypost.engine import span_process

        spans = await asyncio.to_thread(span_process.SpanProcess, os.environ)
    if ready is not None:
        ready.set()
    try:
        await follow(engine, stop, spans, start)
    finally:
        if spans is not None:
            # The child exports what it still holds, then ends.
            await asyncio.to_thread(spans.shutdown)
