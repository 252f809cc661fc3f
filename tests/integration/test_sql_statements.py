"""Every named statement is valid SQL for the migrated schema, with as many
parameters as its names say."""

from __future__ import annotations

import asyncpg

from waypost.store import sql


async def test_every_statement_prepares_against_the_schema(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        for name in sql.names():
            s = sql.statement(name)
            if s.text.lstrip().upper().startswith("VACUUM"):
                continue  # a utility statement: nothing to prepare
            prepared = await conn.prepare(s.text)
            assert len(prepared.get_parameters()) == len(s.params), name
