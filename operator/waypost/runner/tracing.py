"""The runner's side of a run's trace: an attempt span, and a span per step.

Off unless the ``OTEL_*`` variables configure an exporter
(:func:`waypost.sdk.tracing.enabled`); then :mod:`waypost.runner.otel` (the
OpenTelemetry SDK) is imported, once, on the first attempt. Starting a runner
without tracing imports nothing of OpenTelemetry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from waypost.sdk import protocol
from waypost.sdk import tracing as sdk_tracing
from waypost.sdk.context import StepTracer, UntracedSteps


class AttemptTrace(Protocol):
    """The spans of one attempt; ``steps`` goes to the task's context."""

    steps: StepTracer

    def end(self, outcome: str, failed: bool) -> None:
        """End the attempt span with the runner's outcome."""
        ...

    async def flush(self) -> None:
        """Export what is buffered (the process may exit right after)."""
        ...


class Untraced:
    """Tracing off: ``ctx.traceparent`` is still the run's context."""

    def __init__(self, doc: protocol.AttemptDocument) -> None:
        self.steps: StepTracer = UntracedSteps(doc.traceparent)

    def end(self, outcome: str, failed: bool) -> None:
        pass

    async def flush(self) -> None:
        pass


def start(doc: protocol.AttemptDocument, env: Mapping[str, str] | None = None) -> AttemptTrace:
    """Begin the attempt's trace (a no-op one unless export is configured)."""
    env = os.environ if env is None else env
    if not sdk_tracing.enabled(env):
        return Untraced(doc)
    from waypost.runner import otel

    return otel.OtelAttemptTrace(doc, env)
