"""The leader's span exporter process (engine.span_process): the leader hands it each
page's span events as the database encoded them, and goes on when it is gone. That
it builds and exports the spans is tested against a real Jaeger
(tests/integration/test_tracing.py); which runs' events a page holds (the sampler)
against Postgres (tests/integration/test_run_metrics.py)."""

from __future__ import annotations

import logging
import time

import pytest

from waypost.engine.span_process import SpanProcess


def test_pages_go_to_the_child_and_a_dead_child_is_survived(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # The child exports nowhere (the OTLP exporter is not configured: no sink).
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    spans = SpanProcess({"OTEL_TRACES_SAMPLER": "traceidratio",
                         "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    try:
        # Ready when made: the page is taken at once, nothing dropped.
        assert spans.process.is_alive()
        assert spans.sampled.bound == 1 << 63 and not spans.sampled.parent_based
        spans.send("[]")
        assert spans.dropped == 0
        spans.process.kill()
        spans.process.join(30)
        with caplog.at_level(logging.ERROR, logger="waypost.engine.span_process"):
            spans.send("[]")
            spans.send("[]")
        assert [r.message for r in caplog.records].count(
            "the span exporter process ended; spans are dropped") == 1
    finally:
        started = time.monotonic()
        spans.shutdown()
        assert time.monotonic() - started < 30
