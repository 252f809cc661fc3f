"""Serving the coordinator API over HTTP, the same for ``waypost dev`` and every replica."""

from __future__ import annotations

from aiohttp import web

from waypost.coordinator.app import create_app
from waypost.coordinator.readiness import Readiness
from waypost.coordinator.wire import CoordinatorRunner
from waypost.engine.core import Engine


async def serve(engine: Engine, host: str, port: int,
                readiness: Readiness | None = None) -> web.AppRunner:
    """Serve the API of ``engine`` on ``host:port``; ``await runner.cleanup()`` stops it.
    /readyz also waits for what ``readiness`` holds."""
    runner = CoordinatorRunner(create_app(engine, readiness))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
