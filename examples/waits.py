"""Durable waits (docs/waits.md): a long sleep, an approval token, a fan-out to
child runs. Each side effect goes to the example ledger, so tests can prove that
nothing before a wait ran twice when the run resumed after it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples import ledger
from waypost import Queue, Retry, task
from waypost.sdk import Context, SyncContext, WaitTimeout


@task(id="nap", memory="128Mi", timeout="5m")
async def nap(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Do something, sleep ``seconds`` (the run suspends when that is long), go on."""
    before = await ctx.step("before", lambda: ledger.record(ctx.run_id, ctx.attempt, "before"))
    await ctx.wait_for(payload.get("seconds", 10), key="nap")
    ledger.record(ctx.run_id, ctx.attempt, "after")
    return {"slept": payload.get("seconds", 10), "attempt": ctx.attempt, "before": before}


@task(id="nap-sync", memory="128Mi", timeout="5m")
def nap_sync(ctx: SyncContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The sync form of ``nap``: the same waits, blocking."""
    ctx.step("before", lambda: ledger.record(ctx.run_id, ctx.attempt, "before"))
    ctx.wait_for(payload.get("seconds", 10))
    ledger.record(ctx.run_id, ctx.attempt, "after")
    return {"attempt": ctx.attempt}


@task(id="approval", memory="128Mi", timeout="5m")
async def approval(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Ask for an approval and wait for it (a person runs ``waypost tokens complete``)."""
    token = await ctx.create_token(timeout=payload.get("timeout", "1h"))
    await ctx.step("asked", lambda: ledger.record(ctx.run_id, ctx.attempt, "asked",
                                                  token=token.id))
    try:
        decision = await ctx.wait_for_token(token)
    except WaitTimeout:
        ledger.record(ctx.run_id, ctx.attempt, "timed-out")
        return {"approved": False, "timedOut": True}
    ledger.record(ctx.run_id, ctx.attempt, "decided")
    return {"approved": bool((decision or {}).get("approved")), "by": (decision or {}).get("by")}


FANOUT_QUEUE = Queue(name="fanout", max_concurrency=5)


@task(id="square", memory="128Mi", timeout="5m", queue=FANOUT_QUEUE,
      retry=Retry(max_attempts=2, initial_delay=0.1))
async def square(ctx: Context, payload: dict[str, Any]) -> int:
    """A child: square a number after a short pause; ``fail`` makes it fail for good."""
    ledger.record(ctx.run_id, ctx.attempt, "square", i=payload["i"])
    await asyncio.sleep(float(payload.get("pause", 0.5)))
    if payload.get("fail"):
        raise RuntimeError(f"child {payload['i']} was told to fail")
    return int(payload["i"]) ** 2


@task(id="fan-out", memory="128Mi", timeout="5m", queue=FANOUT_QUEUE,
      retry=Retry(max_attempts=3, initial_delay=0.1))
async def fan_out(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Start ``n`` children in the parent's own queue and sum what they return.

    The parent shares the queue (maxConcurrency 5) with its children: it can only
    finish because a waiting run holds no slot. With ``failAfterChildren`` the
    first attempt past the wait fails, and the retry finds the same children.
    """
    n = int(payload.get("n", 5))
    children = await ctx.batch_trigger_and_wait(
        square, [{"i": i, "pause": payload.get("pause", 0.5),
                  "fail": i in payload.get("failChildren", [])} for i in range(n)],
        key="squares")
    ledger.record(ctx.run_id, ctx.attempt, "children-done", n=len(children))
    if payload.get("failAfterChildren") and "failed-once" not in ctx.checkpoints:
        await ctx.checkpoint("failed-once", True)
        raise RuntimeError("failing once after the children, to be retried")
    return {"sum": sum(c.result for c in children if c.ok),
            "failed": [c.id for c in children if not c.ok],
            "errors": [c.error.get("message") if c.error else None
                       for c in children if not c.ok]}


@task(id="one-child", memory="128Mi", timeout="5m")
async def one_child(ctx: Context, payload: dict[str, Any]) -> Any:
    """trigger_and_wait of one child; ``raise`` asks for an exception on failure."""
    child = await ctx.trigger_and_wait(payload.get("task", "square"), payload.get("child"),
                                       raise_on_failure=bool(payload.get("raise")))
    return {"status": child.status, "result": child.result}
