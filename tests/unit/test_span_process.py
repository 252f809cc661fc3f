"""The leader's span exporter process (engine.span_process): the leader hands it only
the signals of sampled spans, page by page, and goes on when it is gone. That it
builds and exports the spans is tested against a real Jaeger
(tests/integration/test_tracing.py)."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from waypost.engine.span_process import SpanProcess
from waypost.store.events import Cursor
from waypost.store.telemetry import Signal

KEPT, DROPPED = "f" * 16 + "0" * 16, "0" * 16 + "f" * 16  # under ratio 0.5: kept, dropped


def _signal(trace_id: str, kind: str, status: str | None = None) -> Signal:
    now = datetime.now(UTC)
    return Signal(Cursor(1, 1), uuid.uuid4(), kind, 1, now, "default", "t", "default",
                  now - timedelta(seconds=2), trace_id, None, now - timedelta(seconds=1),
                  status, has_previous=status is not None)


def test_only_signals_of_sampled_spans_go_to_the_child_and_a_dead_child_is_survived(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # The child exports nowhere (the OTLP exporter is not configured: no sink).
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    spans = SpanProcess({"OTEL_TRACES_SAMPLER": "traceidratio",
                         "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    try:
        for trace_id in (KEPT, DROPPED):
            spans(_signal(trace_id, "attempt_started"))
            spans(_signal(trace_id, "status", "running"))   # no span of it
            spans(_signal(trace_id, "log"))
            spans(_signal(trace_id, "status", "succeeded"))
        assert [(s.trace_id, s.kind) for s in spans.page] == [
            (KEPT, "attempt_started"), (KEPT, "status")]
        spans.end_page()
        assert spans.page == [] and spans.dropped == 0
        spans.process.kill()
        spans.process.join(30)
        with caplog.at_level(logging.ERROR, logger="waypost.engine.span_process"):
            spans(_signal(KEPT, "attempt_started"))
            spans.end_page()
            spans(_signal(KEPT, "attempt_started"))
            spans.end_page()
        assert [r.message for r in caplog.records].count(
            "the span exporter process ended; spans are dropped") == 1
    finally:
        started = time.monotonic()
        spans.shutdown()
        assert time.monotonic() - started < 30
