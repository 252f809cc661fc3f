"""Starting and stopping the engine's loops: the same for ``waypost dev`` and the operator.

The dispatcher (which also vacuums the hot table), the waker (durable waits,
delayed runs, ttls), the scheduler, the telemetry reader (metrics and run spans
from the event log) and the failure-pattern detector run until a stop event is
set. ``waypost dev`` runs them beside its process backend; in the operator only
the leader runs them, beside the kopf handlers and the status mirror, and winds
them all down the same way when it stops leading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from waypost.engine import insights, telemetry
from waypost.engine.backend import ExecutionBackend
from waypost.engine.core import Engine
from waypost.engine.dispatcher import Dispatcher
from waypost.engine.scheduler import Scheduler
from waypost.engine.waits import Waker

#: How long loops get to finish their pass after the stop event before they are cancelled.
WIND_DOWN_SECONDS = 10.0


def start(engine: Engine, backend: ExecutionBackend, stop: asyncio.Event, *,
          schedule: bool = True) -> list[asyncio.Task[None]]:
    """Start the dispatcher over ``backend`` and, with ``schedule``, the scheduler."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(Dispatcher(engine, backend).run(stop), name="dispatcher"),
             # Resumes due waits and delayed runs, expires runs past their ttl.
             loop.create_task(Waker(engine).run(stop), name="waker")]
    if schedule:
        tasks.append(loop.create_task(Scheduler(engine).run(stop), name="scheduler"))
    tasks.append(loop.create_task(
        telemetry.run(engine, stop), name="telemetry"))
    tasks.append(loop.create_task(insights.run(engine, stop), name="insights"))
    return tasks


async def wind_down(tasks: Sequence[asyncio.Task[None]],
                    timeout: float = WIND_DOWN_SECONDS) -> None:
    """After the stop event: let ``tasks`` end within ``timeout``, then cancel the rest."""
    if not tasks:
        return
    await asyncio.wait(tasks, timeout=timeout)
    for task in tasks:
        task.cancel()
    # Collected: an error of a loop was logged by the loop; here it only must not leak.
    await asyncio.gather(*tasks, return_exceptions=True)
