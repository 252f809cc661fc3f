"""Fixtures of the fault suite: a Postgres server of its own per scenario (the
scenarios restart it and cut its connections, which the shared test server must
never see)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from waypost.store import migrate
from waypost.store.embedded import EmbeddedPostgres


@pytest.fixture
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    base = Path(tempfile.mkdtemp(prefix="waypost-fault-pg-"))
    # Durable: a restart must not lose a commit the engine was told about.
    server = EmbeddedPostgres(base / "data", durable=True).start()
    try:
        admin = await asyncpg.connect(server.dsn)
        try:
            await admin.execute("CREATE DATABASE waypost")
        finally:
            await admin.close()
        await migrate.apply_dsn(server.dsn_for("waypost"))
        yield server
    finally:
        server.destroy()
