"""The key that signs per-attempt credentials, shared by every replica via the store."""

from __future__ import annotations

import secrets

import asyncpg

from waypost.store.sql import query


async def signing_key(db: asyncpg.Pool | asyncpg.Connection) -> bytes:
    key: bytes = await db.fetchval(query("ensure_signing_key"), secrets.token_bytes(32))
    return key
