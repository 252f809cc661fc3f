"""The UI: server-rendered pages (Jinja2, autoescaped) made live with htmx and its SSE
extension, vendored under ``static/``. docs/ui.md says why this approach.

Every page reads what the JSON API reads (the same engine functions); the buttons
call the same engine actions as the API. User data (task names, payloads,
checkpoints, log lines) is only ever rendered as escaped text.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from pydantic import BaseModel

from waypost.coordinator import appkeys, auth, params, timeline
from waypost.engine import control, insights, replay, scheduler
from waypost.engine import events as run_events
from waypost.engine.errors import EngineError, RunNotFound, UnprocessableContent
from waypost.model import inputs
from waypost.model import ui as ui_query
from waypost.model.enums import RequeueSpec, RunStatus
from waypost.model.run import ReplayRequest, Run
from waypost.sdk.protocol import LOG_LEVELS
from waypost.store import checkpoints, log_pages

PAGE_SIZE = 50
# Log lines per page of the pane (the newest first; earlier pages on request).
LOG_PAGE = 200
# What the run page redraws on; log lines only append to the log pane.
RUN_EVENT_KINDS = "status,attempt_started,attempt_finished,checkpoint,log,replay"
WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1),
           "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# The page may load only its own scripts and talk only to its own origin: an
# injected <script> or inline handler would not run even if escaping failed.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_text(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=False)


def _when(value: datetime | None) -> str:
    # isoformat is several times cheaper than strftime; a big run page shows
    # thousands of times.
    return "" if value is None else value.isoformat(" ", "milliseconds")[:23]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def _memory(n: int) -> str:
    return f"{n // (1024 * 1024)}Mi" if n % (1024 * 1024) == 0 else _size(n)


@cache
def environment() -> jinja2.Environment:
    """One template environment per process; autoescape is on for every template."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("waypost.coordinator", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(first_n=lambda items, n: itertools.islice(items, n),
                       json_text=_json_text, when=_when, size=_size, memory=_memory,
                       duration=timeline.duration_label)
    env.globals.update(statuses=[s.value for s in RunStatus], windows=list(WINDOWS),
                       levels=LOG_LEVELS, run_event_kinds=RUN_EVENT_KINDS)
    return env


def render(request: web.Request, template: str, status: int = 200,
           **context: Any) -> web.Response:
    body = environment().get_template(template).render(
        auth_enabled=request.app[appkeys.ENGINE].settings.api_token is not None,
        path=request.path, **context)
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """An error as a page that says what was wrong (a fragment for htmx's requests)."""
    template = "error_fragment.html" if _is_htmx(request) else "error.html"
    return render(request, template, status=status, code=code, message=message)


def _is_htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def page(handler: Handler) -> Handler:
    """A UI handler: asks for the login first when a token is set, and shows engine
    errors (unknown run, bad filter) as a page that says what was wrong."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        given = auth.bearer(request)
        if given is None and not auth.has_session(request):
            if _is_htmx(request):
                return web.Response(status=401, headers={"HX-Redirect": "/login"})
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")
        if given is not None or request.method not in auth.SAFE_METHODS:
            # A bearer token must be the API token (a script, as with the JSON API); a
            # change made with the cookie must come with the UI's header.
            auth.require_user(request)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            response = await handler(request)
        except EngineError as exc:
            response = error_page(request, exc.status, exc.code, exc.message)
        # The time the page took here (queries and rendering) and the CPU this process
        # spent meanwhile, for browsers' dev tools and for bench.ui_page.
        elapsed = (time.perf_counter() - started) * 1000
        spent = (time.process_time() - cpu) * 1000
        response.headers["Server-Timing"] = f"page;dur={elapsed:.1f}, cpu;dur={spent:.1f}"
        return response
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


# --- login ------------------------------------------------------------------

def _safe_next(value: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


async def login_form(request: web.Request) -> web.Response:
    """The login form (the only page shown without a session when a token is set)."""
    return render(request, "login.html", next=_safe_next(request.query.get("next")),
                  error=None)


async def login(request: web.Request) -> web.Response:
    """Check the token; on success set the HttpOnly session cookie and go on."""
    expected = request.app[appkeys.ENGINE].settings.api_token
    form = await params.read_form(request, ui_query.LoginForm)
    target = _safe_next(form.next or "/")
    if expected is None:
        raise web.HTTPSeeOther(target)
    if not auth.token_matches(form.token, expected):
        return render(request, "login.html", status=401, next=target,
                      error="That token is not valid.")
    response = web.HTTPSeeOther(target)
    response.set_cookie(auth.COOKIE, auth.session_value(expected), httponly=True,
                        samesite="Strict", path="/", secure=request.secure)
    raise response


async def logout(request: web.Request) -> web.Response:
    """End the UI session."""
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.COOKIE, path="/")
    raise response


# --- runs list --------------------------------------------------------------

def _filters(query: BaseModel, keys: tuple[str, ...]) -> dict[str, str]:
    """The filters a page's query gives (an empty field is no filter), as text."""
    values = {k: ui_query.given(getattr(query, k)) for k in keys}
    return {k: str(v).strip() for k, v in values.items() if v is not None}


@page
async def runs_page(request: web.Request) -> web.Response:
    """Runs, newest first, filtered by task, namespace, status, age and id or key."""
    engine = request.app[appkeys.ENGINE]
    query = params.read_query(request, ui_query.RunsPageQuery)
    chosen = _filters(query, ("task", "namespace", "status", "window", "q"))
    status = chosen.get("status")
    window = chosen.get("window")
    statuses = [RunStatus(status)] if status else None
    cursor = query.cursor
    found, next_cursor = await control.list_runs(
        engine, namespace=chosen.get("namespace"), task=chosen.get("task"), statuses=statuses,
        limit=PAGE_SIZE, cursor=cursor,
        since=engine.clock.now() - WINDOWS[window] if window else None,
        search=chosen.get("q"))
    summaries = await control.task_summaries(engine)
    next_url = f"/?{urlencode({**chosen, 'cursor': next_cursor})}" if next_cursor else None
    return render(request, "runs.html", runs=found, filters=chosen, next_url=next_url,
                  first_page=cursor is None,
                  tasks=sorted({s.definition.name for s in summaries}),
                  namespaces=sorted({s.definition.namespace for s in summaries}))


# --- one run ----------------------------------------------------------------

def _run_id(request: web.Request) -> uuid.UUID:
    return control.parse_run_id(request.match_info["run_id"])


def _log_filters(query: ui_query.RunPageQuery | ui_query.LogLinesQuery,
                 ) -> tuple[int | None, list[str] | None, str]:
    attempt = query.attempt if isinstance(query.attempt, int) else None
    level = query.level or ""
    return attempt, run_events.levels_from(level), level


@page
async def run_page(request: web.Request) -> web.Response:
    """A run: header, timeline, checkpoints, payload and result, logs, actions, replays."""
    engine = request.app[appkeys.ENGINE]
    run_id = _run_id(request)
    attempt, levels, level = _log_filters(params.read_query(request, ui_query.RunPageQuery))
    # The page follows the run's events from where its log tail ends, so no line the
    # page shows arrives again and nothing after it is missed. The tail is read
    # before the run: every event below its cursor committed before the run is read,
    # so the run shown includes it. Read the other way round, a run that finished
    # between the two reads showed "running" with its status event already behind
    # the cursor, and the page never updated.
    lines, follow = await log_pages.tail(engine.pool, run_id, before=None,
                                         attempt=attempt, levels=levels, limit=LOG_PAGE)
    # Checkpoint data is not drawn on the page: a tree loads its one checkpoint.
    run = await control.get(engine, run_id, details=True, checkpoint_data=False)
    patterns = [insights.to_api(r) for r in
                await insights.active(engine, run.namespace, run.task)]
    return render(request, "run.html", **_run_context(engine.clock.now(), run),
                  insights=patterns,
                  lines=lines, follow=str(follow), log_attempt=attempt, log_level=level,
                  following=False,
                  earlier=lines[0].cursor if len(lines) == LOG_PAGE else None,
                  replay_form=_replay_form(run, None))


def _run_context(now: datetime, run: Run) -> dict[str, Any]:
    attempts = run.attempts or []
    saved = run.checkpoints or []
    return {"run": run, "attempts": attempts, "checkpoints": saved,
            "timeline": timeline.build(run, attempts, saved, now),
            "active": not run.status.is_final}


@page
async def run_overview(request: web.Request) -> web.Response:
    """The live parts of the run page (header, timeline, checkpoints, result), redrawn
    when the run's event stream says something changed."""
    engine = request.app[appkeys.ENGINE]
    run = await control.get(engine, _run_id(request), details=True, checkpoint_data=False)
    return render(request, "run_overview.html", **_run_context(engine.clock.now(), run))


@page
async def replay_section(request: web.Request) -> web.Response:
    """The run page's replay section: a placeholder while the run is active (the page
    asks again on each status event), the replay form once it has finished."""
    engine = request.app[appkeys.ENGINE]
    run = await control.get(engine, _run_id(request), details=True, checkpoint_data=False)
    return render(request, "replay_section.html", run=run, active=not run.status.is_final,
                  replay_form=_replay_form(run, None))


@page
async def checkpoint_tree(request: web.Request) -> web.Response:
    """One checkpoint's JSON as a collapsible tree (the inspector loads it on opening)."""
    engine = request.app[appkeys.ENGINE]
    key = params.read_query(request, ui_query.CheckpointQuery).key
    found = await control.get_checkpoint(engine, _run_id(request), key)
    return render(request, "checkpoint_tree.html", value=found.data)


@page
async def run_log_lines(request: web.Request) -> web.Response:
    """Log lines of a run as table rows: after ``after`` (following a live run, with a
    follower for the next ones), or the page of the tail before ``before``; filtered
    by attempt and level."""
    engine = request.app[appkeys.ENGINE]
    run = await control.get(engine, _run_id(request))
    query = params.read_query(request, ui_query.LogLinesQuery)
    attempt, levels, level = _log_filters(query)
    after = run_events.parse_cursor(query.after, "after")
    before = run_events.parse_cursor(query.before, "before")
    if after is not None:
        lines, follow = await run_events.read_logs(
            engine.pool, uuid.UUID(run.id), after=after, attempt=attempt, level=level or None,
            since=None, limit=LOG_PAGE)
        earlier = None
    else:
        lines, follow = await log_pages.tail(engine.pool, uuid.UUID(run.id), before=before,
                                             attempt=attempt, levels=levels, limit=LOG_PAGE)
        earlier = lines[0].cursor if len(lines) == LOG_PAGE else None
    return render(request, "log_rows.html", run=run, lines=lines, log_attempt=attempt,
                  log_level=level, follow=str(follow), following=after is not None,
                  # An earlier page is history: only the newest part follows the run.
                  active=not run.status.is_final and before is None, earlier=earlier)


# --- replay -----------------------------------------------------------------

def _replay_form(run: Run, key: str | None, payload_text: str | None = None,
                 checkpoint: Any = None) -> dict[str, Any]:
    """What the replay form shows: the checkpoint to resume after and editors for the
    payload and that checkpoint (``checkpoint``: its current JSON, unless the user
    edited it)."""
    if key is not None and key not in {c.key for c in run.checkpoints or []}:
        # Not found, as the checkpoint inspector says: the query itself is valid.
        raise RunNotFound(f"run {run.id} has no checkpoint {key!r}")
    return {
        "key": key,
        "payload": payload_text if payload_text is not None else _json_text(run.payload, 2),
        "checkpoint": _json_text(checkpoint, 2) if key is not None else None,
    }


@page
async def replay_form(request: web.Request) -> web.Response:
    """The replay form for resuming after checkpoint ``from`` (empty: from the start)."""
    engine = request.app[appkeys.ENGINE]
    run = await control.get(engine, _run_id(request), details=True, checkpoint_data=False)
    query = params.read_query(request, ui_query.ReplayFormQuery)
    key = query.from_ or None
    saved = next((c for c in run.checkpoints or [] if c.key == key), None)
    data = (await control.get_checkpoint(engine, uuid.UUID(run.id), key)).data if (
        key is not None and saved is not None) else None
    return render(request, "replay_form.html", run=run, replay_form=_replay_form(
        run, key, query.payload, data))


def _parse_json(text: str, field_name: str) -> Any:
    """A form field's JSON, through the API's input boundary (depth, huge numbers, NUL
    and lone surrogates are refused naming the field, never a 500). The form itself is
    valid whatever the text: what is refused is its content (422)."""
    try:
        return inputs.check_json(inputs.parse_json(text.encode("utf-8", "surrogatepass")))
    except inputs.UnsafeInput as exc:
        raise UnprocessableContent(f"{field_name}: not valid JSON ({exc})") from None


@page
async def replay_button(request: web.Request) -> web.Response:
    """Replay the run as a new run that resumes after the chosen checkpoint, with the
    payload and that checkpoint as edited; opens the new run's page."""
    engine = request.app[appkeys.ENGINE]
    run = await control.get(engine, _run_id(request), details=True)
    form = await params.read_form(request, ui_query.ReplayForm)
    key = form.from_ or None
    spec = form.spec or "current"
    # An emptied text area is no value, as everywhere on the pages: no payload is null,
    # no checkpoint text leaves the checkpoint as it was.
    payload = _parse_json(form.payload or "null", "payload")
    edited: dict[str, Any] | None = None
    if key is not None and form.checkpoint:
        data = _parse_json(form.checkpoint, f"checkpoint {key!r}")
        original = next((c.data for c in run.checkpoints or [] if c.key == key), None)
        if data != original:
            edited = {key: data}
    request_body = ReplayRequest.model_validate({
        "fromCheckpoint": key, "spec": spec, "checkpoints": edited,
        # Unchanged: the original's payload, so the audit diff shows no change.
        **({"payload": payload} if payload != run.payload else {})})
    created, _ = await replay.replay(engine, uuid.UUID(run.id), request_body,
                                     requested_by=requested_by(request))
    return web.Response(status=204, headers={"HX-Redirect": f"/runs/{created.id}"})


def requested_by(request: web.Request) -> str:
    """Who asks, for the replay's audit record: the UI, and how it was authenticated."""
    if request.app[appkeys.ENGINE].settings.api_token is None:
        return "ui (anonymous)"
    return "ui (api-token session)"


async def _act(request: web.Request, action: Callable[[uuid.UUID], Awaitable[Run]]) -> web.Response:
    run = await action(_run_id(request))
    return web.Response(status=204, headers={"HX-Redirect": f"/runs/{run.id}"})


@page
async def cancel_button(request: web.Request) -> web.Response:
    """Cancel the run (the run page's button)."""
    engine = request.app[appkeys.ENGINE]
    return await _act(request, lambda rid: control.cancel(engine, rid, "cancelled in the UI"))


def _spec(value: str) -> RequeueSpec:
    """A form's spec choice (empty: the Task's current spec)."""
    return RequeueSpec(value or RequeueSpec.CURRENT.value)


@page
async def requeue_button(request: web.Request) -> web.Response:
    """Requeue a dead-lettered or failed run (the run page's button), with the Task's
    current spec or the one it was triggered with (form field spec)."""
    engine = request.app[appkeys.ENGINE]
    spec = _spec((await params.read_form(request, ui_query.RequeueForm)).spec)
    return await _act(request, lambda rid: control.requeue(engine, rid, spec))


# --- dead letters -----------------------------------------------------------

async def _dead_letter_context(request: web.Request) -> dict[str, Any]:
    engine = request.app[appkeys.ENGINE]
    query = params.read_query(request, ui_query.DeadLettersQuery)
    chosen = _filters(query, ("task", "namespace"))
    cursor = query.cursor if isinstance(query.cursor, int) else None
    found, next_cursor = await control.list_runs(
        engine, namespace=chosen.get("namespace"), task=chosen.get("task"),
        statuses=[RunStatus.DEAD_LETTERED], limit=PAGE_SIZE, cursor=cursor)
    last = await checkpoints.last_for_runs(engine.pool, [uuid.UUID(r.id) for r in found])
    next_url = (f"/dead-letters?{urlencode({**chosen, 'cursor': next_cursor})}"
                if next_cursor else None)
    refresh = f"/dead-letters?{urlencode({**chosen, 'cursor': cursor or ''})}"
    bulk_url = f"/bulk?{urlencode({'action': 'requeue', 'deadLettered': '1', **chosen})}"
    return {"runs": found, "last": {str(k): v for k, v in last.items()},
            "filters": chosen, "next_url": next_url, "refresh_url": refresh,
            "bulk_url": bulk_url}


@page
async def dead_letters_page(request: web.Request) -> web.Response:
    """Dead-lettered runs: reason, last checkpoint, attempts; select and requeue."""
    return render(request, "dead_letters.html", **await _dead_letter_context(request),
                  requeued=None, refused=[])


@page
async def requeue_dead_letters(request: web.Request) -> web.Response:
    """Requeue the selected dead-lettered runs; reports what was requeued or refused."""
    engine = request.app[appkeys.ENGINE]
    form = await params.read_form(request, ui_query.DeadLettersRequeueForm)
    ids = list(dict.fromkeys(form.run))
    spec = _spec(form.spec)
    requeued: list[str] = []
    refused: list[tuple[str, str]] = []
    for run_id in ids:
        try:
            requeued.append((await control.requeue(engine, run_id, spec)).id)
        except EngineError as exc:
            refused.append((str(run_id), exc.message))
    return render(request, "dead_letters_body.html", **await _dead_letter_context(request),
                  requeued=requeued, refused=refused)


# --- tasks ------------------------------------------------------------------

@page
async def tasks_page(request: web.Request) -> web.Response:
    """Tasks: queue depth, running, failure rate over the last hour, schedules."""
    engine = request.app[appkeys.ENGINE]
    summaries = await control.task_summaries(engine)
    rates = {(r.namespace, r.task): r for r in
             await control.failure_rates(engine, engine.clock.now() - timedelta(hours=1))}
    found = await scheduler.list_schedules(engine)
    by_task: dict[tuple[str, str], list[Any]] = {}
    for s in found:
        by_task.setdefault((s.namespace, s.task), []).append(s)
    flagged: dict[tuple[str, str], list[Any]] = {}
    for row in await insights.active(engine):
        flagged.setdefault((row.namespace, row.task), []).append(insights.to_api(row))
    rows = [{"summary": s, "rate": rates.get((s.definition.namespace, s.definition.name)),
             "schedules": by_task.get((s.definition.namespace, s.definition.name), []),
             "insights": flagged.get((s.definition.namespace, s.definition.name), [])}
            for s in summaries]
    return render(request, "tasks.html", rows=rows)


# --- static assets ----------------------------------------------------------

@cache
def _asset(name: str) -> bytes | None:
    folder = resources.files("waypost.coordinator") / "static"
    entry = folder / name
    return entry.read_bytes() if entry.is_file() else None


async def static(request: web.Request) -> web.Response:
    """The UI's scripts and styles, vendored in the package (no CDN)."""
    name = request.match_info["name"]
    kind = STATIC_TYPES.get(name[name.rfind("."):]) if "." in name else None
    if kind is None or "/" in name or name.startswith("."):
        raise web.HTTPNotFound()
    body = _asset(name)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type=kind, charset="utf-8", headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
