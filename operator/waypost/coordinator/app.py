"""The coordinator API: the only door to the store for runners and clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata
from typing import Any, TypeVar, cast

import asyncpg
from aiohttp import web
from pydantic import BaseModel, RootModel, ValidationError

from waypost.coordinator import (
    actions,
    appkeys,
    auth,
    bulk_ui,
    dashboard,
    metrics,
    openapi,
    params,
    render,
    routes,
    streams,
    waits,
)
from waypost.coordinator.readiness import Readiness
from waypost.coordinator.routes import Auth, Route, RouteTable
from waypost.coordinator.wire import error_response, internal_error, log_internal_error
from waypost.engine import attempts, control, insights, scheduler, warm
from waypost.engine.core import Engine
from waypost.engine.credentials import AttemptIdentity, InvalidCredential
from waypost.engine.errors import (
    EngineError,
    IdempotencyConflict,
    InvalidBody,
    InvalidValue,
    Unauthorized,
    UnsupportedMediaType,
)
from waypost.engine.events import EventHub
from waypost.model import inputs
from waypost.model import ui as ui_query
from waypost.model.enums import RunStatus
from waypost.model.inputs import MAX_URL_BYTES
from waypost.model.insights import InsightQuery, InsightsPage
from waypost.model.run import (
    CancelQuery,
    DeadLetterQuery,
    ErrorInfo,
    RequeueRequest,
    Run,
    RunList,
    RunQuery,
    ScheduleQuery,
    TriggerRequest,
)
from waypost.model.schedule import ScheduleList
from waypost.model.settings import Limits
from waypost.sdk import protocol
from waypost.store import health, migrate
from waypost.store import pool as store_pool

log = logging.getLogger("waypost.coordinator")

ENGINE = appkeys.ENGINE
ROUTES = appkeys.ROUTES
READINESS = appkeys.READINESS
M = TypeVar("M", bound=BaseModel)
P = TypeVar("P")


def _body_limit(limits: Limits) -> tuple[int, str]:
    """The cap on request bodies, which follows the largest documented limit, and how
    to say it: room for that document escaped and indented, plus its envelope."""
    largest = max(limits.payload_bytes, limits.checkpoint_bytes, limits.result_bytes)
    cap = 2 * largest + 65536
    return cap, (f"the limit of {cap} bytes for a request body (twice the largest document "
                 f"limit, {largest} bytes, plus 64 KiB)")


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _check_request(request: web.Request) -> tuple[int, str, str] | None:
    """What can be refused before routing to a handler: the URL, the body's framing,
    the path parameters. Returns the error's status, code and message, or None."""
    if len(request.raw_path) > MAX_URL_BYTES:
        return (414, "uri_too_long",
                              f"the URL is over the limit of {MAX_URL_BYTES} bytes")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return (415, "unsupported_encoding",
                              f"Content-Encoding {encoding[:40]!r} is not supported; "
                              "send the body uncompressed")
    if request.method in _BODY_METHODS and request.body_exists:
        cap, said = _body_limit(request.app[ENGINE].settings.limits)
        length = request.content_length
        if length is not None and length > cap:
            return (413, "too_large",
                                  f"the request body is {length} bytes, over {said}")
    for name, value in request.match_info.items():
        problem = inputs.text_problem(value)
        if problem is None and len(value) > inputs.MAX_NAME_LENGTH:
            problem = f"is {len(value)} characters long, over the limit of " \
                      f"{inputs.MAX_NAME_LENGTH}"
        if problem is not None:
            return (400, "invalid_path", f"path parameter {name}: {problem}")
    return None


def _is_ui(request: web.Request) -> bool:
    """Whether the request is for one of the UI's pages (tag ``ui``), whether or not it
    was routed (a 405 is not)."""
    return request.app[appkeys.UI_PATHS].fullmatch(request.path) is not None


def _ui_error(request: web.Request, status: int, code: str, message: str,
              headers: dict[str, str] | None = None) -> web.Response:
    """An error of a UI page as a page (a fragment for htmx) that says what was wrong."""
    response = dashboard.error_page(request, status, code, message)
    response.headers.update(headers or {})
    return response


def _error(request: web.Request, status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> web.Response:
    """An error answer: JSON for the API, a page for the UI's pages."""
    if _is_ui(request):
        return _ui_error(request, status, code, message, headers)
    return error_response(status, code, message, headers=headers)


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes an error that says what was wrong, JSON for the API and a
    page for the UI's pages: never a stack trace, never the database's address, and no
    500 without an error id in the log."""
    refused = _check_request(request)
    if refused is not None:
        return _error(request, *refused)
    try:
        return await handler(request)
    except IdempotencyConflict as exc:
        if _is_ui(request):
            return _ui_error(request, exc.status, exc.code, exc.message)
        return web.json_response({"error": {"code": exc.code, "message": exc.message,
                                             "runId": exc.run_id}}, status=exc.status)
    except EngineError as exc:
        return _error(request, exc.status, exc.code, exc.message)
    except inputs.UnsafeInput as exc:
        return _error(request, 400, "invalid_value", str(exc))
    except ValidationError as exc:
        return _error(request, 400, "invalid_body", params.describe_validation(exc))
    except web.HTTPRequestEntityTooLarge:
        _, said = _body_limit(request.app[ENGINE].settings.limits)
        return _error(request, 413, "too_large", f"the request body is over {said}")
    except web.HTTPMethodNotAllowed as exc:
        documented = routes.allowed_methods(request.app[ROUTES], request.path)
        allowed = ", ".join(documented or sorted(exc.allowed_methods))
        return _error(request, 405, "method_not_allowed",
                      f"{request.method} is not allowed on {request.path[:200]}; "
                      f"allowed: {allowed}", headers={"Allow": allowed})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(request, exc.status, exc.reason.lower().replace(" ", "_"),
                      f"{request.method} {request.path[:200]}: {exc.reason}")
    except store_pool.UNAVAILABLE_ERRORS as exc:
        # The exception names the database's host and port: logged, never answered.
        log.warning("store unavailable: %s", str(exc) or type(exc).__name__)
        return _error(request, 503, "store_unavailable",
                      "the database is unavailable, nothing was changed; retry later",
                      headers={"Retry-After": "1"})
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        where = f"{request.method} {request.path[:200]}"
        if _is_ui(request):
            return _ui_error(request, 500, "internal_error", log_internal_error(exc, where))
        return internal_error(exc, where)


def _check_media_type(request: web.Request) -> None:
    if request.body_exists and "Content-Type" in request.headers:
        ctype = request.content_type
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise UnsupportedMediaType(f"Content-Type {ctype[:60]!r} is not supported; send "
                                       "application/json")


async def _json_value(request: web.Request, missing: Any) -> Any:
    """The body as any JSON value; no body at all reads as ``missing``."""
    _check_media_type(request)
    raw = await request.read() if request.body_exists else b""
    return inputs.parse_json(raw) if raw else missing


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; no body at all reads as {} (every field omitted)."""
    data = await _json_value(request, {})
    if not isinstance(data, dict):
        kind = {type(None): "null", bool: "a boolean", list: "an array", str: "a string"}.get(
            type(data), "a number")
        raise InvalidBody(f"body: must be a JSON object, not {kind}")
    return data


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body as ``model``: 415 for another media type, 400 naming the field.
    A root model's body is any JSON value its root type takes (a webhook's own body);
    every other body is a JSON object."""
    data: Any
    if issubclass(model, RootModel):
        data = await _json_value(request, None)
    else:
        data = await _json_object(request)
    # Numbers are strict where a model says so (TriggerRequest.priority: "5" is not 5,
    # true is not 1); enums and times arrive as JSON text.
    return model.model_validate(data)


read_query = params.read_query


async def read_message(request: web.Request, kind: type[P]) -> P:
    """A runner-protocol body: the same JSON checks as every body, each top-level
    field checked on its own (an error names it), then validated by pydantic."""
    data = await _json_object(request)
    try:
        inputs.check_fields(data)
    except inputs.UnsafeInput as exc:
        raise InvalidValue(f"{exc.where or 'body'}: {exc.reason}") from None
    return cast(P, openapi.adapter(kind).validate_python(data))


_bearer = auth.bearer
require_user = auth.require_user


def attempt_of(request: web.Request) -> AttemptIdentity:
    return attempts.authenticate(request.app[ENGINE], _bearer(request))


# --- user API ---------------------------------------------------------------

async def trigger_run(request: web.Request) -> web.Response:
    require_user(request)
    body = await read_body(request, TriggerRequest)
    # W3C Trace Context: the run becomes a child of the caller's span.
    run, created = await control.trigger(
        request.app[ENGINE], request.match_info["namespace"], request.match_info["task"], body,
        traceparent=request.headers.get("traceparent"),
    )
    return render.run_response(run, 201 if created else 200)


async def get_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    return render.run_response(await control.get(request.app[ENGINE], run_id, details=True))


def _statuses(raw: str | None) -> list[RunStatus] | None:
    if raw is None:
        return None
    try:
        return [RunStatus(s) for s in raw.split(",")]
    except ValueError:
        raise InvalidValue(
            f"query parameter status: unknown status in {raw[:200]!r}; use "
            f"{', '.join(s.value for s in RunStatus)}"
        ) from None


async def list_runs(request: web.Request) -> web.Response:
    require_user(request)
    q = read_query(request, RunQuery)
    engine = request.app[ENGINE]
    filters: dict[str, Any] = {
        "namespace": q.namespace, "task": q.task, "statuses": _statuses(q.status),
        "since": params.utc(q.since), "until": params.utc(q.until), "search": q.q,
        "id_prefix": q.id_prefix}
    runs, cursor = await control.list_runs(engine, limit=q.limit, cursor=q.cursor, **filters)
    total = await control.count_runs(engine, **filters) if q.count else None
    return render.run_list_response(RunList(runs=runs, next_cursor=cursor, total=total))


async def cancel_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    q = read_query(request, CancelQuery)
    return render.run_response(await control.cancel(request.app[ENGINE], run_id,
                                                    children=q.children))


async def bump_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    return render.run_response(await control.bump(request.app[ENGINE], run_id))


async def requeue_run(request: web.Request) -> web.Response:
    require_user(request)
    run_id = control.parse_run_id(request.match_info["run_id"])
    body = await read_body(request, RequeueRequest)
    return render.run_response(await control.requeue(request.app[ENGINE], run_id, body.spec))


async def list_dead_letters(request: web.Request) -> web.Response:
    require_user(request)
    q = read_query(request, DeadLetterQuery)
    runs, cursor = await control.list_runs(
        request.app[ENGINE], namespace=q.namespace, task=q.task,
        statuses=[RunStatus.DEAD_LETTERED], limit=q.limit, cursor=q.cursor,
    )
    return render.run_list_response(RunList(runs=runs, next_cursor=cursor))


async def list_insights(request: web.Request) -> web.Response:
    require_user(request)
    q = read_query(request, InsightQuery)
    found = await insights.page(request.app[ENGINE], namespace=q.namespace, task=q.task)
    return web.json_response(found.model_dump(mode="json", by_alias=True))


async def list_schedules(request: web.Request) -> web.Response:
    require_user(request)
    q = read_query(request, ScheduleQuery)
    found = await scheduler.list_schedules(request.app[ENGINE], namespace=q.namespace,
                                           task=q.task)
    return web.json_response(ScheduleList(schedules=found).model_dump(mode="json", by_alias=True))


async def trigger_schedule(request: web.Request) -> web.Response:
    require_user(request)
    engine = request.app[ENGINE]
    run_id, _ = await scheduler.trigger_now(
        engine, request.match_info["namespace"], request.match_info["task"],
        request.match_info["schedule"])
    return render.run_response(await control.get(engine, run_id), 201)


# --- runner API -------------------------------------------------------------

def answer(message: Any, status: int = 200) -> web.Response:
    """A runner-protocol message as the runner reads it (camelCase)."""
    return web.json_response(protocol.encode(message), status=status)


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
    attempts.record_usage(request.app[ENGINE], ident, body.usage)
    return answer(protocol.OutcomeAnswer(status=str(RunStatus.SUCCEEDED)))


async def runner_fail(request: web.Request) -> web.Response:
    ident = attempt_of(request)
    body = await read_message(request, protocol.FailBody)
    report = body.error
    status = await attempts.fail(request.app[ENGINE], ident, ErrorInfo(
        type=report.type, name=report.name, message=report.message,
        traceback=report.traceback, retryable=report.retryable,
    ))
    attempts.record_usage(request.app[ENGINE], ident, body.usage)
    return answer(protocol.OutcomeAnswer(status=str(status)))


async def runner_warm_poll(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    token = _bearer(request)
    if not token:
        raise Unauthorized("missing warm runner credential (Authorization: Bearer <token>)")
    try:
        runner_id = engine.signer.verify_runner(token)
    except InvalidCredential as exc:
        raise Unauthorized(str(exc)) from None
    body = await read_message(request, protocol.WarmPollBody)
    finished_run = None
    success = None
    if body.finished is not None:
        try:
            finished_run = uuid.UUID(body.finished.run_id)
        except ValueError:
            raise InvalidValue("finished.runId: not a run id") from None
        if body.finished.succeeded:
            # The attempt's success rides on the poll, under its own credential; the
            # poll's statement takes it (warm_finish_poll).
            ident = attempts.authenticate(engine, body.finished.credential or "")
            if ident.run_id != finished_run:
                raise InvalidValue("finished.credential: belongs to another run")
            success = (ident, attempts.encode_result(engine, body.finished.result),
                       body.finished.usage)
    return answer(await engine.warm.poll(
        runner_id, finished_run=finished_run,
        finished_attempt=body.finished.attempt if body.finished else None,
        rss_after_bytes=body.rss_bytes, wait_seconds=body.wait_seconds, success=success,
    ))


# --- operations -------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 only when this process can do its job: the database answers, its schema is
    this version's, and what the process registered (tasks, a known leader) holds."""
    engine = request.app[ENGINE]
    try:
        version = await health.schema_version(engine.pool)
    except store_pool.UNAVAILABLE_ERRORS as exc:
        log.warning("not ready, store unavailable: %s", str(exc) or type(exc).__name__)
        return error_response(503, "store_unavailable", "the database is unavailable")
    except asyncpg.UndefinedTableError:
        version = 0
    unmet = request.app[READINESS].unmet()
    newest = len(migrate.available())
    if version < newest:
        unmet = {"migrations": f"the database schema is at version {version}, this version "
                               f"needs {newest}", **unmet}
    if unmet:
        return error_response(503, "not_ready", "; ".join(unmet.values()))
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
    add(Route("POST", "/v1/tasks/{namespace}/{task}/trigger", trigger_run,
              "Trigger a run (201 new, 200 existing run for the idempotency key)",
              Auth.USER, "runs", body=TriggerRequest, response=Run, status=201, also=(200,)))
    add(Route("GET", "/v1/runs", list_runs, "List runs, newest first", Auth.USER, "runs",
              response=RunList, query=RunQuery))
    add(Route("GET", "/v1/runs/{run_id}", get_run, "A run with its attempts and checkpoints",
              Auth.USER, "runs", response=Run))
    add(Route("POST", "/v1/runs/{run_id}/cancel", cancel_run,
              "Cancel an active run and (unless children=detach) its active child runs",
              Auth.USER, "runs", response=Run, query=CancelQuery))
    add(Route("POST", "/v1/runs/{run_id}/bump", bump_run,
              "Move a waiting run to the front of its queue", Auth.USER, "runs", response=Run))
    add(Route("POST", "/v1/runs/{run_id}/requeue", requeue_run,
              "Requeue a dead-lettered or failed run with a fresh retry budget, running the "
              "Task's current spec (default) or the spec stored at trigger time",
              Auth.USER, "dead letters", body=RequeueRequest, response=Run))
    add(Route("GET", "/v1/dead-letters", list_dead_letters, "List dead-lettered runs",
              Auth.USER, "dead letters", response=RunList,
              query=DeadLetterQuery))
    add(Route("GET", "/v1/insights", list_insights,
              "Failure patterns that hold per task (timeout loops, retry storms, checkpoint "
              "gaps, memory growth) with evidence runs, and memory sizing hints",
              Auth.USER, "insights", response=InsightsPage, query=InsightQuery))
    add(Route("GET", "/v1/schedules", list_schedules,
              "List cron schedules with their next fire times", Auth.USER, "schedules",
              response=ScheduleList,
              query=ScheduleQuery))
    add(Route("POST", "/v1/tasks/{namespace}/{task}/schedules/{schedule}/trigger",
              trigger_schedule,
              "Fire a schedule once now, with a fresh idempotency key (its next tick is kept)",
              Auth.USER, "schedules", response=Run, status=201))
    for route in streams.routes(require_user) + actions.routes(require_user, read_body):
        add(route)
    for route in waits.routes(require_user, read_body, read_query, read_message, attempt_of):
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
    add(Route("POST", protocol.PATH_WARM_POLL, runner_warm_poll,
              "A warm runner reports its finished attempt and waits for the next one "
              "(long poll: an assignment with the attempt's credential, nothing yet, or "
              "retirement; 409 when its last attempt was lost)", Auth.RUNNER, "runner",
              body=protocol.WarmPollBody, response=protocol.WarmPollAnswer))
    add(Route("GET", "/healthz", healthz, "Liveness", Auth.NONE, "operations"))
    add(Route("GET", "/readyz", readyz,
              "Readiness: the database answers with this version's schema, tasks are "
              "registered (dev), a leader is known (operator)", Auth.NONE,
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
              content_type=html, query=ui_query.RunsPageQuery))
    add(Route("GET", "/runs/{run_id}", ui.run_page, "UI: a run", Auth.USER, "ui",
              content_type=html, query=ui_query.RunPageQuery))
    add(Route("GET", "/runs/{run_id}/overview", ui.run_overview,
              "UI: the live part of a run's page", Auth.USER, "ui", content_type=html))
    add(Route("GET", "/runs/{run_id}/log-lines", ui.run_log_lines,
              "UI: a run's log lines as table rows", Auth.USER, "ui", content_type=html,
              query=ui_query.LogLinesQuery))
    add(Route("GET", "/runs/{run_id}/checkpoints", ui.checkpoint_tree,
              "UI: a checkpoint's JSON as a collapsible tree", Auth.USER, "ui",
              content_type=html, query=ui_query.CheckpointQuery))
    add(Route("GET", "/runs/{run_id}/replay-section", ui.replay_section,
              "UI: a run's replay section (empty while the run is active)", Auth.USER, "ui",
              content_type=html))
    add(Route("GET", "/runs/{run_id}/replay-form", ui.replay_form,
              "UI: the replay form for a checkpoint", Auth.USER, "ui", content_type=html,
              query=ui_query.ReplayFormQuery))
    add(Route("POST", "/runs/{run_id}/replay", ui.replay_button,
              "UI: replay the run (form fields from, payload, checkpoint, spec)", Auth.USER,
              "ui", content_type=html, status=204, form=ui_query.ReplayForm))
    add(Route("POST", "/runs/{run_id}/cancel", ui.cancel_button, "UI: cancel a run", Auth.USER,
              "ui", content_type=html, status=204))
    add(Route("POST", "/runs/{run_id}/requeue", ui.requeue_button, "UI: requeue a run",
              Auth.USER, "ui", content_type=html, status=204, form=ui_query.RequeueForm))
    add(Route("GET", "/dead-letters", ui.dead_letters_page, "UI: dead-lettered runs",
              Auth.USER, "ui", content_type=html, query=ui_query.DeadLettersQuery))
    add(Route("POST", "/dead-letters/requeue", ui.requeue_dead_letters,
              "UI: requeue the selected dead-lettered runs (form field run, repeated)",
              Auth.USER, "ui", content_type=html, form=ui_query.DeadLettersRequeueForm))
    bulk_query = {"action": "requeue, replay or cancel.", "task": "Only this task.",
                  "namespace": "Only this namespace.",
                  "status": "Only these statuses (repeated).",
                  "since": "Created at or after (UTC).", "until": "Created before (UTC).",
                  "errorType": "Only runs whose last error is of this type.",
                  "deadLettered": "1: only dead-lettered runs.",
                  "spec": "current or original (requeue, replay).",
                  "fromCheckpoint": "Replays resume after this checkpoint."}
    add(Route("GET", "/bulk", bulk_ui.bulk_page,
              "UI: requeue, replay or cancel the runs a filter matches", Auth.USER, "ui",
              content_type=html, query=bulk_query))
    add(Route("POST", "/bulk/preview", bulk_ui.bulk_preview,
              "UI: count the runs a bulk action would take (form fields as /bulk's query)",
              Auth.USER, "ui", content_type=html, form=ui_query.BulkForm))
    add(Route("POST", "/bulk/run", bulk_ui.bulk_run,
              "UI: one batch of a bulk action and the progress so far (form fields as "
              "/bulk's query, plus cursor and the totals so far)",
              Auth.USER, "ui", content_type=html, form=ui_query.BulkRunForm))
    add(Route("GET", "/tasks", ui.tasks_page, "UI: tasks, queues, failure rates, schedules",
              Auth.USER, "ui", content_type=html))
    add(Route("GET", "/login", ui.login_form, "UI: the login form", Auth.NONE, "ui",
              content_type=html))
    add(Route("POST", "/login", ui.login,
              "UI: log in with the API token (form field token); sets the session cookie",
              Auth.NONE, "ui", content_type=html, status=303, form=ui_query.LoginForm))
    add(Route("POST", "/logout", ui.logout, "UI: end the session", Auth.NONE, "ui",
              content_type=html, status=303))
    add(Route("GET", "/static/{name}", ui.static, "UI: vendored scripts and styles",
              Auth.NONE, "ui", content_type="text/*"))


async def _warm_listener(app: web.Application) -> AsyncIterator[None]:
    """Wakes warm-runner polls held here when another replica assigns them."""
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(warm.listen(app[ENGINE].warm, stop))
    yield
    stop.set()
    with contextlib.suppress(Exception):
        await task


def create_app(engine: Engine, readiness: Readiness | None = None) -> web.Application:
    # The precise limits are checked per field, so that the error can name it.
    max_body, _ = _body_limit(engine.settings.limits)
    app = web.Application(middlewares=[errors_as_json], client_max_size=max_body)
    app[ENGINE] = engine
    hub = EventHub(engine.pool, interval=engine.settings.events_poll_seconds,
                   listen=lambda: store_pool.connect(engine.settings.session_url))
    app[appkeys.EVENT_HUB] = hub

    async def close_hub(_: web.Application) -> None:
        await hub.close()

    # Streams end before the runner's cleanup waits for their handlers.
    app.on_shutdown.append(close_hub)
    app[READINESS] = readiness or Readiness()
    app.cleanup_ctx.append(_warm_listener)
    table = route_table()
    app[ROUTES] = table.routes
    app[appkeys.UI_PATHS] = routes.paths_pattern([r for r in table.routes if r.tag == "ui"])
    table.install(app)
    return app
