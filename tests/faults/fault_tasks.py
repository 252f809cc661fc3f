"""The task the fault scenarios run: a few checkpointed steps, each a side effect in
the ledger (``examples.ledger``), so the invariants can count real effects per attempt."""

from __future__ import annotations

import asyncio
from typing import Any

from examples import ledger
from waypost import Retry, task
from waypost.sdk import Context


async def effect(ctx: Context, index: int, pause: float) -> int:
    """One step's work: wait, then record the side effect (once per execution)."""
    await asyncio.sleep(pause)
    ledger.record(ctx.run_id, ctx.attempt, f"s{index}")
    return index


@task(
    id="fault-steps",
    # Faults cost attempts (a lost lease, a killed engine): the budget is generous so
    # that every run ends succeeded and a dead letter means something went wrong.
    retry=Retry(max_attempts=30, initial_delay=0.1, factor=1.5, max_delay=2.0, jitter=0.2),
    memory="256Mi",
)
async def fault_steps(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """``steps`` checkpointed steps of ``pause`` seconds each."""
    steps = int(payload.get("steps", 3))
    pause = float(payload.get("pause", 0.2))
    for index in range(steps):
        await ctx.step(f"s{index}", effect, ctx, index, pause)
    return {"steps": steps}
