"""The spans the leader emits from the event log: one per run, one per queue wait.

Both are timed on the database clock (event timestamps are the writing
transaction's ``now()``): a run span from trigger to final status, parented on the
caller's span when the trigger carried a ``traceparent``; a queue-wait span from
when an attempt could be claimed to its claim. The runner emits the attempt and
step spans (its own clock) under the run span, whose id it derives from the run
id (:func:`waypost.sdk.tracing.run_span_id`).

The spans are built finished (their times are known when the event is read) and
handed to the exporters' processors directly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from waypost.engine.telemetry import FINAL_STATUSES, PAGE
from waypost.sdk import tracing as sdk_tracing
from waypost.store.telemetry import Signal

_SCOPE = InstrumentationScope(sdk_tracing.SCOPE)
_FAILED = frozenset({"failed", "dead_lettered"})


def _ns(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000_000)


def _span_id() -> str:
    # As the SDK's own id generator: span ids need to be unique, not secret, and
    # os.urandom (a system call each) was most of the leader's cost per span.
    return f"{random.getrandbits(64) or 1:016x}"


def _context(trace_id: str, span_id: str, *, remote: bool = False,
             sampled: bool = True) -> SpanContext:
    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=remote,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled
                                              else TraceFlags.DEFAULT))


def run_attributes(s: Signal) -> dict[str, Any]:
    """Semantic-convention (messaging) and waypost attributes of a run's spans."""
    return {
        "messaging.system": "waypost",
        "messaging.destination.name": s.queue,
        "messaging.message.id": str(s.run_id),
        "waypost.run_id": str(s.run_id),
        "waypost.namespace": s.namespace,
        "waypost.task": s.task,
    }


def makes_span(s: Signal) -> bool:
    """Whether the leader makes a span of ``s``: a run's end (its run span) or an
    attempt's start (its queue wait)."""
    if s.kind == "status":
        return s.status in FINAL_STATUSES and s.has_previous
    return s.kind == "attempt_started" and s.available_at is not None


class SpanEmitter:
    """Turns signals into finished spans for ``processors``."""

    def __init__(self, processors: list[SpanProcessor], resource: Any,
                 sampled: sdk_tracing.TraceSampler | None = None) -> None:
        self.processors = processors
        self.resource = resource
        self.sampled = sampled or sdk_tracing.trace_sampler({})

    def __call__(self, s: Signal) -> None:
        if not makes_span(s) or not self.sampled(s.trace_id, s.parent_sampled):
            return  # not recorded: the runner's spans of this run are not either
        if s.kind == "status":
            self._run_span(s)
        else:
            self._queue_wait_span(s)

    def _emit(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def _run_span(self, s: Signal) -> None:
        status = str(s.status)
        parent = (_context(s.trace_id, s.parent_span_id, remote=True,
                           sampled=s.parent_sampled is not False)
                  if s.parent_span_id else None)
        attributes = {**run_attributes(s), "messaging.operation.type": "process",
                      "waypost.status": status, "waypost.attempts": s.attempt or 0}
        if s.error_type is not None:
            attributes["error.type"] = s.error_type
        self._emit(ReadableSpan(
            name=f"run {s.task}", context=_context(s.trace_id, sdk_tracing.run_span_id(
                str(s.run_id))), parent=parent, resource=self.resource,
            attributes=attributes, kind=SpanKind.CONSUMER, instrumentation_scope=_SCOPE,
            status=Status(StatusCode.ERROR, status) if status in _FAILED else Status(
                StatusCode.UNSET),
            start_time=_ns(s.created_at), end_time=_ns(s.ts)))

    def _queue_wait_span(self, s: Signal) -> None:
        assert s.available_at is not None
        run_span = _context(s.trace_id, sdk_tracing.run_span_id(str(s.run_id)))
        self._emit(ReadableSpan(
            name="queue wait", context=_context(s.trace_id, _span_id()),
            parent=run_span, resource=self.resource,
            attributes={**run_attributes(s), "messaging.operation.type": "receive",
                        "waypost.attempt": s.attempt or 0},
            kind=SpanKind.INTERNAL, instrumentation_scope=_SCOPE,
            start_time=_ns(s.available_at), end_time=_ns(max(s.ts, s.available_at))))

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()


def span_sink(env: Mapping[str, str] | None = None) -> SpanEmitter | None:
    """The run-span sink when OpenTelemetry export is configured, else None."""
    env = os.environ if env is None else env
    if not sdk_tracing.enabled(env):
        return None
    # The reader hands a whole page of the event log (up to telemetry.PAGE events,
    # a span each at most) to the processors at once: the queue holds a few pages.
    return SpanEmitter(sdk_tracing.make_processors(env, max_queue_size=4 * PAGE),
                       sdk_tracing.make_resource("waypost-operator"),
                       sdk_tracing.trace_sampler(env))


