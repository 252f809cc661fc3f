"""The coordinator API: the only door to the store for runners and clients."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any, TypeVar, cast

from aiohttp import web
from pydantic import BaseModel, ValidationError

from waypost.coordinator import (
    actions,
    appkeys,
    auth,
    dashboard,
    metrics,
    openapi,
    params,
    streams,
)
from waypost.coordinator.routes import Auth, Route, RouteTable
from waypost.engine import attempts, control, scheduler
from waypost.engine.core import Engine
from waypost.engine.credentials import AttemptIdentity
from waypost.engine.errors import EngineError, InvalidValue
from waypost.engine.events import EventHub
from waypost.model.enums import RunStatus
from waypost.model.run import (
    ErrorInfo,
    RequeueRequest,
    Run,
    RunList,
    TriggerRequest,
)
from waypost.model.schedule import ScheduleList
from waypost.sdk import protocol
from waypost.store import pool as store_pool

log = logging.getLogger("waypost.coordinator")

ENGINE = appkeys.ENGINE
ROUTES = appkeys.ROUTES
M = TypeVar("M", bound=BaseModel)
P = TypeVar("P")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a JSON error that says what was wrong."""
    try:
        return await handler(request)
    except EngineError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except ValidationError as exc:
        return error_response(400, "invalid_body", _describe_validation(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "too_large", f"request body too large: {exc.text}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"),
                              f"{request.method} {request.path}: {exc.reason}")
    except store_pool.UNAVAILABLE_ERRORS as exc:
        log.warning("store unavailable: %s", exc)
        return error_response(503, "store_unavailable",
                              f"the database is unavailable, nothing was changed: {exc}")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"malformed JSON body: {exc}") from None
    return {} if data is None else data


async def read_body(request: web.Request, model: type[M]) -> M:
    return model.model_validate(await _json_body(request))


_bearer = auth.bearer
require_user = auth.require_user


def attempt_of(request: web.Request) -> AttemptIdentity:
    return attempts.authenticate(request.app[ENGINE], _bearer(request))


def run_json(run: Run, status: int = 200) -> web.Response:
    return web.json_response(run.model_dump(mode="json", by_alias=True), status=status)


# --- user API ---------------------------------------------------------------

async def trigger_run(request: web.Request) -> web.Response:
    require_user(request)
    body = await read_body(request, TriggerRequest)
    run, created = await control.trigger(
        request.app[ENGINE], request.match_info["namespace"], request.match_info["task"], body
    )
    return run_json(run, 201 if created else 200)


async def get_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    return run_json(await control.get(request.app[ENGINE], run_id, details=True))


_int_param = params.int_param


def _statuses(request: web.Request) -> list[RunStatus] | None:
    raw = request.query.get("status")
    if not raw:
        return None
    try:
        return [RunStatus(s) for s in raw.split(",")]
    except ValueError:
        raise InvalidValue(
            f"unknown status in {raw!r}; use {', '.join(s.value for s in RunStatus)}"
        ) from None


time_param = params.time_param


async def list_runs(request: web.Request) -> web.Response:
    require_user(request)
    runs, cursor = await control.list_runs(
        request.app[ENGINE], namespace=request.query.get("namespace"),
        task=request.query.get("task"), statuses=_statuses(request),
        limit=_int_param(request, "limit", 50) or 50, cursor=_int_param(request, "cursor", None),
        since=time_param(request, "since"), until=time_param(request, "until"),
        search=request.query.get("q") or None,
    )
    body = RunList(runs=runs, next_cursor=cursor)
    return web.json_response(body.model_dump(mode="json", by_alias=True))


async def cancel_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    return run_json(await control.cancel(request.app[ENGINE], run_id))


async def bump_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    return run_json(await control.bump(request.app[ENGINE], run_id))


async def requeue_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    body = await read_body(request, RequeueRequest)
    return run_json(await control.requeue(request.app[ENGINE], run_id, body.spec))


async def list_dead_letters(request: web.Request) -> web.Response:
    require_user(request)
    runs, cursor = await control.list_runs(
        request.app[ENGINE], namespace=request.query.get("namespace"),
        task=request.query.get("task"), statuses=[RunStatus.DEAD_LETTERED],
        limit=_int_param(request, "limit", 50) or 50, cursor=_int_param(request, "cursor", None),
    )
    body = RunList(runs=runs, next_cursor=cursor)
    return web.json_response(body.model_dump(mode="json", by_alias=True))


async def list_schedules(request: web.Request) -> web.Response:
    require_user(request)
    found = await scheduler.list_schedules(
        request.app[ENGINE], namespace=request.query.get("namespace"),
        task=request.query.get("task"))
    return web.json_response(ScheduleList(schedules=found).model_dump(mode="json", by_alias=True))


async def trigger_schedule(request: web.Request) -> web.Response:
    require_user(request)
    engine = request.app[ENGINE]
    run_id, _ = await scheduler.trigger_now(
        engine, request.match_info["namespace"], request.match_info["task"],
        request.match_info["schedule"])
    return run_json(await control.get(engine, run_id), 201)


# --- runner API -------------------------------------------------------------

def answer(message: Any, status: int = 200) -> web.Response:
    """A runner-protocol message as the runner reads it (camelCase)."""
    return web.json_response(protocol.encode(message), status=status)


async def read_message(request: web.Request, kind: type[P]) -> P:
    """A runner-protocol body, validated by pydantic (a 400 names the field)."""
    body = openapi.adapter(kind).validate_python(await _json_body(request))
    return cast(P, body)


async def runner_attempt(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return answer(await attempts.describe(engine, attempt_of(request)))


async def runner_checkpoint(request: web.Request) -> web.Response:
    ident = attempt_of(request)
    body = await read_message(request, protocol.CheckpointBody)
    await attempts.checkpoint(request.app[ENGINE], ident, body.key, body.data)
    return web.json_response({"key": body.key}, status=201)


async def runner_heartbeat(request: web.Request) -> web.Response:
    cancelled = await attempts.heartbeat(request.app[ENGINE], attempt_of(request))
    return answer(protocol.HeartbeatAnswer(cancelled=cancelled))


async def runner_cancelled(request: web.Request) -> web.Response:
    ident = attempt_of(request)
    body = await read_message(request, protocol.CancelledBody)
    status = await attempts.cancelled(request.app[ENGINE], ident, body.message)
    return answer(protocol.OutcomeAnswer(status=str(status)))


async def runner_logs(request: web.Request) -> web.Response:
    ident = attempt_of(request)
    body = await read_message(request, protocol.LogsBody)
    await attempts.append_logs(request.app[ENGINE], ident, body.entries)
    return web.json_response({"accepted": len(body.entries)}, status=202)


async def runner_complete(request: web.Request) -> web.Response:
    ident = attempt_of(request)
    body = await read_message(request, protocol.CompleteBody)
    await attempts.complete(request.app[ENGINE], ident, body.result)
    return answer(protocol.OutcomeAnswer(status=str(RunStatus.SUCCEEDED)))


async def runner_fail(request: web.Request) -> web.Response:
    ident = attempt_of(request)
    body = await read_message(request, protocol.FailBody)
    report = body.error
    status = await attempts.fail(request.app[ENGINE], ident, ErrorInfo(
        type=report.type, name=report.name, message=report.message,
        traceback=report.traceback, retryable=report.retryable,
    ))
    return answer(protocol.OutcomeAnswer(status=str(status)))


# --- operations -------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        await engine.pool.fetchval("SELECT 1")
    except store_pool.UNAVAILABLE_ERRORS as exc:
        return error_response(503, "store_unavailable", f"the database is unavailable: {exc}")
    return web.json_response({"status": "ready"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.build(request.app[ROUTES], _version()))


def _version() -> str:
    try:
        return metadata.version("waypost")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def route_table() -> RouteTable:
    table = RouteTable()
    add = table.add
    filters = {"namespace": "Only this namespace.", "task": "Only this task.",
               "status": "Comma-separated statuses.", "limit": "Page size (1-1000).",
               "cursor": "nextCursor of the previous page."}
    add(Route("POST", "/v1/tasks/{namespace}/{task}/trigger", trigger_run,
              "Trigger a run (201 new, 200 existing run for the idempotency key)",
              Auth.USER, "runs", body=TriggerRequest, response=Run, status=201))
    add(Route("GET", "/v1/runs", list_runs, "List runs, newest first", Auth.USER, "runs",
              response=RunList, query={
                  **filters, "since": "Created at or after this ISO-8601 time.",
                  "until": "Created before this ISO-8601 time.",
                  "q": "A prefix of the run id or of the idempotency key."}))
    add(Route("GET", "/v1/runs/{run_id}", get_run, "A run with its attempts and checkpoints",
              Auth.USER, "runs", response=Run))
    add(Route("POST", "/v1/runs/{run_id}/cancel", cancel_run, "Cancel an active run",
              Auth.USER, "runs", response=Run))
    add(Route("POST", "/v1/runs/{run_id}/bump", bump_run,
              "Move a waiting run to the front of its queue", Auth.USER, "runs", response=Run))
    add(Route("POST", "/v1/runs/{run_id}/requeue", requeue_run,
              "Requeue a dead-lettered or failed run with a fresh retry budget, running the "
              "Task's current spec (default) or the spec stored at trigger time",
              Auth.USER, "dead letters", body=RequeueRequest, response=Run))
    add(Route("GET", "/v1/dead-letters", list_dead_letters, "List dead-lettered runs",
              Auth.USER, "dead letters", response=RunList,
              query={k: v for k, v in filters.items() if k != "status"}))
    add(Route("GET", "/v1/schedules", list_schedules,
              "List cron schedules with their next fire times", Auth.USER, "schedules",
              response=ScheduleList,
              query={"namespace": filters["namespace"], "task": filters["task"]}))
    add(Route("POST", "/v1/tasks/{namespace}/{task}/schedules/{schedule}/trigger",
              trigger_schedule,
              "Fire a schedule once now, with a fresh idempotency key (its next tick is kept)",
              Auth.USER, "schedules", response=Run, status=201))
    for route in streams.routes(require_user) + actions.routes(require_user, read_body):
        add(route)
    add(Route("GET", protocol.PATH_ATTEMPT, runner_attempt,
              "The attempt document: task, payload, checkpoints, limits", Auth.ATTEMPT, "runner",
              response=protocol.AttemptDocument))
    add(Route("POST", protocol.PATH_CHECKPOINTS, runner_checkpoint, "Write a checkpoint",
              Auth.ATTEMPT, "runner", body=protocol.CheckpointBody, status=201))
    add(Route("POST", protocol.PATH_HEARTBEAT, runner_heartbeat,
              "Extend the attempt's lease; the answer says whether the run was cancelled",
              Auth.ATTEMPT, "runner", response=protocol.HeartbeatAnswer))
    add(Route("POST", protocol.PATH_LOGS, runner_logs, "Append a batch of log lines",
              Auth.ATTEMPT, "runner", body=protocol.LogsBody, status=202))
    add(Route("POST", protocol.PATH_COMPLETE, runner_complete, "Report the result",
              Auth.ATTEMPT, "runner", body=protocol.CompleteBody,
              response=protocol.OutcomeAnswer))
    add(Route("POST", protocol.PATH_FAIL, runner_fail, "Report a failure", Auth.ATTEMPT,
              "runner", body=protocol.FailBody, response=protocol.OutcomeAnswer))
    add(Route("POST", protocol.PATH_CANCELLED, runner_cancelled,
              "Report that the task of a cancelled run stopped (409 unless cancelled)",
              Auth.ATTEMPT, "runner", body=protocol.CancelledBody,
              response=protocol.OutcomeAnswer))
    add(Route("GET", "/healthz", healthz, "Liveness", Auth.NONE, "operations"))
    add(Route("GET", "/readyz", readyz, "Readiness: the database answers", Auth.NONE,
              "operations"))
    add(Route("GET", "/metrics", metrics.handler, "Prometheus metrics", Auth.NONE, "operations",
              content_type="text/plain"))
    add(Route("GET", "/openapi.json", openapi_json, "This document", Auth.NONE, "operations"))
    dashboard_routes(add)
    return table


def dashboard_routes(add: Callable[[Route], None]) -> None:
    """The UI's pages (docs/ui.md). Each reads or does what a JSON route above does;
    with a token set they need the login's session cookie."""
    html = "text/html"
    ui = dashboard
    add(Route("GET", "/", ui.runs_page, "UI: runs, filtered and paged", Auth.USER, "ui",
              content_type=html, query={
                  "task": "Only this task.", "namespace": "Only this namespace.",
                  "status": "Only this status.", "window": "Created within 15m, 1h, 24h or 7d.",
                  "q": "A prefix of the run id or idempotency key.",
                  "cursor": "The next page's cursor."}))
    add(Route("GET", "/runs/{run_id}", ui.run_page, "UI: a run", Auth.USER, "ui",
              content_type=html, query={"attempt": "Log lines of this attempt.",
                                        "level": "Log lines of this level and above."}))
    add(Route("GET", "/runs/{run_id}/overview", ui.run_overview,
              "UI: the live part of a run's page", Auth.USER, "ui", content_type=html))
    add(Route("GET", "/runs/{run_id}/log-lines", ui.run_log_lines,
              "UI: a run's log lines as table rows", Auth.USER, "ui", content_type=html,
              query={"attempt": "Only this attempt.", "level": "This level and above.",
                     "after": "Lines after this cursor, and a follower for the next ones.",
                     "before": "The newest lines before this cursor."}))
    add(Route("GET", "/runs/{run_id}/checkpoints", ui.checkpoint_tree,
              "UI: a checkpoint's JSON as a collapsible tree", Auth.USER, "ui",
              content_type=html, query={"key": "The checkpoint's key."}))
    add(Route("GET", "/runs/{run_id}/replay-form", ui.replay_form,
              "UI: the replay form for a checkpoint", Auth.USER, "ui", content_type=html,
              query={"from": "The checkpoint to resume after (empty: the start).",
                     "payload": "The payload text typed so far."}))
    add(Route("POST", "/runs/{run_id}/replay", ui.replay_button,
              "UI: replay the run (form fields from, payload, checkpoint, spec)", Auth.USER,
              "ui", content_type=html, status=204))
    add(Route("POST", "/runs/{run_id}/cancel", ui.cancel_button, "UI: cancel a run", Auth.USER,
              "ui", content_type=html, status=204))
    add(Route("POST", "/runs/{run_id}/requeue", ui.requeue_button, "UI: requeue a run",
              Auth.USER, "ui", content_type=html, status=204))
    add(Route("GET", "/dead-letters", ui.dead_letters_page, "UI: dead-lettered runs",
              Auth.USER, "ui", content_type=html,
              query={"task": "Only this task.", "namespace": "Only this namespace.",
                     "cursor": "The next page's cursor."}))
    add(Route("POST", "/dead-letters/requeue", ui.requeue_dead_letters,
              "UI: requeue the selected dead-lettered runs (form field run, repeated)",
              Auth.USER, "ui", content_type=html))
    add(Route("GET", "/tasks", ui.tasks_page, "UI: tasks, queues, failure rates, schedules",
              Auth.USER, "ui", content_type=html))
    add(Route("GET", "/login", ui.login_form, "UI: the login form", Auth.NONE, "ui",
              content_type=html))
    add(Route("POST", "/login", ui.login,
              "UI: log in with the API token (form field token); sets the session cookie",
              Auth.NONE, "ui", content_type=html, status=303))
    add(Route("POST", "/logout", ui.logout, "UI: end the session", Auth.NONE, "ui",
              content_type=html, status=303))
    add(Route("GET", "/static/{name}", ui.static, "UI: vendored scripts and styles",
              Auth.NONE, "ui", content_type="text/*"))


def create_app(engine: Engine) -> web.Application:
    limits = engine.settings.limits
    # Room for the largest allowed document plus its JSON envelope; the precise limit
    # is checked per field so the error can name it.
    max_body = max(limits.payload_bytes, limits.checkpoint_bytes, limits.result_bytes) * 2 + 65536
    app = web.Application(middlewares=[errors_as_json], client_max_size=max_body)
    app[ENGINE] = engine
    hub = EventHub(engine.pool, interval=engine.settings.events_poll_seconds)
    app[appkeys.EVENT_HUB] = hub

    async def close_hub(_: web.Application) -> None:
        await hub.close()

    # Streams end before the runner's cleanup waits for their handlers.
    app.on_shutdown.append(close_hub)
    table = route_table()
    app[ROUTES] = table.routes
    table.install(app)
    return app
