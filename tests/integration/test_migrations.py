"""Migrations: safe when processes start at once, and schema.sql matches them."""

from __future__ import annotations

import asyncio
import difflib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

import waypost.store
from waypost.store import dump_schema, migrate
from waypost.store.embedded import EmbeddedPostgres

SCHEMA_FILE = Path(waypost.store.__file__).parent / "schema.sql"


@pytest.fixture
async def empty_database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """A database with nothing in it (not cloned from the migrated template)."""
    name = f"m_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield name
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_concurrent_apply_records_each_version_once(
    postgres: EmbeddedPostgres, empty_database: str
) -> None:
    dsn = postgres.dsn_for(empty_database)
    shipped = [m.version for m in migrate.available()]
    assert shipped == list(range(1, len(shipped) + 1))
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        # Four processes starting at the same moment.
        applied = await asyncio.gather(*[migrate.apply(c) for c in conns])
        assert sorted(applied, key=len) == [[], [], [], shipped]
        rows = await conns[0].fetch(
            "SELECT version, count(*) OVER (PARTITION BY version) AS n "
            "FROM waypost.schema_migrations ORDER BY version")
        assert [(r["version"], r["n"]) for r in rows] == [(v, 1) for v in shipped]
        # Started again later, there is nothing left to do.
        assert await migrate.apply(conns[1]) == []
        # Nobody holds the migration lock afterwards.
        assert await conns[2].fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        for conn in conns:
            await conn.close()

    # The concurrently migrated schema is exactly the checked-in one.
    expected = dump_schema.normalize(SCHEMA_FILE.read_text())
    actual = dump_schema.normalize(dump_schema.pg_dump(postgres, empty_database))
    diff = "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True),
        "schema.sql (checked in)", "pg_dump of the migrated database"))
    assert actual == expected, (
        "operator/waypost/store/schema.sql is out of date; regenerate it with\n"
        "    python -m waypost.store.dump_schema > operator/waypost/store/schema.sql\n" + diff)


async def test_schema_file_is_the_rendered_dump(
    postgres: EmbeddedPostgres, template_database: str
) -> None:
    """The file is exactly what the generator writes (header included), so regenerating
    an up-to-date file changes nothing."""
    rendered = dump_schema.render(dump_schema.pg_dump(postgres, template_database))
    assert SCHEMA_FILE.read_text() == rendered
    assert rendered.startswith(dump_schema.HEADER)
    assert "python -m waypost.store.dump_schema > operator/waypost/store/schema.sql" in rendered


async def test_changed_or_newer_migrations_are_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE waypost.schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
            await migrate.apply(conn)
        newest = len(migrate.available())
        await conn.execute(
            "UPDATE waypost.schema_migrations SET checksum = $1 WHERE version = 1",
            migrate.available()[0].checksum)
        await conn.execute(
            "INSERT INTO waypost.schema_migrations (version, name, checksum) "
            "VALUES ($1, 'from_the_future', 'x')", newest + 1)
        with pytest.raises(migrate.MigrationError, match="newer than this waypost"):
            await migrate.apply(conn)
        # A refused start leaves the lock free for the next process.
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()
