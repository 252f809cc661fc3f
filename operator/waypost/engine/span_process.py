"""The leader's run and queue-wait spans, built and exported by a child process.

Building a span and encoding it for OTLP is Python work, about 50 µs a span
(profiled: 10 to build, 43 to encode), two spans a run. In the leader's process
it competed with the dispatcher for the interpreter: a drain with spans on cost
the leader's process about 300 µs more CPU per run than with them off
(docs/benchmarks.md). The leader's read now returns the events of sampled spans
as one JSON text per page (telemetry.sql), which the leader hands undecoded to a
child process; the child decodes it and builds and exports the spans
(:class:`waypost.engine.tracing.SpanEmitter`) with the same ``OTEL_*`` variables,
on another core when there is one.

Spans are telemetry, not state: when the child falls behind by more than
``MAX_PAGES`` pages, a page is dropped (and counted in a warning), as the SDK's
batch processor drops a span that finds its queue full; a child that died is
logged once and its spans dropped, the leader goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from typing import Any

from waypost.engine import tracing
from waypost.sdk import tracing as sdk_tracing
from waypost.store import telemetry

log = logging.getLogger("waypost.engine.span_process")

#: Pages waiting for the child at most (each up to telemetry.PAGE signals).
MAX_PAGES = 8
#: How long stopping waits for the child to export what it holds.
STOP_SECONDS = 30.0
#: How long starting waits for the child to be ready for pages.
START_SECONDS = 60.0


def _serve(pages: Any, ready: Any) -> None:
    """The child: build and export the spans of each page until None arrives."""
    emitter = tracing.span_sink(os.environ)
    ready.set()
    try:
        while True:
            page = pages.get()
            if page is None:
                return
            if emitter is not None:
                for signal in telemetry.decode_spans(page):
                    emitter(signal)
    finally:
        if emitter is not None:
            emitter.shutdown()  # flushes what the batch processors hold


class SpanProcess:
    """Hands each page's span events (as the database encoded them) to a child
    process that builds and exports the spans.

    Making one blocks until the child is ready for pages. :meth:`send` a page's
    spans; :meth:`shutdown` (which blocks) waits for the child's export. ``sampled``
    is the sampler the leader's read applies."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.sampled = sdk_tracing.trace_sampler(env)
        # spawn, not fork: the leader runs an event loop and threads (asyncpg, the
        # coordinator's), which a forked child would inherit half-copied.
        context = multiprocessing.get_context("spawn")
        self.pages: Any = context.Queue(maxsize=MAX_PAGES)
        ready = context.Event()
        self.process: BaseProcess = context.Process(
            target=_serve, args=(self.pages, ready), name="waypost-spans", daemon=True)
        self.process.start()
        # Wait until it can take pages (importing the SDK and making its exporter
        # takes it 1-2 CPU s): pages sent before that piled up in the queue, and a
        # leader that started with a backlog in the log dropped them (a bench drain
        # did, every time). A child that never gets ready is dealt with as a dead one.
        if not ready.wait(START_SECONDS):
            log.error("the span exporter process did not start in time",
                      extra={"seconds": START_SECONDS, "alive": self.process.is_alive()})
        self.dropped = 0
        self.dead_logged = False

    def send(self, page: str) -> None:
        """Send a page's spans (telemetry.Page.spans) to the child; never waits."""
        if not self.process.is_alive():
            if not self.dead_logged:
                log.error("the span exporter process ended; spans are dropped",
                          extra={"exitcode": self.process.exitcode})
                self.dead_logged = True
            return
        try:
            self.pages.put_nowait(page)
        except queue.Full:
            self.dropped += 1
            log.warning("span exporter behind: a page of spans dropped",
                        extra={"pages_dropped": self.dropped})

    def shutdown(self) -> None:
        """Let the child export what it holds, and stop it."""
        if self.process.is_alive():
            try:
                self.pages.put(None, timeout=STOP_SECONDS)
            except queue.Full:
                log.warning("span exporter did not take its stop in time")
        self.process.join(STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        if self.process.exitcode != 0:
            # Nobody reads the queue any more: don't wait to flush it at exit.
            self.pages.cancel_join_thread()
        self.pages.close()
