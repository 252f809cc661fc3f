"""Typed keys of what the coordinator's aiohttp application carries."""

from __future__ import annotations

from aiohttp import web

from waypost.coordinator.readiness import Readiness
from waypost.coordinator.routes import Route
from waypost.engine.core import Engine
from waypost.engine.events import EventHub

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
ROUTES: web.AppKey[list[Route]] = web.AppKey("routes", list)
EVENT_HUB: web.AppKey[EventHub] = web.AppKey("event_hub", EventHub)
READINESS: web.AppKey[Readiness] = web.AppKey("readiness", Readiness)
