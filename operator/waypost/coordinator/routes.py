"""The coordinator's routes, declared once: served by aiohttp, described by OpenAPI."""

from __future__ import annotations

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
    response: type[Any] | None = None
    status: int = 200
    also: tuple[int, ...] = ()  # other success statuses
    # Query parameters: a model whose fields they are (validated and documented from
    # it), or names with descriptions (documented as strings).
    query: type[BaseModel] | dict[str, str] | None = None
    content_type: str = "application/json"


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, route: Route) -> None:
        self.routes.append(route)

    def install(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, route.path, route.handler)
