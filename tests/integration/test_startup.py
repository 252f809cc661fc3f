"""The operator's start before its database (issue 16: it crash-looped with a
ConnectionRefusedError while the bundled Postgres started). It waits with backoff
and a clear log line, alive (/healthz 200) but not ready (503), then opens."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.factories import settings
from waypost.coordinator import startup
from waypost.store.embedded import EmbeddedPostgres, free_port


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.content_type == "application/json"
        return resp.status


async def test_waits_for_a_database_that_starts_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False)  # not started yet
    port = free_port()
    stop = asyncio.Event()
    try:
        with caplog.at_level(logging.WARNING, logger="waypost.startup"):
            opening = asyncio.create_task(startup.open_engine(
                settings(pg.dsn, coordinator_port=port), "127.0.0.1", stop=stop,
                first_delay=0.2, max_delay=0.5))
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if await status_of(f"{base}/healthz") == 200:
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            assert await status_of(f"{base}/healthz") == 200  # alive: no restart
            assert await status_of(f"{base}/readyz") == 503  # not ready
            assert await status_of(f"{base}/v1/runs") == 503
            assert not opening.done()
            pg.start()
            engine = await asyncio.wait_for(opening, 60)
        assert engine is not None
        try:
            assert await engine.pool.fetchval("SELECT 1") == 1
        finally:
            await engine.close()
        waits = [r.getMessage() for r in caplog.records if r.name == "waypost.startup"]
        assert waits and all(m.startswith("waiting for the database (") for m in waits)
        # The waiting server is gone: the real coordinator can take the port.
        with pytest.raises(aiohttp.ClientConnectionError):
            await status_of(f"{base}/healthz")
    finally:
        stop.set()
        pg.destroy()


async def test_a_stop_while_waiting_ends_the_wait(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False)
    stop = asyncio.Event()
    opening = asyncio.create_task(startup.open_engine(
        settings(pg.dsn, coordinator_port=free_port()), "127.0.0.1", stop=stop,
        first_delay=0.2))
    await asyncio.sleep(0.5)
    stop.set()
    assert await asyncio.wait_for(opening, 10) is None
