"""/metrics over HTTP on a real Postgres: queue depths and the health of the hot table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import enqueue, register_task, settings
from waypost.standalone import Standalone
from waypost.store import runs


@pytest.fixture
async def stack(database_url: str, db: asyncpg.Pool) -> AsyncIterator[Standalone]:
    await register_task(db, "t")
    app = await Standalone(settings(database_url), dispatch=False).start()
    try:
        yield app
    finally:
        await app.stop()


async def scrape(app: Standalone) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with aiohttp.ClientSession() as http, http.get(f"{app.url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {f.name: [(s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(text)}


async def test_queue_depths_and_hot_table_health(
    stack: Standalone, database_url: str, db: asyncpg.Pool
) -> None:
    for _ in range(5):
        await enqueue(db)
    await runs.claim(db, limit=2, lease_seconds=30, worker="w")
    # Another client holds a snapshot open, as a long report or a forgotten session would.
    holder = await asyncpg.connect(database_url)
    try:
        tx = holder.transaction(isolation="repeatable_read")
        await tx.start()
        await holder.fetchval("SELECT count(*) FROM waypost.runs")
        await asyncio.sleep(1.2)
        metrics = await scrape(stack)
        await tx.rollback()
    finally:
        await holder.close()

    queue = {"queue_namespace": "default", "queue": "t"}
    assert metrics["waypost_queue_ready_runs"] == [(queue, 3.0)]
    assert metrics["waypost_queue_running_runs"] == [(queue, 2.0)]
    [(_, oldest)] = metrics["waypost_db_oldest_snapshot_seconds"]
    assert 1.2 <= oldest < 60
    [(_, size)] = metrics["waypost_hot_table_bytes"]
    assert size > 0
    assert "waypost_hot_table_dead_tuples" in metrics
    assert "waypost_hot_table_live_tuples" in metrics

    after = await scrape(stack)
    [(_, oldest_after)] = after["waypost_db_oldest_snapshot_seconds"]
    assert oldest_after < 1.0  # nothing holds a snapshot any more
