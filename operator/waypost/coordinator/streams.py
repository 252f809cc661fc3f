"""Logs and live event streams of runs: JSON pages and server-sent events (SSE).

Every SSE event carries ``id:`` (its cursor), so a client that reconnects with
``Last-Event-ID`` (or ``?lastEventId=``, for clients that cannot set headers)
continues right after the last event it saw. An idle stream sends a comment line
every ``events_heartbeat_seconds``, which keeps proxies from closing it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from waypost.coordinator import appkeys, params
from waypost.coordinator.routes import Auth, Route
from waypost.engine import control
from waypost.engine import events as run_events
from waypost.engine.core import Engine
from waypost.engine.events import Filter
from waypost.model.enums import RunStatus
from waypost.model.run import (
    EVENT_KINDS,
    EventsQuery,
    LogEntry,
    LogPage,
    LogQuery,
    RunEvent,
    RunEventsQuery,
    StreamEnd,
)
from waypost.store import runs
from waypost.store.events import START, Cursor, Event

SSE = "text/event-stream"
# A log follow stays open after the run's final status until no line came for
# FOLLOW_QUIET_SECONDS, FOLLOW_AFTER_END_SECONDS at most (after the status's time).
FOLLOW_QUIET_SECONDS = 2.0
FOLLOW_AFTER_END_SECONDS = 10.0
_FINAL = {s.value for s in RunStatus if s.is_final}


def _last_event_id(request: web.Request, query: str | None) -> Cursor | None:
    header = request.headers.get("Last-Event-ID")
    if header:
        return run_events.parse_cursor(header, "Last-Event-ID")
    return run_events.parse_cursor(query, "lastEventId")


def _frame(event_id: str | None, event: str, data: Any) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    # json.dumps never emits a raw newline, so the data fits on one SSE line.
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": SSE, "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    return response


def _event_frame(event: Event) -> bytes:
    """An event as an SSE frame, encoded once however many subscribers it goes to."""
    frame = event.encoded.get("sse")
    if frame is None:
        body = run_events.to_api(event).model_dump(mode="json", by_alias=True)
        frame = event.encoded["sse"] = _frame(body["id"], event.kind, body)
    return frame


def _log_frame(event: Event) -> bytes:
    frame = event.encoded.get("sse-log")
    if frame is None:
        entry = run_events.to_log_entry(event)
        frame = event.encoded["sse-log"] = _frame(
            entry.cursor, "log", entry.model_dump(mode="json", by_alias=True))
    return frame


class _RunEnd:
    """When a log follow ends once its run has finished: after a quiet spell without
    new lines, or at a cap after the final status. What a process printed before it
    exited is stored when its output closes, a moment after its last status (dev
    mode): the stream stays open while such lines keep coming. A run that ended long
    ago has all of it stored already."""

    def __init__(self, status: str, ended: datetime, now: datetime, loop_now: float) -> None:
        self.status = status
        age = (now - ended).total_seconds()
        self.ends_at = loop_now + min(max(FOLLOW_AFTER_END_SECONDS - age, 0.0),
                                      FOLLOW_AFTER_END_SECONDS)
        self.quiet_until = loop_now + FOLLOW_QUIET_SECONDS

    def line(self, loop_now: float) -> None:
        self.quiet_until = loop_now + FOLLOW_QUIET_SECONDS

    @property
    def deadline(self) -> float:
        return min(self.quiet_until, self.ends_at)


async def _pump_sse(request: web.Request, flt: Filter, after: Cursor | None, *,
                    until_final: uuid.UUID | None = None, logs_only: bool = False,
                    checkpoint_data: bool = False) -> web.StreamResponse:
    """Stream the events ``flt`` matches after ``after`` as SSE frames. ``until_final``
    (a run id): end with an ``end`` event once that run has finished and its output is
    in. Every stream is closed after ``events_stream_max_age_seconds``, without an
    ``end`` event: the client resumes with Last-Event-ID."""
    engine = request.app[appkeys.ENGINE]
    hub = request.app[appkeys.EVENT_HUB]
    response = await _open(request)
    loop = asyncio.get_running_loop()
    closes_at = loop.time() + engine.settings.events_stream_max_age_seconds
    stream = hub.stream(flt, after, heartbeat=engine.settings.events_heartbeat_seconds)
    end: _RunEnd | None = None
    ended = False  # by the run's end, not by the stream's age
    try:
        while True:
            deadline = closes_at if end is None else min(end.deadline, closes_at)
            remaining = deadline - loop.time()
            if remaining <= 0:
                ended = end is not None and end.deadline <= closes_at
                break
            try:
                async with asyncio.timeout(remaining):
                    batch = await anext(stream, None)
            except TimeoutError:
                ended = end is not None and end.deadline <= closes_at
                break
            if batch is None:
                break
            if not batch:
                # Caught up, or idle: the final status may be behind the resume point or
                # outside the filter (since), so the run itself says whether it ended.
                if until_final is not None and end is None:
                    end = await _ended(engine, until_final, loop.time())
                await response.write(b": heartbeat\n\n")
                continue
            if checkpoint_data:
                batch = await run_events.with_checkpoint_data(engine.pool, batch)
            # One write per batch: a catch-up page or a tick's events go out together.
            frames: list[bytes] = []
            for event in batch:
                if not logs_only:
                    frames.append(_event_frame(event))
                elif event.kind == "log":
                    frames.append(_log_frame(event))
                    if end is not None:
                        end.line(loop.time())
                if (until_final is not None and end is None and event.kind == "status"
                        and event.data.get("status") in _FINAL):
                    end = _RunEnd(str(event.data["status"]), event.ts, engine.clock.now(),
                                  loop.time())
            if frames:
                await response.write(b"".join(frames))
        if ended and end is not None:
            await response.write(_frame(None, "end", {"status": end.status}))
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        await stream.aclose()
    return response


async def _ended(engine: Engine, run_id: uuid.UUID, loop_now: float) -> _RunEnd | None:
    run = await runs.get(engine.pool, run_id)
    if run is None or not run.status.is_final:
        return None
    when = run.finished_at or run.updated_at or engine.clock.now()
    return _RunEnd(run.status.value, when, engine.clock.now(), loop_now)


def routes(require_user: Callable[[web.Request], None]) -> list[Route]:
    """The logs and events routes; ``require_user`` checks the API token."""

    async def get_run_logs(request: web.Request) -> web.StreamResponse:
        require_user(request)
        engine = request.app[appkeys.ENGINE]
        run_id = control.parse_run_id(request.match_info["run_id"])
        q = params.read_query(request, LogQuery)
        attempt, level, since = q.attempt, q.level, params.utc(q.since)
        levels = run_events.levels_from(level)
        after = run_events.parse_cursor(q.cursor)
        if not q.follow:
            entries, cursor = await run_events.read_logs(
                engine.pool, run_id, after=after, attempt=attempt, level=level, since=since,
                limit=q.limit)
            page = LogPage(entries=entries, next_cursor=str(cursor))
            return web.json_response(page.model_dump(mode="json", by_alias=True))
        await control.get(engine, run_id)  # 404 before the stream starts
        # Status events ride along so that the stream can end with the run (a finished
        # run's stream sends its lines and ends at its final status).
        flt = Filter(run_id=run_id, kinds=("log", "status"), attempt=attempt, levels=levels,
                     since=since)
        return await _pump_sse(request, flt, _last_event_id(request, None) or after or START,
                               until_final=run_id, logs_only=True)

    async def stream_run_events(request: web.Request) -> web.StreamResponse:
        require_user(request)
        engine = request.app[appkeys.ENGINE]
        run_id = control.parse_run_id(request.match_info["run_id"])
        q = params.read_query(request, RunEventsQuery)
        flt = Filter(run_id=run_id, kinds=run_events.kinds_from(q.kinds))
        after = _last_event_id(request, q.last_event_id)
        await control.get(engine, run_id)  # 404 before the stream starts
        return await _pump_sse(request, flt, after or START, checkpoint_data=q.checkpoint_data)

    async def stream_events(request: web.Request) -> web.StreamResponse:
        require_user(request)
        q = params.read_query(request, EventsQuery)
        flt = Filter(namespace=q.namespace, task=q.task, kinds=run_events.kinds_from(q.kinds))
        return await _pump_sse(request, flt, _last_event_id(request, q.last_event_id),
                               checkpoint_data=q.checkpoint_data)

    return [
        Route("GET", "/v1/runs/{run_id}/logs", get_run_logs,
              "A run's log lines, oldest first (JSON pages); with follow=1 an SSE stream of "
              "`log` events that ends with an `end` event when the run finishes",
              Auth.USER, "runs", response=LogPage, query=LogQuery,
              events={"log": LogEntry, "end": StreamEnd}),
        Route("GET", "/v1/runs/{run_id}/events", stream_run_events,
              "Server-sent events of one run from its start (or after lastEventId): status "
              "changes, attempts, checkpoints (key and size), log lines, replays; data is a "
              "RunEvent", Auth.USER, "events", content_type=SSE, query=RunEventsQuery,
              events=dict.fromkeys(EVENT_KINDS, RunEvent)),
        Route("GET", "/v1/events", stream_events,
              "Server-sent events of many runs from now (or after lastEventId); data is a "
              "RunEvent", Auth.USER, "events", content_type=SSE, query=EventsQuery,
              events=dict.fromkeys(EVENT_KINDS, RunEvent)),
    ]

