"""The attempt's fetch, started before the runner imports what runs it.

A cold runner's first request is always ``GET /v1/runner/attempt``. Its answer
takes a round trip plus the coordinator's reads, and the runner's imports
(asyncio, the SDK, the runner's modules: about 100 ms of CPU) do not depend on
it. So the ``waypost-runner`` entrypoint (:mod:`waypost.runner.entry`) sends the
request first, on a plain socket with nothing but the standard library's
``socket`` and ``os`` imported, then imports the rest while the coordinator
answers, and reads the answer when it needs the document.

This is only a head start: any failure here (no credential in the environment,
an https coordinator, a refused connection, an answer other than 200) gives
``None``, and the runner fetches the attempt as it always did, with its retries
and its error handling. The request is a GET: sending it twice is harmless.

Nothing here may import the SDK: that is the cost it hides.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

# The names of waypost.sdk.protocol (tests/unit/test_runner_early.py checks that
# they match); importing the protocol module is part of what this hides.
ENV_COORDINATOR_URL = "WAYPOST_COORDINATOR_URL"
ENV_ATTEMPT_TOKEN = "WAYPOST_ATTEMPT_TOKEN"
ENV_ATTEMPT_TOKEN_FILE = "WAYPOST_ATTEMPT_TOKEN_FILE"
PATH_ATTEMPT = "/v1/runner/attempt"

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
_MAX_HEAD = 64 * 1024


def split_url(base_url: str) -> tuple[bool, str, int]:
    """``(https, host, port)`` of an ``http(s)://host[:port][/...]`` URL."""
    scheme, sep, rest = base_url.partition("://")
    netloc = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if not sep or scheme not in ("http", "https") or not netloc:
        raise ValueError(f"coordinator URL {base_url!r} is not an http(s) URL")
    https = scheme == "https"
    port_text = ""
    if netloc.startswith("["):  # [IPv6]:port
        host, _, tail = netloc[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = netloc.partition(":")
    if not host:
        raise ValueError(f"coordinator URL {base_url!r} is not an http(s) URL")
    try:
        port = int(port_text) if port_text else (443 if https else 80)
    except ValueError:
        raise ValueError(f"coordinator URL {base_url!r} has a bad port") from None
    return https, host, port


def host_header(https: bool, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if https else 80) else f"{shown}:{port}"


class EarlyFetch:
    """The attempt request, sent; :meth:`answer` reads what came back."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def answer(self) -> bytes | None:
        """The body of a 200 answer, or None (anything else: fetch again)."""
        sock = self._sock
        try:
            sock.settimeout(READ_TIMEOUT)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk or len(data) > _MAX_HEAD:
                    return None
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = lines[0].split(None, 2)
            if len(status) < 2 or status[1] != b"200":
                return None
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    return None  # the coordinator's JSON answers have a length
            if length is None:
                return None
            while len(body) < length:
                chunk = sock.recv(max(65536, length - len(body)))
                if not chunk:
                    return None
                body += chunk
            return body[:length]
        except (OSError, ValueError):
            return None
        finally:
            sock.close()


def begin(env: Mapping[str, str]) -> EarlyFetch | None:
    """Send the attempt's request now, if this is a runner with an attempt."""
    url = env.get(ENV_COORDINATOR_URL, "").strip()
    token = env.get(ENV_ATTEMPT_TOKEN, "").strip()
    token_file = env.get(ENV_ATTEMPT_TOKEN_FILE, "").strip()
    if not url or not (token or token_file):
        return None
    try:
        if not token:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        https, host, port = split_url(url)
        if https or not token:
            return None
        base_path = url.partition("://")[2].partition("/")[2].rstrip("/")
        target = (f"/{base_path}" if base_path else "") + PATH_ATTEMPT
        request = (f"GET {target} HTTP/1.1\r\nHost: {host_header(https, host, port)}\r\n"
                   f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError):
        return None
    try:
        sock.sendall(request.encode("latin-1"))
    except (OSError, UnicodeEncodeError):
        sock.close()
        return None
    return EarlyFetch(sock)


def start_from_environment() -> EarlyFetch | None:
    return begin(os.environ)
