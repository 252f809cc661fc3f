"""Context and SyncContext against an in-memory coordinator port."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from waypost.sdk import protocol
from waypost.sdk.context import (
    AttemptControl,
    Checkpoint,
    Context,
    Limits,
    StopReason,
    SyncContext,
)
from waypost.sdk.errors import (
    AttemptSuperseded,
    CheckpointTooLarge,
    CoordinatorUnavailable,
    NotJSONSerializable,
    RunCancelled,
    WaypostAPIError,
)
from waypost.sdk.logger import TaskLogger


@dataclass
class MemoryPort:
    """An in-memory coordinator: stores checkpoints, answers heartbeats."""

    stored: list[Checkpoint] = field(default_factory=list)
    heartbeats: int = 0
    cancelled: bool = False
    superseded: bool = False
    unavailable: bool = False
    refuse_larger_than: int | None = None

    async def write_checkpoint(self, key: str, data: Any) -> None:
        if self.superseded:
            raise AttemptSuperseded("409")
        if self.unavailable:
            raise CoordinatorUnavailable("down")
        size = len(json.dumps(data, separators=(",", ":")))
        if self.refuse_larger_than is not None and size > self.refuse_larger_than:
            raise WaypostAPIError(413, "too_large", "checkpoint too large")
        self.stored.append(Checkpoint(key, data))

    async def heartbeat(self) -> bool:
        if self.superseded:
            raise AttemptSuperseded("409")
        if self.unavailable:
            raise CoordinatorUnavailable("down")
        self.heartbeats += 1
        return self.cancelled


def make_context(
    port: MemoryPort,
    *,
    attempt: int = 1,
    run_id: str = "run-1",
    checkpoints: list[Checkpoint] | None = None,
    limits: Limits | None = None,
) -> Context:
    return Context(
        run_id=run_id,
        attempt=attempt,
        payload={"orderId": "o-1"},
        port=port,
        checkpoints=checkpoints if checkpoints is not None else list(port.stored),
        limits=limits,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        log=TaskLogger(run_id, attempt, stream=io.StringIO()),
    )


async def test_step_runs_once_and_later_attempts_read_the_checkpoint() -> None:
    port = MemoryPort()
    calls: list[str] = []

    async def fetch(order_id: str) -> dict[Any, Any]:
        calls.append(order_id)
        return {"id": order_id, "tags": ("a", "b"), 1: "one"}

    first = make_context(port, attempt=1)
    value1 = await first.step("order-fetched", fetch, "o-1")
    assert calls == ["o-1"]
    # The first attempt sees the JSON-decoded value, exactly what a retry reads.
    assert value1 == {"id": "o-1", "tags": ["a", "b"], "1": "one"}
    assert port.stored == [Checkpoint("order-fetched", value1)]

    second = make_context(port, attempt=2)
    value2 = await second.step("order-fetched", fetch, "o-1")
    assert calls == ["o-1"], "a finished step must not run again"
    assert value2 == value1
    assert len(port.stored) == 1


async def test_step_accepts_sync_functions_and_kwargs() -> None:
    port = MemoryPort()
    ctx = make_context(port)
    assert await ctx.step("sum", lambda a, b=0: a + b, 2, b=3) == 5
    assert ctx.checkpoints["sum"] == 5


async def test_step_that_raises_stores_nothing() -> None:
    port = MemoryPort()
    ctx = make_context(port)

    def charge() -> None:
        raise RuntimeError("card declined")

    with pytest.raises(RuntimeError, match="card declined"):
        await ctx.step("payment-complete", charge)
    assert port.stored == []
    assert "payment-complete" not in ctx.checkpoints


async def test_step_result_must_be_json() -> None:
    port = MemoryPort()
    ctx = make_context(port)
    with pytest.raises(NotJSONSerializable, match="result of step 'when'"):
        await ctx.step("when", lambda: datetime.now(UTC))
    with pytest.raises(NotJSONSerializable):
        await ctx.step("nan", lambda: float("nan"))
    assert port.stored == []


async def test_checkpoints_keep_write_order_and_last_checkpoint() -> None:
    port = MemoryPort()
    ctx = make_context(
        port, checkpoints=[Checkpoint("a", 1), Checkpoint("b", 2), Checkpoint("a", 3)]
    )
    # A key written twice counts as its latest write.
    assert list(ctx.checkpoints.items()) == [("b", 2), ("a", 3)]
    assert ctx.last_checkpoint == Checkpoint("a", 3)
    await ctx.checkpoint("c", {"cursor": 10})
    await ctx.checkpoint("b", 20)
    assert list(ctx.checkpoints) == ["a", "c", "b"]
    assert ctx.last_checkpoint == Checkpoint("b", 20)
    with pytest.raises(TypeError):
        ctx.checkpoints["x"] = 1  # type: ignore[index]


async def test_last_checkpoint_is_none_without_checkpoints() -> None:
    assert make_context(MemoryPort()).last_checkpoint is None


async def test_checkpoint_size_limit_is_enforced_client_side() -> None:
    port = MemoryPort()
    ctx = make_context(port, limits=Limits(checkpoint_bytes=100, result_bytes=100, log_batch=10))
    await ctx.checkpoint("small", "x" * 50)
    with pytest.raises(CheckpointTooLarge) as error:
        await ctx.checkpoint("big", "x" * 200)
    assert error.value.size == 202  # the quotes count
    assert error.value.limit == 100
    assert "202 bytes" in str(error.value) and "100 bytes" in str(error.value)
    with pytest.raises(CheckpointTooLarge):
        await ctx.step("big-step", lambda: "é" * 20)  # sent escaped as \u00e9: 122 bytes
    assert [c.key for c in port.stored] == ["small"]


async def test_coordinator_413_becomes_checkpoint_too_large() -> None:
    port = MemoryPort(refuse_larger_than=10)
    ctx = make_context(port)
    with pytest.raises(CheckpointTooLarge, match="'k'"):
        await ctx.checkpoint("k", "a much longer string than ten bytes")
    assert "k" not in ctx.checkpoints


@pytest.mark.parametrize("key", ["", "x" * 300])
async def test_bad_checkpoint_keys(key: str) -> None:
    with pytest.raises(ValueError, match="checkpoint key"):
        await make_context(MemoryPort()).checkpoint(key, 1)


def test_idempotency_key_is_stable_across_attempts() -> None:
    port = MemoryPort()
    first = make_context(port, attempt=1).idempotency_key("charge")
    again = make_context(port, attempt=2).idempotency_key("charge")
    assert first == again
    assert first != make_context(port).idempotency_key("refund")
    assert first != make_context(port, run_id="run-2").idempotency_key("charge")
    assert first.startswith("wp-") and len(first) == 43
    with pytest.raises(ValueError, match="suffix"):
        make_context(port).idempotency_key("")


async def test_attributes() -> None:
    ctx = make_context(MemoryPort(), attempt=3)
    assert ctx.run_id == "run-1"
    assert ctx.attempt == 3
    assert ctx.payload == {"orderId": "o-1"}
    assert ctx.traceparent.startswith("00-0af7651916cd43dd")


async def test_heartbeat_reports_cancellation() -> None:
    port = MemoryPort()
    ctx = make_context(port)
    await ctx.heartbeat()
    assert port.heartbeats == 1
    port.cancelled = True
    with pytest.raises(RunCancelled):
        await ctx.heartbeat()
    assert ctx.control.reason is StopReason.CANCELLED
    with pytest.raises(RunCancelled):
        await ctx.checkpoint("after", 1)
    assert port.stored == []


async def test_heartbeat_tolerates_an_unreachable_coordinator() -> None:
    port = MemoryPort(unavailable=True)
    ctx = make_context(port)
    await ctx.heartbeat()  # does not raise: missing one beat is not fatal
    assert ctx.control.reason is None


async def test_superseded_write_stops_the_attempt() -> None:
    port = MemoryPort()
    ctx = make_context(port)
    port.superseded = True
    with pytest.raises(AttemptSuperseded):
        await ctx.step("s", lambda: 1)
    assert ctx.control.reason is StopReason.SUPERSEDED
    port.superseded = False
    calls: list[int] = []
    with pytest.raises(AttemptSuperseded):
        await ctx.step("t", lambda: calls.append(1))
    assert calls == [], "a superseded attempt must not run further steps"
    assert port.stored == []


def test_superseded_is_not_swallowed_by_except_exception() -> None:
    assert not issubclass(AttemptSuperseded, Exception)
    assert not issubclass(RunCancelled, Exception)


async def test_control_first_reason_wins() -> None:
    control = AttemptControl()
    control.stop(StopReason.CANCELLED)
    control.stop(StopReason.SUPERSEDED)
    assert await control.wait() is StopReason.CANCELLED


async def test_sync_context_from_a_worker_thread() -> None:
    port = MemoryPort()
    loop = asyncio.get_running_loop()
    ctx = SyncContext(make_context(port, attempt=2), loop)
    calls: list[str] = []
    thread_names: list[str] = []

    async def async_fetch() -> str:
        return "from-loop"

    def body() -> dict[str, Any]:
        def fetch() -> dict[str, Any]:
            calls.append("fetch")
            thread_names.append(threading.current_thread().name)
            return {"n": (1, 2)}

        first = ctx.step("fetched", fetch)
        again = ctx.step("fetched", fetch)
        ctx.checkpoint("progress", {"done": 1})
        ctx.heartbeat()
        loop_value = ctx.step("async-step", async_fetch)
        return {
            "first": first,
            "again": again,
            "loop_value": loop_value,
            "last": ctx.last_checkpoint,
            "key": ctx.idempotency_key("x"),
            "attempt": ctx.attempt,
        }

    out = await asyncio.to_thread(body)
    assert calls == ["fetch"]
    assert thread_names != [threading.current_thread().name], "fn runs in the worker thread"
    assert out["first"] == {"n": [1, 2]} == out["again"]
    assert out["loop_value"] == "from-loop"
    assert out["last"] == Checkpoint("async-step", "from-loop")
    assert out["key"] == make_context(port).idempotency_key("x")
    assert out["attempt"] == 2
    assert [c.key for c in port.stored] == ["fetched", "progress", "async-step"]
    assert port.heartbeats == 1


async def test_sync_context_refuses_to_block_the_event_loop() -> None:
    ctx = SyncContext(make_context(MemoryPort()), asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match="worker thread"):
        ctx.checkpoint("k", 1)


async def test_sync_context_heartbeat_cancellation_raises_in_the_thread() -> None:
    port = MemoryPort(cancelled=True)
    ctx = SyncContext(make_context(port), asyncio.get_running_loop())
    with pytest.raises(RunCancelled):
        await asyncio.to_thread(ctx.heartbeat)


# --- ctx.log -----------------------------------------------------------------


def test_log_writes_json_lines_and_buffers_entries() -> None:
    stream = io.StringIO()
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    log = TaskLogger("run-9", 2, stream=stream, clock=lambda: now)
    log.info("order fetched", orderId="o-1")
    log.error("odd value", value=object())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0] == {
        "ts": "2026-01-02T03:04:05+00:00",
        "level": "info",
        "message": "order fetched",
        "orderId": "o-1",
        "run_id": "run-9",
        "attempt": 2,
    }
    assert lines[1]["level"] == "error" and lines[1]["value"].startswith("<object object")
    batch = log.drain(10)
    assert protocol.encode(batch[0]) == {
        "ts": "2026-01-02T03:04:05+00:00",
        "level": "info",
        "message": "order fetched",
        "fields": {"orderId": "o-1", "run_id": "run-9", "attempt": 2},
        "step": None,  # logged outside any ctx.step
    }
    assert log.pending == 0


def test_log_buffer_is_bounded_and_reports_drops() -> None:
    log = TaskLogger("run-1", 1, stream=io.StringIO(), buffer_limit=3)
    for n in range(5):
        log.debug("tick", n=n)
    batch = log.drain(10)
    assert batch[0].level == "warning" and batch[0].fields["dropped"] == 2
    assert [e.fields["n"] for e in batch[1:]] == [2, 3, 4]


def test_log_requeue_puts_entries_back_in_front() -> None:
    log = TaskLogger("run-1", 1, stream=io.StringIO())
    for n in range(3):
        log.info("m", n=n)
    first = log.drain(2)
    log.requeue(first)
    assert [e.fields["n"] for e in log.drain(10)] == [0, 1, 2]


def test_long_log_messages_are_truncated_for_the_coordinator() -> None:
    from waypost.sdk.logger import MAX_MESSAGE_CHARS

    log = TaskLogger("run-1", 1, stream=io.StringIO())
    log.info("x" * (MAX_MESSAGE_CHARS + 500))
    [entry] = log.drain(1)
    assert len(entry.message) == MAX_MESSAGE_CHARS
    assert entry.message.endswith("(truncated)")


def test_log_exception_carries_the_traceback() -> None:
    log = TaskLogger("run-1", 1, stream=io.StringIO())
    try:
        raise ValueError("bad row")
    except ValueError:
        log.exception("import failed", row=3)
    [entry] = log.drain(1)
    assert entry.level == "error" and entry.fields["row"] == 3
    assert "ValueError: bad row" in entry.fields["exception"]
