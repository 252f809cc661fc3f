"""Connections to the store: an asyncpg pool with JSON codecs and our schema."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

SCHEMA = "waypost"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=_decode_json, schema="pg_catalog"
        )


class UnreadableJson:
    """A stored JSON value that Python cannot decode (nested past its recursion limit).

    Returned instead of failing the whole query, so that the rows around it can
    still be read; the API shows it as a placeholder."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"UnreadableJson({self.size} bytes)"


def _decode_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        return UnreadableJson(len(text))


def _encode_json(value: Any) -> str:
    # Values arrive pre-encoded (size limits are checked on the encoded text), so a
    # str is passed through; anything else is encoded here.
    if isinstance(value, RawJson):
        return value.text
    return json.dumps(value, separators=(",", ":"))


class RawJson:
    """JSON text that was already encoded (and measured) by the caller."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({len(self.text)} bytes)"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a pooled connection as it is (asyncpg still rolls back a transaction
    left open and drops listeners). Our pooled connections never change session
    state: no session SET (only SET LOCAL), no LISTEN (the dispatcher listens on a
    connection of its own), no cursors, no advisory locks left held. asyncpg's
    default reset query (RESET ALL, pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *)
    would cost a round trip on every release: on the claim path that was one
    round trip in seven."""


def server_settings(*, pooled: bool = False) -> dict[str, str]:
    # A transaction pooler (PgBouncer) refuses startup parameters it does not know,
    # search_path among them; behind one, the role's own search_path applies.
    if pooled:
        return {"application_name": "waypost"}
    return {"search_path": SCHEMA, "application_name": "waypost"}


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, timeout: float = 10.0,
    pooled: bool = False,
) -> asyncpg.Pool:
    """A pool whose connections use our schema and decode JSON to Python values.

    ``pooled``: ``dsn`` is a transaction pooler, where consecutive transactions of one
    connection may run on different server sessions, so no statement stays prepared
    (asyncpg's statement cache is off) and the schema comes from the role's
    search_path instead of a startup parameter."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings=server_settings(pooled=pooled),
        timeout=timeout,
        command_timeout=60,
        statement_cache_size=0 if pooled else 100,
    )
    assert pool is not None
    return pool


async def connect(dsn: str, *, timeout: float = 10.0) -> asyncpg.Connection:
    """A single connection (LISTEN, migrations), configured like the pool's."""
    conn = await asyncpg.connect(dsn, server_settings=server_settings(), timeout=timeout)
    await _init_connection(conn)
    return conn


# What a dead or unreachable database raises; the API answers these with 503.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    # The connection's state after the server closed it in the middle of an operation.
    asyncpg.InternalClientError,
    # The database itself is gone (dropped, or not created yet).
    asyncpg.InvalidCatalogNameError,
)
