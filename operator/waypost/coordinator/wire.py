"""The coordinator's HTTP server: aiohttp, with JSON errors below the application too.

aiohttp answers requests it cannot parse (a request line or header over its
limit, a malformed request) before any middleware runs, in plain text. Our
request handler answers those in the API's JSON error form as well, so that a
client never has to parse anything else: 414 for a URL over the limit, 431
for an oversized header, 400 for the rest.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from waypost.model.inputs import MAX_URL_BYTES

log = logging.getLogger("waypost.coordinator")

# aiohttp refuses request lines past this many bytes before routing; the middleware
# refuses URLs past MAX_URL_BYTES. A distinct header limit tells the two apart.
MAX_LINE_BYTES = 2 * MAX_URL_BYTES
MAX_HEADER_BYTES = MAX_URL_BYTES - 2


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(code, message), status=status, headers=headers)


def log_internal_error(exc: BaseException | None, where: str) -> str:
    """Log an unexpected failure with its traceback under a new error id; returns the
    message to answer with (the id, never the traceback)."""
    error_id = uuid.uuid4().hex[:16]
    log.error("internal error %s in %s", error_id, where,
              exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
              extra={"error_id": error_id})
    return (f"the server failed to handle this request (error id {error_id}, "
            "logged by the server); nothing is known to have changed")


def internal_error(exc: BaseException | None, where: str) -> web.Response:
    """A JSON 500 whose id is logged with the traceback (the answer has neither)."""
    return error_response(500, "internal_error", log_internal_error(exc, where))


class _JsonErrorHandler(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        if status >= 500:
            resp = internal_error(exc, "the HTTP server") if status == 500 else error_response(
                status, "timeout" if status == 504 else "server_error",
                "the server could not answer in time" if status == 504 else "server error")
        elif isinstance(exc, LineTooLong) and str(exc.args[1]) == str(MAX_LINE_BYTES):
            resp = error_response(414, "uri_too_long",
                                  f"the URL is over the limit of {MAX_URL_BYTES} bytes")
        elif isinstance(exc, LineTooLong):
            resp = error_response(431, "header_too_large",
                                  f"a request header is over the limit of {MAX_HEADER_BYTES} "
                                  "bytes")
        else:
            reason = type(exc).__name__ if exc is not None else "malformed request"
            resp = error_response(status, "bad_request",
                                  f"the HTTP request could not be parsed ({reason})")
            log.info("unparseable request: %s", reason)
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class CoordinatorRunner(web.AppRunner):
    """``web.AppRunner`` with the coordinator's parser limits and JSON errors."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        # Bodies are never decompressed: a Content-Encoding is refused with 415 by the
        # middleware instead of failing half-way through a read.
        super().__init__(app, max_line_size=MAX_LINE_BYTES, max_field_size=MAX_HEADER_BYTES,
                         auto_decompress=False, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server
