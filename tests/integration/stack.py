"""The whole engine on one machine, for integration tests: real Postgres, real
coordinator over HTTP, real runner subprocesses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import Run
from waypost.model.settings import Settings


def settings(database_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url,
        "coordinator_port": 0,
        "heartbeat_interval_seconds": 1.0,
        "missed_heartbeats": 3,
        "poll_interval_seconds": 0.5,
    }
    base.update(overrides)
    return Settings.model_validate(base)


async def wait_for_status(
    engine: object, run_id: str | uuid.UUID, statuses: Iterable[RunStatus], timeout: float = 60
) -> Run:
    wanted = set(statuses)
    rid = uuid.UUID(str(run_id))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = await control.get(engine, rid, details=True)  # type: ignore[arg-type]
        if run.status in wanted:
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {rid} is {run.status} after {timeout}s, wanted {wanted}: "
                                 f"{run.error}")
        await asyncio.sleep(0.1)
