"""The runner's HTTP transport: HTTP/1.1 over asyncio streams, on the runner's loop.

Why not aiohttp, which the user client uses: importing aiohttp (with yarl,
multidict and its connector) was most of the 0.35-0.5 s a runner took to start,
paid again by every cold attempt. Why not the standard library's
``http.client`` (the previous transport, driven from a thread pool): it imports
the ``email`` package to parse headers, and each exchange went to a thread and
back, which was most of a warm runner's own CPU per run. A runner makes a
handful of small JSON requests to one coordinator, whose answers always carry a
``Content-Length`` (chunked ones are read too), so a small client on the event
loop the runner already has does the job: keep-alive connections, one request at
a time on each, a fresh connection when a reused one turns out closed.

Every request of a runner runs on its one event loop (a sync task's calls are
sent there with ``run_coroutine_threadsafe``), so the pool needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from waypost.runner.early import host_header, split_url
from waypost.sdk.transport import TransportError

__all__ = ["StreamHTTP", "split_url"]

# Headers and status lines longer than this are not the coordinator's.
_MAX_LINE = 64 * 1024


class _Stale(Exception):
    """A reused keep-alive connection was closed by the server before it answered."""


def _target(url: str) -> str:
    """The request target (path and query) of an absolute URL."""
    rest = url.partition("://")[2]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class StreamHTTP:
    """Sends requests to one coordinator over pooled keep-alive connections.

    Implements :data:`waypost.sdk.transport.SendOnce` (``await http.send(...)``).
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        self._https, self._host, self._port = split_url(base_url)
        self._host_header = host_header(self._https, self._host, self._port)
        self._timeout = timeout
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        ssl = None
        if self._https:
            import ssl as ssl_module  # only for an https coordinator

            ssl = ssl_module.create_default_context()
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=ssl,
                                                       limit=_MAX_LINE)
        return _Conn(reader, writer)

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, str]:
        """Send one request; raise :class:`TransportError` without an answer."""
        head = [f"{method} {_target(url)} HTTP/1.1", f"Host: {self._host_header}",
                f"Content-Length: {len(body) if body else 0}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            async with asyncio.timeout(self._timeout if timeout is None else timeout):
                conn = self._idle.pop() if self._idle else None
                if conn is not None:
                    try:
                        return await self._exchange(conn, request, reused=True)
                    except _Stale:
                        pass
                return await self._exchange(await self._connect(), request, reused=False)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, _Stale) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    async def _exchange(self, conn: _Conn, request: bytes, *, reused: bool) -> tuple[int, str]:
        done = False
        try:
            conn.writer.write(request)
            try:
                status_line = await conn.reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                # Nothing came back on a connection the server closed while it sat
                # idle (it never read the request): worth one try on a new one.
                if reused and not getattr(exc, "partial", b""):
                    raise _Stale() from None
                raise
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
            status = int(parts[1])
            length: int | None = None
            chunked = False
            close = parts[0] == b"HTTP/1.0"
            while True:
                line = await conn.reader.readuntil(b"\r\n")
                if line == b"\r\n":
                    break
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if chunked:
                data = await self._chunks(conn.reader)
            elif length is not None:
                data = await conn.reader.readexactly(length)
            else:
                data = await conn.reader.read()  # until the server closes
                close = True
            done = not close
            return status, data.decode("utf-8", errors="replace")
        finally:
            if done:
                self._idle.append(conn)
            else:  # failed, cancelled mid-exchange, or closing: never reused
                conn.close()

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        data = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return bytes(data)
            data += await reader.readexactly(size)
            await reader.readexactly(2)

    def close(self) -> None:
        """Close idle connections; requests in flight close theirs when they end."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
