"""waypost on one machine: engine, coordinator, dispatcher and process backend in
one process. What `waypost dev` runs, and what integration tests drive."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from waypost.backends.process import ProcessBackend
from waypost.coordinator import server
from waypost.coordinator.readiness import Readiness
from waypost.engine import control, loops, output
from waypost.engine.clock import Clock
from waypost.engine.core import Engine
from waypost.model import from_sdk
from waypost.model.settings import Settings
from waypost.sdk.decorator import Task
from waypost.store import embedded

log = logging.getLogger("waypost.standalone")


@dataclass
class Standalone:
    """Start with ``await Standalone(settings).start()``; stop with ``stop()``."""

    settings: Settings
    backend: ProcessBackend = field(default_factory=ProcessBackend)
    clock: Clock | None = None
    dispatch: bool = True
    # /readyz answers 503 while a condition held here is unmet (dev: tasks registered).
    readiness: Readiness = field(default_factory=Readiness)

    async def start(self) -> Standalone:
        if self.settings.coordinator_port == 0:
            port = embedded.free_port(self.settings.coordinator_host)
            self.settings = self.settings.model_copy(update={"coordinator_port": port})
        self.engine = await Engine.open(self.settings, clock=self.clock)
        self._runner = await server.serve(self.engine, self.settings.coordinator_host,
                                          self.settings.coordinator_port, self.readiness)
        # Dev mode shows what runners print in the run's log stream too (backends that
        # run no processes, such as tests' stand-ins, have nothing to capture).
        capture = getattr(self.backend, "capture_output", None)
        if capture is not None:
            capture(output.StoreOutputSink(self.engine.pool))
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        if self.dispatch:
            # With an injected clock, the test ticks the scheduler itself.
            self._loops = loops.start(self.engine, self.backend, self._stop,
                                      schedule=self.clock is None)
        return self

    @property
    def url(self) -> str:
        return self.settings.runner_coordinator_url

    async def register(self, *tasks: Task[..., object], namespace: str = "default") -> None:
        """Store the definitions of SDK-decorated tasks."""
        for t in tasks:
            await control.register_task(
                self.engine, from_sdk.task_definition(t.definition, namespace=namespace)
            )

    async def stop(self) -> None:
        self._stop.set()
        await loops.wind_down(self._loops)
        # Nothing is claimed any more; attempts in flight get the shutdown grace to
        # finish (the coordinator still serves them), then close() hands the rest over.
        # (Backends that run no processes, such as tests' stand-ins, have nothing to drain.)
        drain = getattr(self.backend, "drain", None)
        if drain is not None:
            await drain(self.settings.shutdown_grace_seconds)
        await self.backend.close()
        await self._runner.cleanup()
        await self.engine.close()
