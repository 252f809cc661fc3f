"""Test fixtures: one real Postgres per test session, a fresh database per test.

The server is started here (never assumed to be running); a test that needs it
fails if it cannot start. Migrations run once into a template database that
each test clones with CREATE DATABASE … TEMPLATE, which takes milliseconds.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from waypost.store import migrate
from waypost.store import pool as store_pool
from waypost.store.embedded import EmbeddedPostgres

TEMPLATE = "waypost_template"
FAULTS = Path(__file__).with_name("faults")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--faults", action="store_true",
                     help="collect the fault suite (tests/faults; `make faults` runs it)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # The fault suite restarts and kills things for minutes: `make faults` runs it,
    # `make test` (all of tests/) does not.
    if collection_path == FAULTS and not config.getoption("faults"):
        return True
    return None


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    base = Path(tempfile.mkdtemp(prefix="waypost-test-pg-"))
    server = EmbeddedPostgres(base / "data", durable=False).start()
    try:
        yield server
    finally:
        server.destroy()
        os.rmdir(base) if base.exists() and not any(base.iterdir()) else None


@pytest.fixture(scope="session")
async def template_database(postgres: EmbeddedPostgres) -> str:
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    await migrate.apply_dsn(postgres.dsn_for(TEMPLATE))
    return TEMPLATE


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres, template_database: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    finally:
        await admin.close()
    yield postgres.dsn_for(name)
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await store_pool.create_pool(database_url, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()
