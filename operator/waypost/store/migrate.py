"""Versioned, forward-only schema migrations, applied on start.

Files are ``migrations/NNNN_name.sql``. An advisory lock makes it safe for
several processes (operator replicas, dev, tests) to start at once: one applies,
the others wait and then find nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from waypost.store.pool import SCHEMA

# Arbitrary but fixed: every waypost process agrees on this lock id.
_MIGRATION_LOCK = 0x77617970  # "wayp"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def available() -> list[Migration]:
    """Every migration shipped with this version, in order."""
    folder = resources.files("waypost.store") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..N without gaps, found {versions}")
    return found


async def apply(conn: asyncpg.Connection) -> list[int]:
    """Bring the schema up to date; returns the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch(f"SELECT version, checksum FROM {SCHEMA}.schema_migrations")
        done = {r["version"]: r["checksum"] for r in rows}
        shipped = available()
        newest = shipped[-1].version if shipped else 0
        if done and max(done) > newest:
            raise MigrationError(
                f"the database is at schema version {max(done)}, newer than this waypost "
                f"({newest}); upgrade waypost instead of downgrading"
            )
        for migration in shipped:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed "
                        "after it was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path = {SCHEMA}")
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.schema_migrations (version, name, checksum) "
                    "VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def apply_dsn(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await apply(conn)
    finally:
        await conn.close()
