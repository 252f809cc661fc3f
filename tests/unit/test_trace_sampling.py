"""Sampling of a run's trace: the standard OTEL_TRACES_SAMPLER variables, decided on
the trace id as the OpenTelemetry SDK decides, so the leader's spans (run, queue
wait) and the runner's (attempt, steps; parented on the run span whose flag carries
the decision) agree."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from waypost.engine.tracing import SpanEmitter
from waypost.sdk import tracing
from waypost.store.events import Cursor
from waypost.store.telemetry import Signal


def test_every_run_is_sampled_by_default_and_with_an_unknown_sampler() -> None:
    ids = [f"{random.getrandbits(128):032x}" for _ in range(200)]
    for env in ({}, {"OTEL_TRACES_SAMPLER": "always_on"},
                {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
                {"OTEL_TRACES_SAMPLER": "no_such_sampler"}):
        sampled = tracing.trace_sampler(env)
        assert all(sampled(i) for i in ids), env
    for name in ("always_off", "parentbased_always_off"):
        assert not any(map(tracing.trace_sampler({"OTEL_TRACES_SAMPLER": name}), ids))


@pytest.mark.parametrize("name", ["traceidratio", "parentbased_traceidratio"])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.999, 1.0])
def test_ratio_decisions_are_the_sdks(name: str, rate: float) -> None:
    sampled = tracing.trace_sampler({"OTEL_TRACES_SAMPLER": name,
                                     "OTEL_TRACES_SAMPLER_ARG": str(rate)})
    sdk = TraceIdRatioBased(rate)
    ids = [random.getrandbits(128) for _ in range(2000)]
    ids += [0, (1 << 64) - 1, round(rate * (1 << 64)), round(rate * (1 << 64)) - 1]
    for trace_id in ids:
        want = sdk.should_sample(None, trace_id, "run").decision == Decision.RECORD_AND_SAMPLE
        assert sampled(f"{trace_id:032x}") is want


@pytest.mark.parametrize("arg", ["", "half", "1.5", "-0.1"])
def test_a_bad_ratio_samples_everything_as_in_the_sdk(arg: str) -> None:
    sampled = tracing.trace_sampler({"OTEL_TRACES_SAMPLER": "traceidratio",
                                     "OTEL_TRACES_SAMPLER_ARG": arg})
    assert all(sampled(f"{random.getrandbits(128):032x}") for _ in range(200))


@pytest.mark.parametrize("rate", ["0.0", "1.0"])
def test_parentbased_samplers_follow_the_callers_flag_and_others_the_trace_id(
        rate: str) -> None:
    """A run with a caller follows the caller's sampled flag under parentbased_*
    (as the SDK's ParentBased with a remote parent); without a caller, and under the
    other samplers, the trace id decides."""
    ids = [f"{random.getrandbits(128):032x}" for _ in range(200)]
    ratio = {"OTEL_TRACES_SAMPLER_ARG": rate}
    for name in ("parentbased_traceidratio", "parentbased_always_on",
                 "parentbased_always_off", "no_such_sampler"):
        sampled = tracing.trace_sampler({"OTEL_TRACES_SAMPLER": name, **ratio})
        assert all(sampled(i, True) for i in ids), name
        assert not any(sampled(i, False) for i in ids), name
        assert [sampled(i, None) for i in ids] == [sampled(i) for i in ids]
    by_id = {"always_on": True, "always_off": False, "traceidratio": rate == "1.0"}
    for name, want in by_id.items():
        sampled = tracing.trace_sampler({"OTEL_TRACES_SAMPLER": name, **ratio})
        for parent in (True, False, None):
            assert all(sampled(i, parent) is want for i in ids), (name, parent)


def test_parentbased_decisions_are_the_sdks_for_a_remote_parent() -> None:
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    sdk = ParentBasedTraceIdRatio(0.5)
    sampled = tracing.trace_sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                     "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    for _ in range(500):
        trace_id = random.getrandbits(128) or 1
        for flag in (True, False, None):
            parent = None if flag is None else set_span_in_context(NonRecordingSpan(
                SpanContext(trace_id, random.getrandbits(64) or 1, is_remote=True,
                            trace_flags=TraceFlags(TraceFlags.SAMPLED if flag
                                                   else TraceFlags.DEFAULT))))
            want = sdk.should_sample(parent, trace_id, "run").decision
            assert sampled(f"{trace_id:032x}", flag) is (want == Decision.RECORD_AND_SAMPLE)


def test_the_run_span_flag_carries_the_decision() -> None:
    trace_id, run_id = "ab" * 16, str(uuid.uuid4())
    on = tracing.parse_traceparent(tracing.run_traceparent(trace_id, run_id))
    off = tracing.parse_traceparent(tracing.run_traceparent(trace_id, run_id, sampled=False))
    assert on is not None and off is not None
    assert (on.sampled, off.sampled) == (True, False)
    assert on.span_id == off.span_id == tracing.run_span_id(run_id)


def _signal(trace_id: str, kind: str, status: str | None = None,
            parent_sampled: bool | None = None) -> Signal:
    now = datetime.now(UTC)
    parent = None if parent_sampled is None else "1" * 16
    return Signal(Cursor(1, 1), uuid.uuid4(), kind, 1, now, "default", "t", "default",
                  now - timedelta(seconds=2), trace_id, parent, now - timedelta(seconds=1),
                  status, has_previous=status is not None, parent_sampled=parent_sampled)


def test_the_leader_emits_spans_of_sampled_runs_only() -> None:
    exporter = InMemorySpanExporter()
    sampler = tracing.trace_sampler({"OTEL_TRACES_SAMPLER": "traceidratio",
                                     "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    emit = SpanEmitter([SimpleSpanProcessor(exporter)], Resource({}), sampler)
    kept, dropped = "f" * 16 + "0" * 16, "0" * 16 + "f" * 16
    assert sampler(kept) and not sampler(dropped)
    for trace_id in (kept, dropped):
        emit(_signal(trace_id, "attempt_started"))
        emit(_signal(trace_id, "status", "succeeded"))
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["queue wait", "run t"]
    assert {f"{s.context.trace_id:032x}" for s in spans} == {kept}


def test_the_leader_follows_the_callers_flag_under_a_parentbased_sampler() -> None:
    exporter = InMemorySpanExporter()
    sampler = tracing.trace_sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                     "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    emit = SpanEmitter([SimpleSpanProcessor(exporter)], Resource({}), sampler)
    # The caller's flag against the trace id's decision, both ways.
    kept_by_caller, dropped_by_caller = "0" * 16 + "f" * 16, "f" * 16 + "0" * 16
    assert not sampler(kept_by_caller) and sampler(dropped_by_caller)
    for trace_id, flag in ((kept_by_caller, True), (dropped_by_caller, False)):
        emit(_signal(trace_id, "attempt_started", parent_sampled=flag))
        emit(_signal(trace_id, "status", "succeeded", parent_sampled=flag))
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["queue wait", "run t"]
    assert {f"{s.context.trace_id:032x}" for s in spans} == {kept_by_caller}
    [run] = [s for s in spans if s.name == "run t"]
    assert run.parent is not None and run.parent.trace_flags.sampled
