"""The leader follows the run event log and turns it into metrics (and run spans).

One reader per leader: every ``telemetry_poll_seconds`` it reads the status
changes, attempt starts and ends and checkpoints written since its cursor (one
bounded query, log lines left out) and hands each to the sinks: the counters and
histograms of :mod:`waypost.engine.metrics`, and, when tracing is on, the run and
queue-wait spans (:mod:`waypost.engine.tracing`), which are timed on the database
clock. It starts at the log's horizon: what happened before this process led was
counted by its predecessor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from waypost.engine.core import Engine
from waypost.engine.metrics import RunMetrics
from waypost.sdk import tracing as sdk_tracing
from waypost.store import events, telemetry
from waypost.store.telemetry import Signal

log = logging.getLogger("waypost.engine.telemetry")

FINAL_STATUSES = frozenset({"succeeded", "failed", "dead_lettered", "cancelled"})
PAGE = 2000

Sink = Callable[[Signal], None]


def metrics_sink(metrics: RunMetrics) -> Sink:
    """What each signal adds to the counters and histograms."""
    # A series' child by its label values, looked up once: prometheus_client's
    # labels() validates and locks on every call, and the leader calls it for each
    # event. Bounded as the labels are (RunMetrics.max_tasks pairs, a few statuses).
    children: dict[tuple[Any, ...], Any] = {}

    def child(metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        found = children.get(key)
        if found is None:
            found = children[key] = metric.labels(*values)
        return found

    def observe(s: Signal) -> None:
        labels = metrics.task_labels(s.namespace, s.task)
        if s.kind == "status":
            status = s.status or ""
            if not s.has_previous:
                child(metrics.triggered, *labels, s.source or "api").inc()
            elif status in FINAL_STATUSES:
                child(metrics.finished, *labels, status).inc()
                child(metrics.run_duration, *labels, status).observe(
                    max(0.0, (s.ts - s.created_at).total_seconds()))
                if status == "dead_lettered":
                    child(metrics.dead_lettered, *labels).inc()
            elif status == "retrying":
                child(metrics.retries, *labels).inc()
        elif s.kind == "attempt_started":
            if s.available_at is not None:
                child(metrics.queue_wait, *labels).observe(
                    max(0.0, (s.ts - s.available_at).total_seconds()))
        elif s.kind == "attempt_finished":
            status = s.status or ""
            outcome = (s.failure_type or "error") if status == "failed" else status
            child(metrics.attempts, *labels, outcome).inc()
            if s.duration_ms is not None:
                child(metrics.attempt_duration, *labels, outcome).observe(
                    max(0.0, s.duration_ms / 1000))
            if s.oom_killed:
                child(metrics.oom_kills, *labels).inc()
        elif s.kind == "checkpoint" and s.size_bytes is not None:
            child(metrics.checkpoint_size, *labels).observe(s.size_bytes)

    return observe


async def follow(engine: Engine, stop: asyncio.Event, sinks: Sequence[Sink],
                 on_page: Callable[[], None] | None = None) -> None:
    """Read the event log until ``stop`` and feed ``sinks`` (the leader runs this);
    ``on_page`` is called after each page that had signals."""
    interval = engine.settings.telemetry_poll_seconds
    cursor: events.Cursor | None = None
    while not stop.is_set():
        full = False
        try:
            if cursor is None:
                cursor = await events.horizon(engine.pool)
            signals, cursor = await telemetry.signals_after(engine.pool, cursor, PAGE)
            full = len(signals) >= PAGE
            for signal in signals:
                for sink in sinks:
                    try:
                        sink(signal)
                    except Exception:
                        # A sink's bug must not stop the others or the reader.
                        log.exception("telemetry sink failed", extra={"kind": signal.kind})
            if signals and on_page is not None:
                on_page()
        except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
            log.warning("reading the event log for telemetry failed", extra={"error": str(exc)})
        if not full:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


async def run(engine: Engine, stop: asyncio.Event) -> None:
    """The leader's telemetry loop: metrics always, run spans when tracing is on."""
    sinks: list[Sink] = [metrics_sink(engine.metrics)]
    spans = None
    if sdk_tracing.enabled(os.environ):
        # Imported only when tracing is on: the OpenTelemetry SDK is optional. The
        # spans are built and exported by a child process (engine.span_process).
        from waypost.engine import span_process

        spans = await asyncio.to_thread(span_process.SpanProcess, os.environ)
        sinks.append(spans)
    try:
        await follow(engine, stop, sinks, spans.end_page if spans is not None else None)
    finally:
        if spans is not None:
            # The child exports what it still holds, then ends.
            await asyncio.to_thread(spans.shutdown)
