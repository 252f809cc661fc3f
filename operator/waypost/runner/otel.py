"""OpenTelemetry spans of an attempt (imported only when tracing is on).

The attempt span is a child of the run's span (the attempt document's
``traceparent``, whose span the leader emits when the run ends); each step that
runs is a child of the attempt span (or of the step it is nested in), and a step
skipped because its checkpoint existed is a zero-length span marked
``waypost.step.skipped``. Checkpoint writes are events on the current span.
Timing is the runner's clock.

The tracer provider is made once per process and installed as the global one, so
the task's own OpenTelemetry instrumentation (an HTTP client's spans) nests
under the step it runs in. Exception messages are not recorded (they may carry
payload data): a failed span says the exception's type.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from waypost.sdk import protocol
from waypost.sdk import tracing as sdk_tracing
from waypost.sdk.context import StepTracer

FLUSH_TIMEOUT_MILLIS = 5000

_provider: TracerProvider | None = None
_provider_lock = threading.Lock()
_propagator = TraceContextTextMapPropagator()


def provider(env: Mapping[str, str]) -> TracerProvider:
    """The process's tracer provider, made (and installed globally) once."""
    global _provider
    with _provider_lock:
        if _provider is None:
            _provider = sdk_tracing.make_provider(env, "waypost-runner")
            trace.set_tracer_provider(_provider)
        return _provider


def _traceparent(span: Span) -> str:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


class OtelSteps:
    """:class:`~waypost.sdk.context.StepTracer` on OpenTelemetry spans."""

    def __init__(self, tracer: trace.Tracer, attempt_span: Span,
                 attributes: dict[str, Any]) -> None:
        self._tracer = tracer
        self._attempt = attempt_span
        self._attributes = attributes

    def _parent(self) -> otel_context.Context:
        # A sync task's thread starts without the runner's context: steps there are
        # parented on the attempt span explicitly (nested steps on their step).
        current = trace.get_current_span()
        ours = self._attempt.get_span_context().trace_id
        if current.get_span_context().trace_id == ours and current.is_recording():
            return otel_context.get_current()
        return trace.set_span_in_context(self._attempt)

    def _current(self) -> Span:
        current = trace.get_current_span(self._parent())
        return current

    def traceparent(self) -> str:
        return _traceparent(self._current())

    @contextlib.contextmanager
    def step(self, key: str) -> Iterator[None]:
        span = self._tracer.start_span(
            f"step {key}", context=self._parent(), kind=SpanKind.INTERNAL,
            attributes={**self._attributes, "waypost.step": key,
                        "waypost.step.skipped": False})
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def skipped(self, key: str) -> None:
        span = self._tracer.start_span(
            f"step {key}", context=self._parent(), kind=SpanKind.INTERNAL,
            attributes={**self._attributes, "waypost.step": key,
                        "waypost.step.skipped": True})
        # Zero-length; a span the sampler dropped has no start time (and is not sent).
        span.end(end_time=getattr(span, "start_time", None))

    def checkpoint(self, key: str, size: int) -> None:
        self._current().add_event(
            "waypost.checkpoint", {"waypost.checkpoint.key": key,
                                   "waypost.checkpoint.size_bytes": size})


class OtelAttemptTrace:
    """The attempt span, current while the attempt runs (tasks started from the
    runner inherit it), and the step tracer under it."""

    def __init__(self, doc: protocol.AttemptDocument, env: Mapping[str, str]) -> None:
        self._provider = provider(env)
        tracer = self._provider.get_tracer(sdk_tracing.SCOPE)
        run = sdk_tracing.parse_traceparent(doc.traceparent)
        parent = otel_context.Context()
        if run is not None:
            # The run's sampling decision rides on the flag (the SDK's default
            # sampler follows a parent's).
            parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
                int(run.trace_id, 16), int(run.span_id, 16), is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if run.sampled
                                       else TraceFlags.DEFAULT))))
        attributes: dict[str, Any] = {
            "messaging.system": "waypost",
            "messaging.message.id": doc.run_id,
            "waypost.run_id": doc.run_id,
            "waypost.attempt": doc.attempt,
            "waypost.namespace": doc.task.namespace,
            "waypost.task": doc.task.name,
        }
        self._span = tracer.start_span(
            f"attempt {doc.attempt} {doc.task.name}", context=parent, kind=SpanKind.CONSUMER,
            attributes={**attributes, "messaging.operation.type": "process",
                        "waypost.resumed_checkpoints": len(doc.checkpoints)})
        self._token: object | None = otel_context.attach(trace.set_span_in_context(self._span))
        self.steps: StepTracer = OtelSteps(tracer, self._span, attributes)

    def end(self, outcome: str, failed: bool) -> None:
        self._span.set_attribute("waypost.attempt.outcome", outcome)
        if failed:
            self._span.set_status(Status(StatusCode.ERROR, outcome))
        if self._token is not None:
            with contextlib.suppress(ValueError):  # detached from another context
                otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        self._span.end()

    async def flush(self) -> None:
        await asyncio.to_thread(self._provider.force_flush, FLUSH_TIMEOUT_MILLIS)
