"""The smallest task: a sync function, run in a worker thread by the runner."""

from __future__ import annotations

from typing import Any

from waypost import task
from waypost.sdk import SyncContext


@task(id="hello", memory="128Mi", timeout="1m")
def hello(ctx: SyncContext, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Greet whoever the payload names."""
    name = (payload or {}).get("name", "world")
    greeting = ctx.step("greeting", lambda: f"Hello, {name}!")
    ctx.log.info("greeted", name=name)
    return {"greeting": greeting, "attempt": ctx.attempt}
