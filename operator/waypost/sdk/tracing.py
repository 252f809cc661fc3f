"""W3C trace context and the OpenTelemetry switch, shared by the runner and the engine.

A run's trace: the run span (trigger to final status; the caller's span is its
parent when the trigger carried a ``traceparent``), a queue-wait span per attempt
and an attempt span per attempt under it, and a span per ``ctx.step`` under the
attempt's. The run span's id is derived from the run id (:func:`run_span_id`), so
the runner can parent its attempt span on a span the leader emits only when the
run ends.

Export is off unless configured with the standard OpenTelemetry variables
(:func:`enabled`); the OpenTelemetry SDK is imported only then, so a runner
without tracing pays nothing for it at start-up.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

#: The instrumentation scope of waypost's spans.
SCOPE = "waypost"


class TraceParent(NamedTuple):
    """The parts of a W3C ``traceparent`` header that waypost uses."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(text: str | None) -> TraceParent | None:
    """The trace context of a ``traceparent`` value; None when absent or invalid.

    Per W3C Trace Context, an invalid value is ignored (a new trace starts) rather
    than refused: a proxy's broken header must not make a trigger fail. Version
    ff, all-zero ids and a version-00 value with extra fields are invalid."""
    if not text:
        return None
    m = _TRACEPARENT.match(text.strip().lower())
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceParent(trace_id, span_id, bool(int(flags, 16) & 1))


def run_span_id(run_id: str) -> str:
    """The span id of a run's span: derived from the run id, never zero."""
    digest = hashlib.sha256(f"waypost-run:{run_id}".encode()).hexdigest()[:16]
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def run_traceparent(trace_id: str, run_id: str, sampled: bool = True) -> str:
    """The ``traceparent`` of a run's span: what an attempt span is parented on.
    Its flag carries the run's sampling decision (:func:`trace_sampler`) to the
    runner, whose default sampler follows its parent."""
    return TraceParent(trace_id, run_span_id(run_id), sampled).header()


#: Ratio samplers decide on the trace id's lower 64 bits, as the SDK's TraceIdRatioBased.
_TRACE_ID_LIMIT = (1 << 64) - 1


class TraceSampler(NamedTuple):
    """Whether a run's trace is recorded (see :func:`trace_sampler`)."""

    #: What decides a root: the trace id's lower 64 bits below ``bound`` (ratio x 2^64).
    bound: int
    #: Whether a caller's sampled flag decides (the ``parentbased_*`` samplers).
    parent_based: bool

    def __call__(self, trace_id: str, parent_sampled: bool | None = None) -> bool:
        """The decision for a run of ``trace_id``; ``parent_sampled`` is the sampled
        flag of the trigger's ``traceparent``, None when the run has no caller."""
        if self.parent_based and parent_sampled is not None:
            return parent_sampled
        return int(trace_id[16:], 16) < self.bound


def trace_sampler(env: Mapping[str, str]) -> TraceSampler:
    """Whether a run's trace is recorded, as ``OTEL_TRACES_SAMPLER`` and
    ``OTEL_TRACES_SAMPLER_ARG`` say (default ``parentbased_always_on``: every run
    that has no caller, and every run whose caller sampled its trace).

    The leader's run and queue-wait spans and the runner's attempt and step spans
    follow the same decision, the one the OpenTelemetry SDK's samplers make: a run
    triggered with a caller's ``traceparent`` follows the caller's sampled flag
    under the ``parentbased_*`` samplers (the SDK's defaults for a remote parent:
    sampled -> on, not sampled -> off); a run without one, and every run under the
    other samplers, is decided on its trace id (``traceidratio``: the id's lower
    64 bits below ratio x 2^64). The run span's ``traceparent`` flag hands the
    decision to the runner. An unknown sampler is the default and a bad ratio 1.0,
    as in the SDK."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if name not in ("always_on", "always_off", "traceidratio", "parentbased_always_on",
                    "parentbased_always_off", "parentbased_traceidratio"):
        name = "parentbased_always_on"
    parent_based = name.startswith("parentbased_")
    if name.endswith("always_off"):
        return TraceSampler(0, parent_based)
    if not name.endswith("traceidratio"):
        return TraceSampler(_TRACE_ID_LIMIT + 1, parent_based)
    try:
        rate = float(env.get("OTEL_TRACES_SAMPLER_ARG", ""))
    except ValueError:
        rate = 1.0
    if not 0.0 <= rate <= 1.0:
        rate = 1.0
    return TraceSampler(round(rate * (_TRACE_ID_LIMIT + 1)), parent_based)


def enabled(env: Mapping[str, str]) -> bool:
    """Whether OpenTelemetry export is configured (off by default).

    On with ``OTEL_TRACES_EXPORTER`` set to ``otlp`` or ``console``, or with an
    OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and no exporter named. Off with
    ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip())


def make_resource(default_service: str) -> Resource:
    """The exporter's resource: ``OTEL_SERVICE_NAME`` (or ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``), else ``default_service``, and the other
    ``OTEL_RESOURCE_ATTRIBUTES``."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()  # reads OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service}))
    return resource


def make_processors(env: Mapping[str, str], *,
                    max_queue_size: int | None = None) -> list[SpanProcessor]:
    """Batching span processors for the exporters ``OTEL_TRACES_EXPORTER`` names
    (``otlp``, the default, and ``console``). OTLP goes over HTTP/protobuf, the
    only transport installed (no gRPC stack in the runner image); the exporter
    reads the ``OTEL_EXPORTER_OTLP_*`` variables itself. ``max_queue_size``
    replaces the SDK's default queue (2048 spans) unless ``OTEL_BSP_MAX_QUEUE_SIZE``
    is set: a span that finds the queue full is dropped."""
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    processors: list[SpanProcessor] = []
    for name in env.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(","):
        exporter: SpanExporter
        if name.strip() == "console":
            exporter = ConsoleSpanExporter()
        elif name.strip() in ("otlp", ""):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()
        else:
            continue
        queue = None if env.get("OTEL_BSP_MAX_QUEUE_SIZE") else max_queue_size
        processors.append(BatchSpanProcessor(exporter, max_queue_size=queue))
    return processors


def make_provider(env: Mapping[str, str], default_service: str) -> TracerProvider:
    """A tracer provider exporting as the ``OTEL_*`` variables say. Imports the
    OpenTelemetry SDK: call only when :func:`enabled`."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=make_resource(default_service))
    for processor in make_processors(env):
        provider.add_span_processor(processor)
    return provider
