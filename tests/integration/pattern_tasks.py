"""Tasks that show each failure pattern (issue 11), for tests/integration/test_insights.py."""

from __future__ import annotations

import time
from typing import Any

from waypost import Retry, task
from waypost.sdk import SyncContext

MIB = 1024 * 1024
PAGE = 4096


@task(id="slow-loop", timeout="1s", retry=Retry(max_attempts=2, initial_delay=0.1),
      memory="128Mi")
def slow_loop(ctx: SyncContext, payload: Any) -> None:
    """Never fits its 1 s maxDuration: every attempt times out (a timeout loop)."""
    time.sleep(30)


@task(id="stormy", retry=Retry(max_attempts=2, initial_delay=0.1), memory="128Mi")
def stormy(ctx: SyncContext, payload: Any) -> None:
    """Fails every attempt: many of these runs make a retry storm."""
    raise ConnectionError("the downstream service refused the connection")


@task(id="no-checkpoints", memory="128Mi")
def no_checkpoints(ctx: SyncContext, payload: dict[str, Any]) -> str:
    """Works for ``payload["seconds"]`` without writing a checkpoint (a checkpoint gap)."""
    time.sleep(float(payload["seconds"]))
    return "done"


@task(id="leaky", memory="128Mi")
def leaky(ctx: SyncContext, payload: dict[str, Any]) -> int:
    """Holds ``payload["mb"]`` MiB in its ``allocate`` step: run with growing sizes, the
    peaks climb toward the 128Mi limit (memory growth)."""

    def allocate() -> int:
        size = int(payload["mb"]) * MIB
        block = bytearray(size)
        for offset in range(0, size, PAGE):  # make every page resident
            block[offset] = 1
        return len(block) // MIB

    return int(ctx.step("allocate", allocate))
