"""Tasks that misbehave on purpose: for retries, dead letters, OOM and timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

from examples import ledger
from waypost import Retry, task
from waypost.sdk import Context

MIB = 1024 * 1024
PAGE = 4096


@task(id="always-fails", retry=Retry(max_attempts=3, initial_delay=0.1), memory="128Mi")
async def always_fails(ctx: Context, payload: Any) -> None:
    """Fail every attempt, so the run ends in the dead-letter queue."""
    ledger.record(ctx.run_id, ctx.attempt, "always_fails")
    raise RuntimeError(f"always-fails failed on attempt {ctx.attempt}, as designed")


@task(
    id="memory-hog",
    memory="64Mi",
    retry=Retry(
        max_attempts=2,
        initial_delay=0.1,
        oom_memory_multiplier=2.0,
        oom_memory_ceiling="256Mi",
    ),
)
def memory_hog(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Allocate ``payload["mb"]`` MiB and touch every page, so it is really resident.

    Over the 64Mi limit the attempt is OOM-killed; the retry gets twice the
    memory (up to 256Mi).
    """
    ledger.record(ctx.run_id, ctx.attempt, "memory_hog")
    # A checkpoint before the big allocation: a retry after an OOM kill resumes
    # after it (its attempt number shows it was written once).
    checked = ctx.step("input-checked", lambda: {"mb": int(payload["mb"])})
    size = int(checked["mb"]) * MIB
    block = bytearray(size)
    # Writing one byte per page forces the kernel to back each page.
    for offset in range(0, size, PAGE):
        block[offset] = 1
    return {"allocatedMiB": int(payload["mb"]), "attempt": ctx.attempt}


@task(id="sleepy", timeout="5s", retry=Retry(max_attempts=2, initial_delay=0.1), memory="128Mi")
async def sleepy(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``payload["seconds"]``, heart-beating each second; killed past its 5 s timeout."""
    seconds = float(payload["seconds"])
    remaining = seconds
    while remaining > 0:
        chunk = min(1.0, remaining)
        await asyncio.sleep(chunk)
        remaining -= chunk
        # One line a second: what the UI's browser test watches arrive live.
        ctx.log.info("still sleeping", remaining=round(remaining, 3))
        await ctx.heartbeat()
    return {"slept": seconds}
