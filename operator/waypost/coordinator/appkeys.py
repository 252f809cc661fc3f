"""Typed keys of what the coordinator's aiohttp application carries."""

from __future__ import annotations

import re

from aiohttp import web

from waypost.coordinator.readiness import Readiness
from waypost.coordinator.routes import Route
from waypost.engine.core import Engine
from waypost.engine.events import EventHub

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
ROUTES: web.AppKey[list[Route]] = web.AppKey("routes", list)
EVENT_HUB: web.AppKey[EventHub] = web.AppKey("event_hub", EventHub)
READINESS: web.AppKey[Readiness] = web.AppKey("readiness", Readiness)
# The paths of the UI's pages (tag "ui"): their errors are pages, not JSON.
UI_PATHS: web.AppKey[re.Pattern[str]] = web.AppKey("ui_paths", re.Pattern)
