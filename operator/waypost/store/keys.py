"""The key that signs per-attempt credentials, shared by every replica via the store."""

from __future__ import annotations

import secrets

import asyncpg

from waypost.store.sql import bind


async def signing_key(db: asyncpg.Pool | asyncpg.Connection) -> bytes:
    """Return the cluster's signing key, storing a new one if none exists yet.

    Two replicas starting together race on the insert: the loser's INSERT waits for
    the winner and does nothing, but its SELECT still reads the snapshot taken before
    the winner committed and finds no row. A second statement takes a new snapshot
    (READ COMMITTED) and sees the winner's key, so one retry is always enough.
    """
    for _ in range(3):
        key: bytes | None = await db.fetchval(
            *bind("ensure_signing_key", key=secrets.token_bytes(32)))
        if key is not None:
            return bytes(key)
    raise RuntimeError("the credential signing key could not be read from signing_keys")
