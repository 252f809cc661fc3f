"""JSON over HTTP with the coordinator's error format and transient retries.

Shared by the user client and the runner. Error bodies are
``{"error": {"code": ..., "message": ...}}`` and become
:class:`~waypost.sdk.errors.WaypostAPIError`. Transient failures (connection
refused or reset, timeouts, 5xx) are retried with exponential backoff when a
:class:`RetryPolicy` is given; a 4xx never is, because repeating a refused
request cannot make it acceptable.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from waypost.sdk.errors import CoordinatorUnavailable, WaypostAPIError

_log = logging.getLogger("waypost.transport")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient request failures are retried."""

    # About 15 s in all: enough to ride out a coordinator replica restarting
    # (a rolling upgrade), well inside the heartbeat window of an attempt.
    attempts: int = 8
    initial_delay: float = 0.2
    factor: float = 2.0
    max_delay: float = 5.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        return float(min(self.max_delay, self.initial_delay * self.factor ** (failures - 1)))


NO_RETRY = RetryPolicy(attempts=1)


def _error_from_body(status: int, body: Any, text: str) -> WaypostAPIError:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return WaypostAPIError(
            status, str(error.get("code") or "http_error"), str(error.get("message") or "")
        )
    snippet = text.strip()[:200] or "(empty body)"
    return WaypostAPIError(status, "http_error", snippet)


class _Transient(Exception):
    def __init__(self, description: str, error: WaypostAPIError | None = None) -> None:
        super().__init__(description)
        self.error = error


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
    retry: RetryPolicy = NO_RETRY,
    sleep: Sleep = asyncio.sleep,
) -> tuple[int, Any]:
    """Send one request and return ``(status, decoded JSON body or None)`` on 2xx.

    Raises :class:`WaypostAPIError` for a 4xx, and for a 5xx when retries
    are off; :class:`CoordinatorUnavailable` when the connection failed, or
    when every retry failed transiently.
    """
    failures = 0
    while True:
        try:
            return await _send_once(session, method, url, headers, json_body, params)
        except _Transient as exc:
            failures += 1
            if failures >= retry.attempts:
                if exc.error is not None and retry.attempts == 1:
                    raise exc.error from None
                raise CoordinatorUnavailable(
                    f"{method} {_path(url)} failed after {failures} tries: {exc}"
                ) from None
            delay = retry.delay(failures)
            _log.warning(
                "coordinator request failed; retrying",
                extra={
                    "method": method,
                    "path": _path(url),
                    "error": str(exc),
                    "retry_in_s": delay,
                    "failures": failures,
                },
            )
            await sleep(delay)


def _path(url: str) -> str:
    # Logged instead of the full URL: query strings may carry filters a
    # user would not want in a shared log.
    return urlsplit(url).path


async def _send_once(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    json_body: Any,
    params: Mapping[str, str] | None,
) -> tuple[int, Any]:
    try:
        async with session.request(
            method, url, headers=headers, json=json_body, params=params
        ) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None
    body: Any = None
    if text:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
    if 200 <= status < 300:
        return status, body
    error = _error_from_body(status, body, text)
    if status >= 500:
        raise _Transient(f"HTTP {status} {error.code}: {error.message}", error)
    raise error
