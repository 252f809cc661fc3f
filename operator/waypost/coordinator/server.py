"""Serving the coordinator API over HTTP, the same for ``waypost dev`` and every replica."""

from __future__ import annotations

from aiohttp import web

from waypost.coordinator.app import create_app
from waypost.engine.core import Engine


async def serve(engine: Engine, host: str, port: int) -> web.AppRunner:
    """Serve the API of ``engine`` on ``host:port``; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(create_app(engine), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
