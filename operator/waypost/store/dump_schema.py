"""Print the waypost schema as ``pg_dump`` shows it after every migration.

``operator/waypost/store/schema.sql`` is the checked-in output: the whole schema
in one readable file, for reviews and for people who want to know what the
tables look like. Regenerate it after adding a migration:

    python -m waypost.store.dump_schema > operator/waypost/store/schema.sql

This starts a throwaway Postgres (``EmbeddedPostgres``), applies the migrations,
and runs ``pg_dump --schema-only --schema=waypost``. The output is normalized
(comments, ``SET`` lines and blank runs dropped) so that it does not depend on
the pg_dump version's chatter. ``tests/integration/test_migrations.py`` fails
when the file and the migrations disagree.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from waypost.store import migrate
from waypost.store.embedded import EmbeddedPostgres, EmbeddedPostgresError
from waypost.store.pool import SCHEMA

HEADER = """\
-- The waypost schema after all migrations: pg_dump --schema-only --schema=waypost.
-- Generated; do not edit. Add a migration, then regenerate with
--     python -m waypost.store.dump_schema > operator/waypost/store/schema.sql
-- tests/integration/test_migrations.py checks that this file matches the migrations.
"""

_DROPPED_PREFIXES = ("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")


def pg_dump(server: EmbeddedPostgres, database: str) -> str:
    """``pg_dump --schema-only`` of our schema in ``database`` (as the server's user)."""
    args = [str(server.bin_dir / "pg_dump"), "--schema-only", f"--schema={SCHEMA}",
            "--no-owner", "--no-privileges", "-h", "127.0.0.1", "-p", str(server.port),
            "-U", "postgres", "-d", database]
    if os.geteuid() == 0:
        # Like EmbeddedPostgres, run the server's tools as its user when we are root.
        args = ["runuser", "-u", "postgres", "--", *args]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EmbeddedPostgresError(f"pg_dump failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def normalize(dump: str) -> str:
    """The statements of a dump, without comments, session settings or blank runs."""
    lines: list[str] = []
    for line in dump.splitlines():
        line = line.rstrip()
        if line.startswith(_DROPPED_PREFIXES):
            continue
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def render(dump: str) -> str:
    """The content of schema.sql for a raw dump."""
    return HEADER + "\n" + normalize(dump)


def generate() -> str:
    """Migrate a fresh throwaway database and render its schema."""
    with tempfile.TemporaryDirectory(prefix="waypost-schema-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", durable=False).start()
        try:
            asyncio.run(migrate.apply_dsn(server.dsn))
            return render(pg_dump(server, "postgres"))
        finally:
            server.destroy()


def main() -> None:
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()
