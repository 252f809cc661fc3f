"""Replay and bulk actions on runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from waypost.coordinator import appkeys
from waypost.coordinator.routes import Auth, Route
from waypost.engine import bulk, control, replay
from waypost.model.run import BulkRequest, BulkResult, ReplayRequest, Run

ReadBody = Callable[[web.Request, type[BaseModel]], Awaitable[BaseModel]]


def requested_by(request: web.Request) -> str:
    """Who is asking, for audit records: the API token's holder, or anonymous when
    the API has no token."""
    if request.app[appkeys.ENGINE].settings.api_token is None:
        return "anonymous"
    return "api-token"


def routes(require_user: Callable[[web.Request], None], read_body: ReadBody) -> list[Route]:
    """The replay and bulk routes; ``require_user`` checks the API token and
    ``read_body`` parses a JSON body into a model (with the API's error answers)."""

    async def replay_run(request: web.Request) -> web.Response:
        require_user(request)
        run_id = control.parse_run_id(request.match_info["run_id"])
        body = await read_body(request, ReplayRequest)
        assert isinstance(body, ReplayRequest)
        run, created = await replay.replay(request.app[appkeys.ENGINE], run_id, body,
                                           requested_by=requested_by(request))
        return web.json_response(run.model_dump(mode="json", by_alias=True),
                                 status=201 if created else 200)

    async def bulk_action(request: web.Request) -> web.Response:
        require_user(request)
        body = await read_body(request, BulkRequest)
        assert isinstance(body, BulkRequest)
        result = await bulk.run_batch(request.app[appkeys.ENGINE], body,
                                      requested_by=requested_by(request))
        return web.json_response(result.model_dump(mode="json", by_alias=True))

    return [
        Route("POST", "/v1/runs/bulk", bulk_action,
              "Requeue, cancel or replay the runs a filter matches: one batch per call "
              "(newest first; pass nextCursor back until it is null), or with dryRun the "
              "count; repeating an action changes nothing more",
              Auth.USER, "runs", body=BulkRequest, response=BulkResult),
        Route("POST", "/v1/runs/{run_id}/replay", replay_run,
              "Replay a finished run as a new run (replayOf) that resumes after "
              "fromCheckpoint, with an edited payload or checkpoints; audited on both runs",
              Auth.USER, "runs", body=ReplayRequest, response=Run, status=201, also=(200,)),
    ]
