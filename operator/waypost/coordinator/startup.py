"""Start-up before the database answers: wait for it, alive but not ready.

The operator may start before its Postgres does (the chart's bundled one, a
managed database after a failover). Crashing then makes a crash loop with
tracebacks; instead the process retries with backoff and a clear log line, and
meanwhile serves /healthz (alive: no restart) and answers everything else 503
(/readyz: not ready, so the Service sends it nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from waypost.coordinator.wire import CoordinatorRunner, error_response
from waypost.engine.core import Engine
from waypost.model.settings import Settings
from waypost.store import pool as store_pool

log = logging.getLogger("waypost.startup")

# What a database that is not there yet raises (refused, starting up, not created).
NOT_YET = (*store_pool.UNAVAILABLE_ERRORS, asyncpg.CannotConnectNowError,
           asyncpg.InvalidCatalogNameError, asyncpg.InvalidPasswordError)


def _waiting_app() -> web.Application:
    async def alive(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def waiting(request: web.Request) -> web.Response:
        return error_response(503, "store_unavailable",
                              "waiting for the database; nothing can be done yet")

    app = web.Application()
    app.router.add_get("/healthz", alive)
    app.router.add_route("*", "/{tail:.*}", waiting)
    return app


async def open_engine(
    settings: Settings, host: str, *, stop: asyncio.Event,
    opener: Callable[[Settings], Awaitable[Engine]] = Engine.open,
    first_delay: float = 0.5, max_delay: float = 10.0,
) -> Engine | None:
    """Open the engine, waiting for the database; None when ``stop`` is set first."""
    runner: CoordinatorRunner | None = None
    delay = first_delay
    try:
        while not stop.is_set():
            try:
                return await opener(settings)
            except NOT_YET as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("waiting for the database (%s); retrying in %.1f s", reason, delay)
            if runner is None:
                runner = CoordinatorRunner(_waiting_app())
                await runner.setup()
                await web.TCPSite(runner, host, settings.coordinator_port).start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, max_delay)
        return None
    finally:
        if runner is not None:
            await runner.cleanup()
