"""Reading server-sent events (the coordinator's ``/events`` and ``/logs?follow=1``).

Lines are split by hand from raw chunks instead of ``StreamReader.readline``,
whose line limit (64 KiB) is smaller than an event carrying a large run result.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Message:
    """One SSE message: its ``id``, ``event`` name and JSON-decoded ``data``."""

    id: str | None
    event: str
    data: Any


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode()
    if pending:
        yield pending.rstrip(b"\r").decode()


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[Message | None]:
    """The messages of an SSE response; ``None`` for a comment (a heartbeat)."""
    event_id: str | None = None
    event = "message"
    data: list[str] = []
    async for line in _lines(response):
        if line == "":
            if data:
                yield Message(event_id, event, json.loads("\n".join(data)))
            event_id, event, data = None, "message", []
        elif line.startswith(":"):
            yield None
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                event_id = value
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
