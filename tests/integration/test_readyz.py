"""/readyz is 200 only when the process can do its job (issue 16: it was 200 before
`waypost dev` had registered its tasks, so early triggers got 404 unknown_task)."""

from __future__ import annotations

import aiohttp
import asyncpg

from tests.factories import settings
from waypost.standalone import Standalone
from waypost.store import migrate


async def ready(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as resp:
        return resp.status, await resp.json()


async def test_readyz_waits_for_held_conditions_and_the_schema(
    database_url: str, db: asyncpg.Pool
) -> None:
    stack = Standalone(settings(database_url), dispatch=False)
    stack.readiness.hold("tasks", "the example tasks are not registered yet")
    await stack.start()
    try:
        status, body = await ready(stack.url)
        assert status == 503 and body == {"error": {
            "code": "not_ready", "message": "the example tasks are not registered yet"}}
        stack.readiness.release("tasks")
        status, body = await ready(stack.url)
        assert status == 200 and body == {"status": "ready"}

        # A database whose schema lacks this version's newest migration.
        newest = len(migrate.available())
        await db.execute("DELETE FROM schema_migrations WHERE version = $1", newest)
        status, body = await ready(stack.url)
        assert status == 503 and body == {"error": {
            "code": "not_ready",
            "message": f"the database schema is at version {newest - 1}, this version needs "
                       f"{newest}"}}
    finally:
        await stack.stop()
