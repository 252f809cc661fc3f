"""run_attempt with an in-memory port: the part shared by cold and warm mode."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any

import pytest

from waypost.runner import attempt
from waypost.runner.attempt import Outcome, run_attempt
from waypost.sdk import protocol
from waypost.sdk.context import Checkpoint, Limits
from waypost.sdk.errors import AttemptSuperseded, CoordinatorUnavailable


@dataclass
class MemoryRunnerPort:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    completed: list[Any] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[str] = field(default_factory=list)
    heartbeats: int = 0
    heartbeat_answers: list[bool | BaseException] = field(default_factory=list)

    async def write_checkpoint(self, key: str, data: Any) -> None:
        self.checkpoints.append(Checkpoint(key, data))

    async def heartbeat(self) -> bool:
        self.heartbeats += 1
        if self.heartbeat_answers:
            answer = self.heartbeat_answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return False

    async def send_logs(self, entries: list[protocol.LogLine]) -> None:
        self.logs.extend(protocol.encode(e) for e in entries)

    async def complete(self, result: Any, usage: protocol.Usage | None = None) -> str | None:
        self.completed.append(result)
        return "succeeded"

    async def cancelled(self, message: str) -> str | None:
        self.cancellations.append(message)
        return "cancelled"

    async def fail(self, error: protocol.FailureReport,
                   usage: protocol.Usage | None = None) -> str | None:
        self.failures.append(protocol.encode(error))
        return "retrying"


def make_doc(**overrides: Any) -> protocol.AttemptDocument:
    values: dict[str, Any] = {
        "run_id": "run-1",
        "attempt": 1,
        "task": protocol.AttemptTask(namespace="default", name="t", entrypoint="m:f"),
        "payload": {"n": 1},
        "checkpoints": [],
        "traceparent": "",
        "idempotency_key": None,
        "heartbeat_interval_seconds": 10.0,
        "limits": Limits(checkpoint_bytes=1000, result_bytes=1000, log_batch=10),
    }
    values.update(overrides)
    return protocol.AttemptDocument(**values)


async def test_heartbeats_follow_the_announced_interval() -> None:
    port = MemoryRunnerPort()
    slept: list[float] = []
    three_beats = asyncio.Event()

    async def fast_sleep(seconds: float) -> None:
        # Time is injected: record what the runner asked for, wait a tick.
        slept.append(seconds)
        if port.heartbeats >= 3:
            three_beats.set()
        await asyncio.sleep(0.001)

    async def task(ctx: Any, payload: Any) -> str:
        await three_beats.wait()
        return "done"

    result = await asyncio.wait_for(
        run_attempt(
            make_doc(heartbeat_interval_seconds=7.5),
            port,
            load=lambda _: task,
            sleep=fast_sleep,
            log_stream=io.StringIO(),
        ),
        timeout=5,
    )
    assert result.outcome is Outcome.SUCCEEDED
    assert port.heartbeats >= 3
    assert 7.5 in slept
    assert set(slept) <= {7.5, attempt.DEFAULT_LOG_FLUSH_INTERVAL}
    assert port.completed == ["done"]


async def test_unreachable_heartbeats_do_not_stop_the_task() -> None:
    port = MemoryRunnerPort(heartbeat_answers=[CoordinatorUnavailable("down")] * 3)

    async def task(ctx: Any, payload: Any) -> int:
        # Keep running until the beats after the three failed ones arrive: a
        # fixed sleep made this depend on how busy the machine was.
        # (A counter on the fake port, not an event: polling it is the simple way.)
        while port.heartbeats <= 3:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return 1

    result = await asyncio.wait_for(
        run_attempt(
            make_doc(heartbeat_interval_seconds=0.01), port, load=lambda _: task,
            log_stream=io.StringIO(),
        ),
        timeout=30,
    )
    assert result.outcome is Outcome.SUCCEEDED
    assert port.heartbeats > 3


async def test_superseded_heartbeat_cancels_an_async_task() -> None:
    port = MemoryRunnerPort(heartbeat_answers=[AttemptSuperseded("409")])
    seen: list[str] = []

    async def task(ctx: Any, payload: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    result = await asyncio.wait_for(
        run_attempt(
            make_doc(heartbeat_interval_seconds=0.01), port, load=lambda _: task,
        log_stream=io.StringIO(),
        ),
        timeout=5,
    )
    assert result.outcome is Outcome.SUPERSEDED
    assert seen == ["cancelled"]
    assert port.completed == [] and port.failures == []


async def test_cancelling_run_attempt_cancels_the_task() -> None:
    port = MemoryRunnerPort()
    started = asyncio.Event()
    seen: list[str] = []

    async def task(ctx: Any, payload: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    running = asyncio.create_task(
        run_attempt(make_doc(), port, load=lambda _: task, log_stream=io.StringIO())
    )
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.sleep(0)
    assert seen == ["cancelled"]


async def test_checkpoints_from_the_document_are_visible() -> None:
    port = MemoryRunnerPort()

    async def task(ctx: Any, payload: Any) -> Any:
        return {
            "keys": list(ctx.checkpoints),
            "last": ctx.last_checkpoint.data,
            "attempt": ctx.attempt,
            "traceparent": ctx.traceparent,
        }

    doc = make_doc(
        attempt=3,
        checkpoints=[protocol.AttemptCheckpoint(key="a", data=1),
                     protocol.AttemptCheckpoint(key="b", data={"x": 2})],
        traceparent="00-abc-def-01",
    )
    result = await run_attempt(doc, port, load=lambda _: task, log_stream=io.StringIO())
    assert result.outcome is Outcome.SUCCEEDED
    assert port.completed == [
        {"keys": ["a", "b"], "last": {"x": 2}, "attempt": 3, "traceparent": "00-abc-def-01"}
    ]


async def test_failure_report_shape() -> None:
    port = MemoryRunnerPort()

    def task(ctx: Any, payload: Any) -> None:
        ctx.log.warning("about to fail", n=payload["n"])
        raise KeyError("missing")

    result = await run_attempt(make_doc(), port, load=lambda _: task, log_stream=io.StringIO())
    assert result.outcome is Outcome.FAILED
    assert result.run_status == "retrying"
    assert result.error_name == "KeyError"
    [failure] = port.failures
    assert set(failure) == {"type", "name", "message", "traceback", "retryable"}
    assert failure["type"] == "error" and failure["retryable"] is True
    assert "raise KeyError" in failure["traceback"]
    assert [e["message"] for e in port.logs] == ["about to fail"]


async def test_a_loop_on_ctx_cancelled_ends_and_the_cancellation_is_reported() -> None:
    port = MemoryRunnerPort(heartbeat_answers=[False, True])
    seen: list[str] = []

    async def task(ctx: Any, payload: Any) -> str:
        while not ctx.cancelled:  # noqa: ASYNC110 (polling is what ctx.cancelled is for)
            await asyncio.sleep(0.01)
        seen.append("saw cancelled")
        return "partial"  # a result after cancellation is not reported as success

    result = await asyncio.wait_for(
        run_attempt(make_doc(heartbeat_interval_seconds=0.01,
                             cancellation_grace_period_seconds=4),
                    port, load=lambda _: task, log_stream=io.StringIO()),
        timeout=10,
    )
    assert seen == ["saw cancelled"]
    assert result.outcome is Outcome.CANCELLED and result.run_status == "cancelled"
    assert port.cancellations == ["the task stopped"] and port.completed == []


async def test_a_task_that_ignores_the_cancellation_is_cancelled_within_the_grace() -> None:
    port = MemoryRunnerPort(heartbeat_answers=[True])

    async def task(ctx: Any, payload: Any) -> None:
        await asyncio.sleep(3600)

    started = asyncio.get_running_loop().time()
    result = await asyncio.wait_for(
        run_attempt(make_doc(heartbeat_interval_seconds=0.01,
                             cancellation_grace_period_seconds=1),
                    port, load=lambda _: task, log_stream=io.StringIO()),
        timeout=10,
    )
    assert result.outcome is Outcome.CANCELLED
    # A quarter of the grace period to stop on its own, then cancelled.
    assert asyncio.get_running_loop().time() - started < 1.0
    assert port.cancellations == ["the task was interrupted; the runner exited"]
