"""A task that prints, for the test of dev mode's output capture."""

from __future__ import annotations

import sys
from typing import Any

from waypost import task
from waypost.sdk import SyncContext


@task(id="printer", memory="128Mi")
def printer(ctx: SyncContext, payload: Any) -> str:
    """Print to stdout and stderr, and log once through ctx.log."""
    print("hello from stdout", flush=True)
    print("oops on stderr", file=sys.stderr, flush=True)
    ctx.log.info("structured line", n=1)
    return "printed"


@task(id="late-printer", memory="128Mi")
def late_printer(ctx: SyncContext, payload: Any) -> str:
    """Print without flushing: stdout is a pipe, so the line leaves the process when it
    exits, after the run's final status is stored."""
    print("printed before the end, stored after it")
    return "done"
