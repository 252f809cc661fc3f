"""The context's durable waits against an in-memory coordinator: short waits sleep,
long ones suspend (Suspended ends the attempt and every later SDK call), a wait
whose checkpoint exists passes at once, auto keys follow call order, a timed-out
token raises WaitTimeout, child outcomes become ChildRun values."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from waypost.sdk import protocol
from waypost.sdk.context import AttemptControl, Checkpoint, Context, StopReason
from waypost.sdk.errors import ChildRunFailed, Suspended, WaitTimeout


@dataclass
class WaitPort:
    """Answers waits with ``outcomes`` by key (suspends when a key has none)."""

    outcomes: dict[str, Any] = field(default_factory=dict)
    waits: list[protocol.WaitBody] = field(default_factory=list)
    tokens: list[protocol.TokenBody] = field(default_factory=list)
    flushed: int = 0

    async def write_checkpoint(self, key: str, data: Any) -> None:
        pass

    async def heartbeat(self) -> bool:
        return False

    async def wait(self, body: protocol.WaitBody) -> protocol.WaitAnswer:
        self.waits.append(body)
        if body.key in self.outcomes:
            return protocol.WaitAnswer(suspended=False, data=self.outcomes[body.key])
        return protocol.WaitAnswer(suspended=True)

    async def create_token(self, body: protocol.TokenBody) -> protocol.TokenAnswer:
        self.tokens.append(body)
        return protocol.TokenAnswer(id=f"tok-{body.key}", url=f"http://x/cb/{body.key}")


def _ctx(port: WaitPort, *checkpoints: Checkpoint, control: AttemptControl | None = None
         ) -> Context:
    async def flush() -> bool:
        port.flushed += 1
        return True

    return Context(run_id="r", attempt=1, payload=None, port=port, checkpoints=checkpoints,
                   control=control, suspend_threshold=0.2, flush_logs=flush)


async def test_short_wait_sleeps_in_process() -> None:
    port = WaitPort()
    started = time.monotonic()
    await _ctx(port).wait_for(0.1)
    assert time.monotonic() - started >= 0.1
    assert port.waits == []


async def test_long_wait_suspends_and_stops_the_attempt() -> None:
    port, control = WaitPort(), AttemptControl()
    ctx = _ctx(port, control=control)
    with pytest.raises(Suspended):
        await ctx.wait_for(timedelta(minutes=5))
    assert (port.waits[0].key, port.waits[0].kind, port.waits[0].seconds) == ("wait-1", "sleep",
                                                                              300.0)
    assert port.flushed == 1  # the lines before the wait are shipped first
    assert control.reason is StopReason.SUSPENDED
    with pytest.raises(Suspended):
        await ctx.step("after", lambda: 1)


async def test_a_wait_that_ended_passes_through() -> None:
    port = WaitPort()
    ctx = _ctx(port, Checkpoint("wait-1", {"wait": "sleep"}), Checkpoint("nap", {}))
    await ctx.wait_for("1h")
    await ctx.wait_until(datetime.now(UTC) + timedelta(days=2), key="nap")
    assert port.waits == []
    with pytest.raises(Suspended):
        await ctx.wait_for("1h")  # wait-2: not recorded yet
    assert port.waits[0].key == "wait-2"


@pytest.mark.parametrize("bad", [-1, "soon", 400 * 86400, True])
async def test_bad_waits_raise(bad: Any) -> None:
    with pytest.raises(ValueError):
        await _ctx(WaitPort()).wait_for(bad)


async def test_naive_wait_until_raises() -> None:
    with pytest.raises(ValueError, match="timezone"):
        await _ctx(WaitPort()).wait_until(datetime(2030, 1, 1))


async def test_tokens() -> None:
    port = WaitPort(outcomes={"token:tok-token-1": {"ok": True, "data": {"approved": True}},
                              "token:tok-late": {"ok": False, "timedOut": True}})
    ctx = _ctx(port)
    token = await ctx.create_token(timeout="1h")
    assert port.tokens[0].timeout_seconds == 3600.0 and port.tokens[0].key == "token-1"
    assert await ctx.wait_for_token(token) == {"approved": True}
    late = await ctx.create_token(idempotency_key="late")
    with pytest.raises(WaitTimeout):
        await ctx.wait_for_token(late)
    with pytest.raises(ValueError):
        await ctx.create_token(timeout=0)


async def test_children() -> None:
    runs = [{"id": "c1", "task": "sq", "status": "succeeded", "result": 4},
            {"id": "c2", "task": "sq", "status": "dead_lettered", "result": None,
             "error": {"type": "error", "message": "boom"}}]
    port = WaitPort(outcomes={"children-1": {"wait": "children", "runs": runs},
                              "child-1": {"wait": "children", "runs": runs[1:]}})
    ctx = _ctx(port)
    got = await ctx.batch_trigger_and_wait("sq", [2, 3])
    assert [(c.id, c.ok, c.result) for c in got] == [("c1", True, 4), ("c2", False, None)]
    assert port.waits[0].task == "sq" and len(port.waits[0].children or []) == 2
    with pytest.raises(ChildRunFailed, match="boom"):
        await ctx.trigger_and_wait("sq", 3, raise_on_failure=True)
    with pytest.raises(ValueError):
        await ctx.batch_trigger_and_wait("sq", [])
