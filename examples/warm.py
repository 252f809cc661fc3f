"""Tasks that show what a warm runner keeps between runs and what it does not.

``probe`` reports the process it ran in and a module-level counter (which a
warm runner keeps: the module is imported once per process), and what run
state it can see: environment variables, files in its temporary directory,
checkpoints. With ``{"leave": true}`` it leaves some of each behind, so the
next run in the same process can show that none of it carried over.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from typing import Any

from waypost import task
from waypost.sdk import SyncContext

# Module state: the one thing a warm runner keeps on purpose (and the one
# thing user code can leak from one run into the next; see waypost.runner.warm).
RUNS_IN_THIS_PROCESS = 0

LEFT_ENV = "WAYPOST_EXAMPLE_LEFT_BEHIND"
LEFT_FILE = "left-behind.txt"


@task(id="warm-probe", memory="256Mi", timeout="1m")
def probe(ctx: SyncContext, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Report pid, counter and visible run state; optionally leave some behind."""
    started = time.time()
    global RUNS_IN_THIS_PROCESS
    RUNS_IN_THIS_PROCESS += 1
    payload = payload or {}
    tmp = tempfile.gettempdir()
    seen = {
        "startedAt": started,
        "pid": os.getpid(),
        # In a Pod, its name.
        "host": socket.gethostname(),
        "count": RUNS_IN_THIS_PROCESS,
        "runId": ctx.run_id,
        "env": os.environ.get(LEFT_ENV),
        "waypostEnv": sorted(k for k in os.environ if k.startswith("WAYPOST_")
                             and ("TOKEN" in k or k in ("WAYPOST_RUN_ID", "WAYPOST_ATTEMPT"))),
        "tmpFile": os.path.exists(os.path.join(tmp, LEFT_FILE)),
        "checkpoints": sorted(ctx.checkpoints),
    }
    if payload.get("leave"):
        os.environ[LEFT_ENV] = ctx.run_id
        with open(os.path.join(tmp, LEFT_FILE), "w", encoding="utf-8") as handle:
            handle.write(ctx.run_id)
        ctx.checkpoint("left-by-" + ctx.run_id[:8], {"run": ctx.run_id})
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    if payload.get("grow_mb"):
        _HOARD.append(bytearray(int(payload["grow_mb"]) * 1024 * 1024))
        for block in _HOARD:
            for offset in range(0, len(block), 4096):
                block[offset] = 1
    return seen


_HOARD: list[bytearray] = []


@task(id="warm-noop", memory="256Mi", timeout="1m")
def noop(ctx: SyncContext, payload: Any) -> dict[str, float]:
    """Nothing but the time it started, for latency benchmarks."""
    return {"startedAt": time.time()}
