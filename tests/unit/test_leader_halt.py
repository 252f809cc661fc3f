"""A process that stops leading fences its own leader-only writes at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from waypost.controller.operator import LeaderWork, OperatorOptions
from waypost.engine.core import DEPOSED_EPOCH


async def test_halt_leaves_a_fence_that_matches_no_epoch_not_none() -> None:
    engine = SimpleNamespace(leader_epoch=7)
    work = LeaderWork(cast(Any, engine), cast(Any, None),
                      OperatorOptions(namespace="ns", identity="me"))
    seen: list[int | None] = []

    async def loop_winding_down() -> None:
        # A leader-only loop's last pass, after the stop: it must not run unfenced.
        await work.stop.wait()
        seen.append(engine.leader_epoch)

    work.tasks = [asyncio.create_task(loop_winding_down())]
    await work.halt()
    assert seen == [DEPOSED_EPOCH]
    assert engine.leader_epoch == DEPOSED_EPOCH is not None
    assert DEPOSED_EPOCH < 0  # below any Lease's leaseTransitions
