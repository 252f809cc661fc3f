"""JSON over HTTP with the coordinator's error format and transient retries.

Shared by the user client and the runner. Neither HTTP library is imported
here: each caller passes its own :data:`SendOnce` (the user client aiohttp's,
the runner one on the standard library's ``http.client``, so that starting a
runner does not pay for importing aiohttp). Error bodies are
``{"error": {"code": ..., "message": ...}}`` and become
:class:`~waypost.sdk.errors.WaypostAPIError`. Transient failures (connection
refused or reset, timeouts, 5xx) are retried with exponential backoff when a
:class:`~waypost.sdk.retry.Retry` is given; a 4xx never is, because repeating a refused
request cannot make it acceptable.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from waypost.sdk.errors import CoordinatorUnavailable, WaypostAPIError
from waypost.sdk.retry import Retry

_log = logging.getLogger("waypost.transport")

Sleep = Callable[[float], Awaitable[None]]

#: Sends one request: ``(method, url, headers, body) -> (status, response text)``.
#: Raises :class:`TransportError` when no answer came (refused, reset, timed out).
SendOnce = Callable[[str, str, Mapping[str, str], bytes | None], Awaitable[tuple[int, str]]]


class TransportError(Exception):
    """The request got no HTTP answer: connection refused or reset, or a timeout."""


#: Transient failures retried for about 15 s in all: enough to ride out a
#: coordinator replica restarting (a rolling upgrade), well inside the
#: heartbeat window of an attempt. Not spread: one client retries alone.
PATIENT = Retry(max_attempts=8, initial_delay=0.2, factor=2.0, max_delay=5.0, jitter=0.0)
NO_RETRY = Retry(max_attempts=1, jitter=0.0)


def _error_from_body(status: int, body: Any, text: str) -> WaypostAPIError:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return WaypostAPIError(
            status, str(error.get("code") or "http_error"), str(error.get("message") or "")
        )
    snippet = text.strip()[:200] or "(empty body)"
    return WaypostAPIError(status, "http_error", snippet)


def error_from_response(status: int, text: str) -> WaypostAPIError:
    """The API error an error answer's body describes."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    return _error_from_body(status, body, text)


class _Transient(Exception):
    def __init__(self, description: str, error: WaypostAPIError | None = None) -> None:
        super().__init__(description)
        self.error = error


async def request_json(
    send: SendOnce,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
    retry: Retry = NO_RETRY,
    sleep: Sleep = asyncio.sleep,
) -> tuple[int, Any]:
    """Send one request and return ``(status, decoded JSON body or None)`` on 2xx.

    Raises :class:`WaypostAPIError` for a 4xx, and for a 5xx when retries
    are off; :class:`CoordinatorUnavailable` when the connection failed, or
    when every retry failed transiently.
    """
    if params:
        # Imported here: the runner, which sends no query strings, starts without it.
        from urllib.parse import urlencode

        url = f"{url}?{urlencode(params)}"
    all_headers = dict(headers or {})
    body: bytes | None = None
    if json_body is not None:
        body = json.dumps(json_body).encode()
        all_headers["Content-Type"] = "application/json"
    failures = 0
    while True:
        try:
            return await _send_once(send, method, url, all_headers, body)
        except _Transient as exc:
            failures += 1
            if failures >= retry.max_attempts:
                if exc.error is not None and retry.max_attempts == 1:
                    raise exc.error from None
                raise CoordinatorUnavailable(
                    f"{method} {_path(url)} failed after {failures} tries: {exc}"
                ) from None
            delay = retry.delay_after(failures)
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
    # user would not want in a shared log. (No urllib.parse: see request_json.)
    rest = url.partition("://")[2] if "://" in url else url
    path = rest[rest.find("/"):] if "/" in rest else "/"
    return path.partition("?")[0].partition("#")[0]


async def _send_once(
    send: SendOnce, method: str, url: str, headers: Mapping[str, str], body: bytes | None
) -> tuple[int, Any]:
    try:
        status, text = await send(method, url, headers, body)
    except TransportError as exc:
        raise _Transient(str(exc)) from None
    decoded: Any = None
    if text:
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
    if 200 <= status < 300:
        return status, decoded
    error = _error_from_body(status, decoded, text)
    if status >= 500:
        raise _Transient(f"HTTP {status} {error.code}: {error.message}", error)
    raise error
