"""Tasks for cancellation: one that stops when asked, two that never look.

Each records its process id as its first checkpoint, so a test can check that
the process is gone after the run was cancelled.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from waypost import Retry, task
from waypost.sdk import Context


@task(id="cancellable-loop", retry=Retry(max_attempts=1), memory="256Mi")
async def cancellable_loop(ctx: Context, payload: Any) -> dict[str, Any]:
    """Work in small slices until the run is cancelled (``ctx.cancelled``)."""
    await ctx.checkpoint("pid", os.getpid())
    slices = 0
    while not ctx.cancelled:
        await asyncio.sleep(0.05)
        slices += 1
    ctx.log.info("cancelled; cleaning up", slices=slices)
    return {"slices": slices}


@task(id="stuck-async", retry=Retry(max_attempts=1), memory="256Mi")
async def stuck_async(ctx: Context, payload: Any) -> None:
    """Block the event loop in a call that never returns: only a kill stops it."""
    await ctx.checkpoint("pid", os.getpid())
    time.sleep(3600)  # noqa: ASYNC251 (blocking on purpose: the runner cannot run either)


@task(id="stuck-sync", retry=Retry(max_attempts=1), memory="256Mi")
def stuck_sync(ctx: Any, payload: Any) -> None:
    """A sync task stuck in a blocking call: the runner leaves its thread and exits."""
    ctx.checkpoint("pid", os.getpid())
    time.sleep(3600)
