"""The runner's HTTP transport: the standard library's ``http.client`` in threads.

Why not aiohttp, which the user client uses: importing aiohttp (with yarl,
multidict and its connector) was most of the 0.35-0.5 s a runner took to start,
paid again by every cold attempt. A runner makes a handful of small requests to
one coordinator, so keep-alive connections from ``http.client`` driven from a
small thread pool cost a few hundred microseconds per call and nothing at
start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from waypost.sdk.transport import TransportError

# Heartbeats, log batches, checkpoints, the completion and a warm runner's
# long poll can overlap; more than this many at once never happens.
MAX_CONCURRENT_REQUESTS = 6

# Failures of a reused keep-alive connection that mean the server closed it
# while it sat idle (before reading the request): worth one immediate retry on
# a fresh connection, as urllib3 does.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class ThreadedHTTP:
    """Sends requests to one coordinator over pooled keep-alive connections.

    Implements :data:`waypost.sdk.transport.SendOnce` (``await http.send(...)``).
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"coordinator URL {base_url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=MAX_CONCURRENT_REQUESTS, thread_name_prefix="waypost-http"
        )

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self) -> http.client.HTTPConnection | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append(conn)

    def _request_blocking(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> tuple[int, str]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        reused = self._take()
        conn = reused or self._connect(timeout)
        if reused is not None and conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            try:
                return self._exchange(conn, method, target, headers, body)
            except _STALE:
                if reused is None:
                    raise
                conn.close()
                conn = self._connect(timeout)
                return self._exchange(conn, method, target, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> tuple[int, str]:
        conn.request(method, target, body=body, headers=dict(headers))
        response = conn.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return response.status, text

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, str]:
        """Send one request in a pool thread; raise :class:`TransportError` without an answer."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor,
            self._request_blocking,
            method,
            url,
            headers,
            body,
            self._timeout if timeout is None else timeout,
        )

    def close(self) -> None:
        """Close idle connections; requests in flight end on their own (never waited for)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.close()
