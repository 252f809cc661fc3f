"""waypost on one machine: engine, coordinator, dispatcher and process backend in
one process. What `waypost dev` runs, and what integration tests drive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

from aiohttp import web

from waypost.backends.process import ProcessBackend
from waypost.coordinator.app import create_app
from waypost.engine import control
from waypost.engine.clock import Clock
from waypost.engine.core import Engine
from waypost.engine.dispatcher import Dispatcher
from waypost.engine.scheduler import Scheduler
from waypost.model import from_sdk
from waypost.model.settings import Settings
from waypost.sdk.decorator import Task

log = logging.getLogger("waypost.standalone")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Standalone:
    """Start with ``await Standalone(settings).start()``; stop with ``stop()``."""

    settings: Settings
    backend: ProcessBackend = field(default_factory=ProcessBackend)
    clock: Clock | None = None
    dispatch: bool = True

    async def start(self) -> Standalone:
        if self.settings.coordinator_port == 0:
            port = _free_port(self.settings.coordinator_host)
            self.settings = self.settings.model_copy(update={"coordinator_port": port})
        self.engine = await Engine.open(self.settings, clock=self.clock)
        self._runner = web.AppRunner(create_app(self.engine), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.coordinator_host,
                           self.settings.coordinator_port)
        await site.start()
        self.dispatcher = Dispatcher(self.engine, self.backend)
        self._stop = asyncio.Event()
        self.scheduler = Scheduler(self.engine)
        self._task: asyncio.Task[None] | None = None
        self._scheduler_task: asyncio.Task[None] | None = None
        if self.dispatch:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self.dispatcher.run(self._stop))
            if self.clock is None:  # with an injected clock, the test ticks the scheduler
                self._scheduler_task = loop.create_task(self.scheduler.run(self._stop))
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
        for task in (self._task, self._scheduler_task):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
        await self.backend.close()
        await self._runner.cleanup()
        await self.engine.close()
