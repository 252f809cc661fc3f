"""Routes of durable waits: batch triggers, delayed runs, child runs, wait tokens,
and the runner's wait and token calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, RootModel

from waypost.coordinator import appkeys, render
from waypost.coordinator.routes import Auth, Route
from waypost.engine import control, waits
from waypost.engine.credentials import AttemptIdentity
from waypost.model.inputs import ApiJson
from waypost.model.run import (
    BatchRun,
    BatchTriggerRequest,
    BatchTriggerResult,
    RescheduleRequest,
    Run,
    RunList,
)
from waypost.model.waits import (
    ChildrenQuery,
    Token,
    TokenCompleteRequest,
    TokenCreateRequest,
    TokenList,
    TokenQuery,
)
from waypost.sdk import protocol

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P")
ReadBody = Callable[[web.Request, type[M]], Awaitable[M]]
ReadQuery = Callable[[web.Request, type[M]], M]
ReadMessage = Callable[[web.Request, type[P]], Awaitable[P]]


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json", by_alias=True), status=status)


def _answer(message: Any, status: int = 200) -> web.Response:
    return web.json_response(protocol.encode(message), status=status)


def routes(require_user: Callable[[web.Request], None], read_body: Any, read_query: Any,
           read_message: Any, attempt_of: Callable[[web.Request], AttemptIdentity],
           ) -> list[Route]:
    """The routes; the callables are the app's own checks and parsers."""

    async def batch_trigger(request: web.Request) -> web.Response:
        require_user(request)
        body: BatchTriggerRequest = await read_body(request, BatchTriggerRequest)
        made = await waits.trigger_batch(request.app[appkeys.ENGINE],
                                         request.match_info["namespace"],
                                         request.match_info["task"], body.items)
        result = BatchTriggerResult(
            runs=[BatchRun(id=str(m.run_id), new=m.new, status=m.status) for m in made],
            created=sum(1 for m in made if m.new))
        return _json(result, 201 if result.created else 200)

    async def reschedule(request: web.Request) -> web.Response:
        require_user(request)
        run_id = control.parse_run_id(request.match_info["run_id"])
        body: RescheduleRequest = await read_body(request, RescheduleRequest)
        run = await waits.reschedule(request.app[appkeys.ENGINE], run_id, delay=body.delay,
                                     run_at=body.run_at)
        return render.run_response(run)

    async def children(request: web.Request) -> web.Response:
        require_user(request)
        run_id = control.parse_run_id(request.match_info["run_id"])
        q: ChildrenQuery = read_query(request, ChildrenQuery)
        found = await waits.children(request.app[appkeys.ENGINE], run_id, q.limit)
        return render.run_list_response(RunList(runs=found))

    def _base_url(request: web.Request) -> str:
        return str(request.url.origin())

    async def create_token(request: web.Request) -> web.Response:
        require_user(request)
        body: TokenCreateRequest = await read_body(request, TokenCreateRequest)
        token = await waits.create_token(request.app[appkeys.ENGINE], namespace=body.namespace,
                                         timeout_seconds=body.timeout,
                                         idempotency_key=body.idempotency_key)
        return _json(waits.token_model(token, _base_url(request)), 201)

    async def list_tokens(request: web.Request) -> web.Response:
        require_user(request)
        q: TokenQuery = read_query(request, TokenQuery)
        found, cursor = await waits.list_tokens(
            request.app[appkeys.ENGINE], namespace=q.namespace, run_id=q.run_id,
            status=q.status, limit=q.limit, cursor=q.cursor)
        return _json(TokenList(tokens=[waits.token_model(t) for t in found],
                               next_cursor=cursor))

    async def get_token(request: web.Request) -> web.Response:
        require_user(request)
        token = await waits.get_token(request.app[appkeys.ENGINE],
                                      request.match_info["token_id"])
        return _json(waits.token_model(token))

    async def complete_token(request: web.Request) -> web.Response:
        require_user(request)
        body: TokenCompleteRequest = await read_body(request, TokenCompleteRequest)
        token = await waits.complete_token(request.app[appkeys.ENGINE],
                                           request.match_info["token_id"], body.data)
        return _json(waits.token_model(token))

    async def token_callback(request: web.Request) -> web.Response:
        # The webhook form: the whole JSON body is the data; the secret in the URL is
        # the credential (no API token).
        body: CallbackBody = await read_body(request, CallbackBody)
        token = await waits.complete_token(request.app[appkeys.ENGINE],
                                           request.match_info["token_id"], body.root,
                                           secret=request.match_info["secret"])
        return _json(waits.token_model(token))

    async def runner_wait(request: web.Request) -> web.Response:
        ident = attempt_of(request)
        body: protocol.WaitBody = await read_message(request, protocol.WaitBody)
        return _answer(await waits.wait(request.app[appkeys.ENGINE], ident, body))

    async def runner_token(request: web.Request) -> web.Response:
        ident = attempt_of(request)
        body: protocol.TokenBody = await read_message(request, protocol.TokenBody)
        return _answer(await waits.runner_token(request.app[appkeys.ENGINE], ident, body), 201)

    return [
        Route("POST", "/v1/tasks/{namespace}/{task}/batch", batch_trigger,
              "Trigger up to 1,000 runs of a task in one transaction, all or none (201 when "
              "any run is new, 200 when every item's idempotency key returned an existing "
              "run); the answer lists each item's run in order",
              Auth.USER, "runs", body=BatchTriggerRequest, response=BatchTriggerResult,
              status=201, also=(200,)),
        Route("POST", "/v1/runs/{run_id}/reschedule", reschedule,
              "Give a delayed run another start time", Auth.USER, "runs",
              body=RescheduleRequest, response=Run),
        Route("GET", "/v1/runs/{run_id}/children", children,
              "The child runs a run started (ctx.trigger_and_wait), oldest first",
              Auth.USER, "runs", response=RunList, query=ChildrenQuery),
        Route("POST", "/v1/tokens", create_token,
              "Create a wait token (the answer's url is its webhook callback)", Auth.USER,
              "tokens", body=TokenCreateRequest, response=Token, status=201),
        Route("GET", "/v1/tokens", list_tokens, "List wait tokens, newest first", Auth.USER,
              "tokens", response=TokenList, query=TokenQuery),
        Route("GET", "/v1/tokens/{token_id}", get_token, "A wait token", Auth.USER, "tokens",
              response=Token),
        Route("POST", "/v1/tokens/{token_id}/complete", complete_token,
              "Complete a wait token with data; its waiting runs resume (a second "
              "completion: 409 token_already_completed, nothing changes; after its timeout: 409 "
              "token_timed_out)", Auth.USER,
              "tokens", body=TokenCompleteRequest, response=Token),
        Route("POST", "/v1/tokens/{token_id}/callback/{secret}", token_callback,
              "Webhook form of complete: the URL holds the token's secret (no API token); "
              "the whole JSON body is the data", Auth.NONE, "tokens", body=CallbackBody,
              response=Token),
        Route("POST", protocol.PATH_WAIT, runner_wait,
              "The task waits (sleep, token, child runs): the run suspends, or the answer "
              "is the outcome when the wait is over already", Auth.ATTEMPT, "runner",
              body=protocol.WaitBody, response=protocol.WaitAnswer),
        Route("POST", protocol.PATH_TOKENS, runner_token,
              "Create a wait token for this run (the same key returns the same token)",
              Auth.ATTEMPT, "runner", body=protocol.TokenBody, response=protocol.TokenAnswer,
              status=201),
    ]


class CallbackBody(RootModel[ApiJson]):
    """Body of a webhook callback: any JSON value, which becomes the token's data."""
