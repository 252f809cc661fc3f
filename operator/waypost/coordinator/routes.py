"""The coordinator's routes, declared once: served by aiohttp, described by OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Auth(StrEnum):
    NONE = "none"
    USER = "user"  # the API token, when one is configured
    ATTEMPT = "attempt"  # a per-attempt runner credential
    RUNNER = "runner"  # a warm runner's own credential


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: Auth
    tag: str
    # A pydantic model or a runner-protocol dataclass (waypost.sdk.protocol).
    body: type[Any] | None = None
    # A UI page's posted form (application/x-www-form-urlencoded): its model.
    form: type[BaseModel] | None = None
    response: type[Any] | None = None
    status: int = 200
    also: tuple[int, ...] = ()  # other success statuses
    # Query parameters: a model whose fields they are (validated and documented from
    # it), or names with descriptions (documented as strings).
    query: type[BaseModel] | dict[str, str] | None = None
    content_type: str = "application/json"
    # Server-sent events the route sends (as its only answer, or with a query flag
    # beside the JSON one): event name -> the model of its JSON data.
    events: dict[str, type[Any]] | None = None


def paths_pattern(routes: list[Route]) -> re.Pattern[str]:
    """A pattern that matches exactly the paths of ``routes`` (a parameter is one
    segment)."""
    templates = sorted({r.path for r in routes})
    return re.compile("|".join(
        re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(t)) for t in templates))


def literal_paths(routes: list[Route]) -> dict[str, list[str]]:
    """The methods of each path without parameters (``/v1/runs/bulk``)."""
    found: dict[str, list[str]] = {}
    for route in routes:
        if "{" not in route.path:
            found.setdefault(route.path, []).append(route.method)
    return found


def allowed_methods(routes: list[Route], path: str) -> list[str] | None:
    """The methods the API document gives a literal path, which wins over a template
    that also matches it (as in OpenAPI: ``/v1/runs/bulk`` is not a run id)."""
    methods = literal_paths(routes).get(path)
    return sorted(methods) if methods else None


def _not_for_literal_paths(route: Route, literal: dict[str, list[str]]) -> Handler:
    """``route``'s handler, refusing (405) a path that is a literal path of the table:
    GET /v1/runs/bulk is not GET /v1/runs/{run_id} with run_id "bulk"."""
    handler = route.handler

    async def guarded(request: web.Request) -> web.StreamResponse:
        methods = literal.get(request.path)
        if methods is not None:
            raise web.HTTPMethodNotAllowed(request.method, sorted(methods))
        return await handler(request)

    return guarded


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, route: Route) -> None:
        self.routes.append(route)

    def install(self, app: web.Application) -> None:
        literal = literal_paths(self.routes)
        for route in self.routes:
            handler = route.handler
            if "{" in route.path and literal:
                handler = _not_for_literal_paths(route, literal)
            app.router.add_route(route.method, route.path, handler)
