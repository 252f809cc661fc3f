"""``WaypostClient``: trigger and inspect runs through the coordinator's user API.

::

    async with WaypostClient("http://localhost:8080") as client:
        handle = await client.trigger("process-order", {"orderId": "o-1"})
        run = await client.wait(handle.id, timeout=60)
        async for event in client.subscribe(handle.id):
            print(event["kind"], event["data"])
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from waypost.sdk import durations, sse, tracing
from waypost.sdk.decorator import Task
from waypost.sdk.errors import CoordinatorUnavailable, WaypostAPIError
from waypost.sdk.retry import Retry
from waypost.sdk.transport import (
    NO_RETRY,
    SendOnce,
    Sleep,
    TransportError,
    error_from_response,
    request_json,
)

__all__ = ["TERMINAL_STATUSES", "BatchRun", "RunHandle", "RunPage", "TriggerItem",
           "WaypostAPIError", "WaypostClient"]

#: Run statuses after which nothing more happens to a run (unless requeued).
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "dead_lettered", "cancelled", "expired"})

RunDocument = dict[str, Any]
#: An event of a run's event log (``GET /v1/runs/{id}/events``).
RunEvent = dict[str, Any]

#: The events ``wait`` follows: everything but log lines.
WAIT_KINDS = ("status", "attempt_started", "attempt_finished", "checkpoint", "replay")

class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: Marks an argument that was not given (``payload=None`` is a JSON null).
UNSET: Any = _Unset()

# A dropped event stream is resumed for about a minute before giving up.
STREAM_RETRY = Retry(max_attempts=12, initial_delay=0.2, factor=2.0, max_delay=5.0, jitter=0.0)


@dataclass(frozen=True)
class RunHandle:
    """What :meth:`WaypostClient.trigger` returns.

    ``created`` is False when an existing run was returned for the same
    idempotency key; ``run`` is the run document at trigger time.
    """

    id: str
    created: bool
    run: RunDocument

    @property
    def status(self) -> str:
        """The run's status when it was triggered."""
        return str(self.run.get("status", ""))


@dataclass(frozen=True)
class TriggerItem:
    """One run of :meth:`WaypostClient.batch_trigger`: its payload and how it queues
    (the fields of a single trigger)."""

    payload: Any = None
    idempotency_key: str | None = None
    priority: int | None = None
    concurrency_key: str | None = None
    delay: durations.DurationLike | None = None
    run_at: datetime | None = None
    ttl: durations.DurationLike | None = None

    def wire(self) -> dict[str, Any]:
        """The item as the API takes it."""
        body: dict[str, Any] = {"payload": self.payload}
        body.update(_timing(self.delay, self.run_at, self.ttl))
        for name, value in (("idempotencyKey", self.idempotency_key),
                            ("priority", self.priority),
                            ("concurrencyKey", self.concurrency_key)):
            if value is not None:
                body[name] = value
        return body


@dataclass(frozen=True)
class BatchRun:
    """One item's run in a batch trigger's answer (in item order)."""

    id: str
    new: bool
    status: str


def _duration(value: durations.DurationLike) -> float:
    """Seconds, as the API takes them (text like "10m" is converted here; a bad one
    raises ValueError before anything is sent)."""
    return durations.parse_duration(value)


def _timing(delay: durations.DurationLike | None, run_at: datetime | None,
            ttl: durations.DurationLike | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if delay is not None:
        body["delay"] = _duration(delay)
    if run_at is not None:
        body["runAt"] = run_at.isoformat()
    if ttl is not None:
        body["ttl"] = _duration(ttl)
    return body


def aiohttp_sender(session: aiohttp.ClientSession) -> SendOnce:
    """A :data:`~waypost.sdk.transport.SendOnce` over an aiohttp session."""

    async def send(
        method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, str]:
        try:
            async with session.request(method, url, headers=headers, data=body) as response:
                return response.status, await response.text()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    return send


@dataclass(frozen=True)
class RunPage:
    """One page of :meth:`WaypostClient.runs_page`.

    ``next_cursor`` is ``None`` on the last page; ``total`` is the number of
    matching runs when it was asked for.
    """

    runs: list[RunDocument]
    next_cursor: int | None
    total: int | None = None


def _segment(value: str) -> str:
    return quote(value, safe="")


class WaypostClient:
    """Async client for the user API (``/v1/tasks``, ``/v1/runs``, ``/v1/dead-letters``).

    ``token`` is sent as a bearer token when given. Error answers raise
    :class:`~waypost.sdk.errors.WaypostAPIError` with the API's status,
    code and message; an unreachable coordinator raises
    :class:`~waypost.sdk.errors.CoordinatorUnavailable`.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._sleep = sleep

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WaypostClient:
        """A client for ``WAYPOST_URL`` (default ``http://127.0.0.1:8080``) and
        ``WAYPOST_API_TOKEN`` (optional)."""
        env = os.environ if env is None else env
        return cls(
            env.get("WAYPOST_URL") or "http://127.0.0.1:8080",
            env.get("WAYPOST_API_TOKEN") or None,
        )

    async def __aenter__(self) -> WaypostClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        # No automatic retries: a repeated trigger without an idempotency
        # key could enqueue the run twice. Callers decide.
        return await request_json(
            aiohttp_sender(self._get_session()),
            method,
            f"{self.base_url}{path}",
            headers={**self._headers, **headers} if headers else self._headers,
            json_body=body,
            params=params,
            retry=NO_RETRY,
        )

    async def _document(self, method: str, path: str, body: Any = None) -> RunDocument:
        _, data = await self._request(method, path, body=body)
        if not isinstance(data, dict):
            raise WaypostAPIError(200, "bad_response", f"{method} {path}: expected a JSON object")
        return data

    async def trigger(
        self,
        task: str | Task[..., Any],
        payload: Any = None,
        *,
        namespace: str = "default",
        priority: int | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        return_existing: bool = False,
        delay: durations.DurationLike | None = None,
        run_at: datetime | None = None,
        ttl: durations.DurationLike | None = None,
        traceparent: str | None = None,
    ) -> RunHandle:
        """Enqueue a run of ``task`` (an id or a decorated task) with ``payload``.

        ``traceparent`` (W3C Trace Context, e.g. from your own OpenTelemetry span)
        makes the run's trace a child of that span; it is sent as the
        ``traceparent`` header. A malformed value raises ``ValueError``.

        With ``idempotency_key``, triggering again returns the existing run
        (``created`` False) instead of enqueuing another. Reusing the key with
        a different payload, priority or concurrency key raises
        :class:`WaypostAPIError` (409 ``idempotency_conflict``) unless
        ``return_existing`` asks for the existing run whatever it holds.

        ``delay`` (seconds, a ``timedelta`` or text like ``"10m"``) or ``run_at``
        start the run later (it is ``delayed`` until then; see :meth:`reschedule`);
        with ``ttl`` a run that has not started that long after the trigger ends
        ``expired`` and never runs.
        """
        task_id = task.definition.id if isinstance(task, Task) else task
        body: dict[str, Any] = {"payload": payload, **_timing(delay, run_at, ttl)}
        if priority is not None:
            body["priority"] = priority
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        if concurrency_key is not None:
            body["concurrencyKey"] = concurrency_key
        if return_existing:
            body["idempotencyConflict"] = "returnExisting"
        headers: dict[str, str] = {}
        if traceparent is not None:
            if tracing.parse_traceparent(traceparent) is None:
                raise ValueError(f"traceparent: not a W3C traceparent: {traceparent[:100]!r}")
            headers["traceparent"] = traceparent.strip()
        path = f"/v1/tasks/{_segment(namespace)}/{_segment(task_id)}/trigger"
        status, data = await self._request("POST", path, body=body, headers=headers)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise WaypostAPIError(status, "bad_response", "trigger: answer has no run id")
        return RunHandle(id=data["id"], created=status == 201, run=data)

    async def batch_trigger(
        self,
        task: str | Task[..., Any],
        items: Iterable[TriggerItem | Mapping[str, Any]],
        *,
        namespace: str = "default",
    ) -> list[BatchRun]:
        """Enqueue up to 1,000 runs of ``task`` in one request and one transaction.

        Each item is a :class:`TriggerItem` or its wire form (a dict with
        ``payload``, ``idempotencyKey``, ``priority``, ``concurrencyKey``,
        ``delay``, ``runAt``, ``ttl``). All or nothing: a bad item raises
        :class:`WaypostAPIError` (400, naming ``items[i]``) and stores nothing. An
        item whose idempotency key is taken returns the run that holds it
        (``new`` False). The answer is in item order.
        """
        task_id = task.definition.id if isinstance(task, Task) else task
        wire = [i.wire() if isinstance(i, TriggerItem) else dict(i) for i in items]
        path = f"/v1/tasks/{_segment(namespace)}/{_segment(task_id)}/batch"
        status, data = await self._request("POST", path, body={"items": wire})
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            raise WaypostAPIError(status, "bad_response", "batch trigger: expected {'runs': [...]}")
        return [BatchRun(id=str(r.get("id")), new=bool(r.get("new")),
                         status=str(r.get("status"))) for r in data["runs"]]

    async def reschedule(
        self, run_id: str, *, delay: durations.DurationLike | None = None,
        run_at: datetime | None = None,
    ) -> RunDocument:
        """Give a delayed run another start time: ``delay`` from now, or ``run_at``."""
        return await self._document("POST", f"/v1/runs/{_segment(run_id)}/reschedule",
                                    body=_timing(delay, run_at, None))

    async def children(self, run_id: str) -> list[RunDocument]:
        """The child runs ``run_id`` started with ``ctx.trigger_and_wait``, oldest first."""
        _, data = await self._request("GET", f"/v1/runs/{_segment(run_id)}/children")
        return _runs(data)

    async def create_token(
        self, *, namespace: str = "default", timeout: durations.DurationLike | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Create a wait token (a task waits for it with ``ctx.wait_for_token(id)``).
        The answer's ``url`` is the webhook callback, holding the token's secret."""
        body: dict[str, Any] = {"namespace": namespace}
        if timeout is not None:
            body["timeout"] = _duration(timeout)
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        return await self._document("POST", "/v1/tokens", body)

    async def complete_token(self, token_id: str, data: Any = None) -> dict[str, Any]:
        """Complete a wait token with ``data``; the runs waiting on it resume with it.

        A second completion raises :class:`WaypostAPIError` with status 409
        (``token_already_completed``) and changes nothing; after the token's
        timeout, 410 (``token_timed_out``); an unknown token, 404.
        """
        return await self._document("POST", f"/v1/tokens/{_segment(token_id)}/complete",
                                    {"data": data})

    async def get_token(self, token_id: str) -> dict[str, Any]:
        """A wait token: status, data, timeout, the runs waiting on it."""
        return await self._document("GET", f"/v1/tokens/{_segment(token_id)}")

    async def list_tokens(
        self, *, namespace: str | None = None, run_id: str | None = None,
        status: str | None = None, limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Wait tokens, newest first (one page)."""
        _, data = await self._request("GET", "/v1/tokens", params=_params(
            namespace=namespace, runId=run_id, status=status, limit=limit))
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise WaypostAPIError(200, "bad_response", "expected {'tokens': [...]}")
        return [t for t in data["tokens"] if isinstance(t, dict)]

    async def get_run(self, run_id: str) -> RunDocument:
        """The run document, with its ``attempts`` and ``checkpoints``."""
        return await self._document("GET", f"/v1/runs/{_segment(run_id)}")

    async def list_runs(
        self,
        *,
        namespace: str | None = None,
        task: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
        cursor: int | None = None,
    ) -> list[RunDocument]:
        """One page of runs matching every filter given, newest first.

        ``status`` is one status or several. Use :meth:`iter_runs` to go
        through every page.
        """
        runs, _ = await self.list_runs_page(
            namespace=namespace, task=task, status=status, limit=limit, cursor=cursor
        )
        return runs

    async def list_runs_page(
        self,
        *,
        namespace: str | None = None,
        task: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
        cursor: int | None = None,
        id_prefix: str | None = None,
    ) -> tuple[list[RunDocument], int | None]:
        """One page of runs and the cursor of the next page (``None`` on the last).

        ``id_prefix`` keeps the runs whose id starts with those hex digits.
        """
        page = await self.runs_page(namespace=namespace, task=task, status=status, limit=limit,
                                    cursor=cursor, id_prefix=id_prefix)
        return page.runs, page.next_cursor

    async def runs_page(
        self,
        *,
        namespace: str | None = None,
        task: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
        cursor: int | None = None,
        id_prefix: str | None = None,
        count: bool = False,
    ) -> RunPage:
        """One page of runs; with ``count``, also how many runs match in all."""
        statuses = status if isinstance(status, str) or status is None else ",".join(status)
        params = _params(
            namespace=namespace, task=task, status=statuses, limit=limit, cursor=cursor,
            idPrefix=id_prefix, count="true" if count else None,
        )
        _, data = await self._request("GET", "/v1/runs", params=params)
        total = data.get("total") if isinstance(data, dict) else None
        return RunPage(runs=_runs(data), next_cursor=_next_cursor(data),
                       total=total if isinstance(total, int) else None)

    async def iter_runs(
        self,
        *,
        namespace: str | None = None,
        task: str | None = None,
        status: str | Iterable[str] | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[RunDocument]:
        """Every run matching the filters, fetched page by page."""
        cursor: int | None = None
        while True:
            runs, cursor = await self.list_runs_page(
                namespace=namespace, task=task, status=status, limit=page_size, cursor=cursor
            )
            for run in runs:
                yield run
            if cursor is None or not runs:
                return

    async def cancel(self, run_id: str, *, detach_children: bool = False) -> RunDocument:
        """Cancel a run; returns the updated run document. Its active child runs are
        cancelled too, unless ``detach_children``."""
        query = "?children=detach" if detach_children else ""
        return await self._document("POST", f"/v1/runs/{_segment(run_id)}/cancel{query}")

    async def bump(self, run_id: str) -> RunDocument:
        """Move a queued run to the front of its queue."""
        return await self._document("POST", f"/v1/runs/{_segment(run_id)}/bump")

    async def list_dead_letters(
        self,
        *,
        namespace: str | None = None,
        task: str | None = None,
        limit: int | None = None,
        cursor: int | None = None,
    ) -> list[RunDocument]:
        """Dead-lettered runs, optionally for one namespace or task."""
        params = _params(namespace=namespace, task=task, limit=limit, cursor=cursor)
        _, data = await self._request("GET", "/v1/dead-letters", params=params)
        return _runs(data)

    async def requeue(self, run_id: str, *, spec: str = "current") -> RunDocument:
        """Queue a dead-lettered or failed run again; it resumes after its last checkpoint.

        ``spec="current"`` (the default) runs the Task's spec as it is now, so a fix
        deployed since the run failed (a new image, more memory) takes effect;
        ``spec="original"`` runs the spec stored when the run was triggered. The run's
        ``specChoice`` and ``specGeneration`` say which it got.
        """
        return await self._document("POST", f"/v1/runs/{_segment(run_id)}/requeue",
                                    body={"spec": spec})

    async def replay(
        self,
        run_id: str,
        *,
        from_checkpoint: str | None = None,
        payload: Any = UNSET,
        checkpoints: Mapping[str, Any] | None = None,
        spec: str = "current",
        idempotency_key: str | None = None,
    ) -> RunDocument:
        """Run a finished run again as a new run that resumes right after
        ``from_checkpoint`` (None: from scratch), with ``payload`` (the original's
        when not given) and edited ``checkpoints`` (by key, among those copied).

        ``spec`` is ``"current"`` (the Task as it is now) or ``"original"``. The new
        run's ``replayOf`` names the original; both runs show the audit record.
        """
        body: dict[str, Any] = {"fromCheckpoint": from_checkpoint, "spec": spec}
        if payload is not UNSET:
            body["payload"] = payload
        if checkpoints:
            body["checkpoints"] = dict(checkpoints)
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        return await self._document("POST", f"/v1/runs/{_segment(run_id)}/replay", body)

    async def bulk(
        self,
        action: str,
        *,
        namespace: str | None = None,
        task: str | None = None,
        status: str | Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        error_type: str | None = None,
        dead_lettered: bool = False,
        dry_run: bool = False,
        batch_size: int = 100,
        from_checkpoint: str | None = None,
        spec: str = "current",
    ) -> AsyncIterator[dict[str, Any]]:
        """Requeue, cancel or replay (``action``) every run matching the filters, one
        bounded batch per request; yields each batch's result (``matched``,
        ``processed``, ``changed``, ``skipped``, ``runIds``) as progress. With
        ``dry_run`` it yields one result whose ``matched`` is the count.
        ``from_checkpoint`` applies to replays, ``spec`` (``current`` or
        ``original``) to requeues and replays."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        flt: dict[str, Any] = {
            k: v for k, v in {"namespace": namespace, "task": task, "since": since,
                              "until": until, "errorType": error_type}.items()
            if v is not None
        }
        if statuses:
            flt["statuses"] = statuses
        if dead_lettered:
            flt["deadLettered"] = True
        body: dict[str, Any] = {
            "action": action, "filter": flt, "dryRun": dry_run, "batchSize": batch_size,
            "replay": {"fromCheckpoint": from_checkpoint, "spec": spec},
            "requeue": {"spec": spec},
        }
        while True:
            result = await self._document("POST", "/v1/runs/bulk", body)
            yield result
            cursor = result.get("nextCursor")
            if dry_run or not isinstance(cursor, int):
                return
            body["cursor"] = cursor

    async def list_schedules(
        self, *, namespace: str | None = None, task: str | None = None
    ) -> list[dict[str, Any]]:
        """Cron schedules with their ``nextFireAt``, ``lastFireAt`` and ``lastError``."""
        _, data = await self._request(
            "GET", "/v1/schedules", params=_params(namespace=namespace, task=task))
        if not isinstance(data, dict) or not isinstance(data.get("schedules"), list):
            raise WaypostAPIError(200, "bad_response", "expected {'schedules': [...]}")
        return [s for s in data["schedules"] if isinstance(s, dict)]

    async def insights(
        self, *, namespace: str | None = None, task: str | None = None
    ) -> dict[str, Any]:
        """Failure patterns that hold (``items``: timeout loops, retry storms, checkpoint
        gaps, memory growth, each with evidence run ids) and memory sizing per task
        (``sizing``: measured peaks and a suggested limit)."""
        _, data = await self._request(
            "GET", "/v1/insights", params=_params(namespace=namespace, task=task))
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise WaypostAPIError(200, "bad_response", "expected {'items': [...]}")
        return data

    async def trigger_schedule(
        self, task: str, schedule: str, *, namespace: str = "default"
    ) -> RunDocument:
        """Fire a schedule once now (a fresh idempotency key); returns the new run."""
        path = (f"/v1/tasks/{_segment(namespace)}/{_segment(task)}/schedules/"
                f"{_segment(schedule)}/trigger")
        return await self._document("POST", path)

    async def wait(
        self,
        run_id: str,
        timeout: float | None = None,
        *,
        on_event: Callable[[RunEvent], Awaitable[None] | None] | None = None,
    ) -> RunDocument:
        """Follow the run's event stream until it reaches a terminal status, and return
        its document.

        ``on_event`` is called with each status, attempt and checkpoint event as it
        happens (from the run's start). Raises ``TimeoutError`` after ``timeout``
        seconds. A dropped stream is resumed where it left off.
        """
        last_status = ["unknown"]

        async def follow() -> RunDocument:
            run = await self.get_run(run_id)
            last_status[0] = str(run.get("status"))
            async for event in self.subscribe(run_id, kinds=WAIT_KINDS):
                if on_event is not None:
                    maybe = on_event(event)
                    if maybe is not None:
                        await maybe
                if event.get("kind") != "status":
                    continue
                last_status[0] = str(event.get("data", {}).get("status"))
                if last_status[0] in TERMINAL_STATUSES:
                    # A requeued run's history holds earlier final statuses: only the
                    # run's current status ends the wait.
                    run = await self.get_run(run_id)
                    if run.get("status") in TERMINAL_STATUSES:
                        return run
            raise WaypostAPIError(200, "bad_response", "the event stream ended")

        try:
            async with asyncio.timeout(timeout):
                return await follow()
        except TimeoutError:
            raise TimeoutError(
                f"run {run_id} did not finish within {timeout} s (last status: {last_status[0]})"
            ) from None

    def subscribe(
        self,
        run_id: str,
        *,
        last_event_id: str | None = None,
        kinds: Iterable[str] | None = None,
        checkpoint_data: bool = False,
    ) -> AsyncIterator[RunEvent]:
        """The live events of one run, as an async iterator of ``RunEvent`` documents
        (``id``, ``runId``, ``kind``, ``attempt``, ``ts``, ``data``).

        It starts at the run's first event, or after ``last_event_id``, and does not
        end by itself (a finished run can be requeued): break out of the loop. A
        dropped connection is resumed after the last event seen. With
        ``checkpoint_data``, checkpoint events carry the checkpoint's JSON in
        ``data["data"]`` (or ``data["superseded"]`` when the key was written again).
        """
        params = _params(kinds=",".join(kinds) if kinds else None,
                         checkpointData=1 if checkpoint_data else None)
        return self._events(f"/v1/runs/{_segment(run_id)}/events", params, last_event_id)

    def subscribe_all(
        self,
        *,
        namespace: str | None = None,
        task: str | None = None,
        kinds: Iterable[str] | None = None,
        last_event_id: str | None = None,
        checkpoint_data: bool = False,
    ) -> AsyncIterator[RunEvent]:
        """Events of every run (of a namespace, of a task) from now, or after
        ``last_event_id``; see :meth:`subscribe`."""
        params = _params(namespace=namespace, task=task,
                         kinds=",".join(kinds) if kinds else None,
                         checkpointData=1 if checkpoint_data else None)
        return self._events("/v1/events", params, last_event_id)

    async def _events(
        self, path: str, params: Mapping[str, str], last_event_id: str | None
    ) -> AsyncIterator[RunEvent]:
        async for message in self._stream(path, params, last_event_id):
            if isinstance(message.data, dict):
                yield message.data

    async def _stream(
        self, path: str, params: Mapping[str, str], last_event_id: str | None
    ) -> AsyncIterator[sse.Message]:
        """SSE messages of ``path``, reconnecting with Last-Event-ID after a drop (with
        backoff); ends after an ``end`` message."""
        failures = 0
        # No total timeout: a stream is meant to stay open; heartbeats arrive every
        # 15 s, so a read that waits a minute means the connection is dead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        while True:
            headers = dict(self._headers)
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                async with self._get_session().get(
                    f"{self.base_url}{path}", params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status >= 400:
                        text = await response.text()
                        raise error_from_response(response.status, text)
                    failures = 0
                    async for message in sse.messages(response):
                        if message is None:
                            continue
                        if message.event == "end":
                            return
                        if message.id is not None:
                            last_event_id = message.id
                        yield message
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                    TimeoutError) as exc:
                failures += 1
                if failures >= STREAM_RETRY.max_attempts:
                    raise CoordinatorUnavailable(f"GET {path}: {exc}") from None
            await self._sleep(STREAM_RETRY.delay_after(max(failures, 1)))

    async def logs(
        self,
        run_id: str,
        *,
        attempt: int | None = None,
        level: str | None = None,
        since: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of the run's log lines (oldest first) and the cursor after it.

        Each line has ``runId``, ``attempt``, ``step``, ``level``, ``ts``, ``message``
        and ``fields``. ``level`` is a minimum; ``since`` an ISO 8601 time.
        """
        params = _params(attempt=attempt, level=level, since=since, cursor=cursor, limit=limit)
        _, data = await self._request("GET", f"/v1/runs/{_segment(run_id)}/logs", params=params)
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise WaypostAPIError(200, "bad_response", "expected {'entries': [...]}")
        return [e for e in data["entries"] if isinstance(e, dict)], str(data.get("nextCursor"))

    async def follow_logs(
        self,
        run_id: str,
        *,
        attempt: int | None = None,
        level: str | None = None,
        cursor: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The run's log lines as they are written; ends when the run finishes."""
        params = _params(follow=1, attempt=attempt, level=level, cursor=cursor)
        async for message in self._stream(f"/v1/runs/{_segment(run_id)}/logs", params, None):
            if message.event == "log" and isinstance(message.data, dict):
                yield message.data


def _params(**values: str | int | None) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def _next_cursor(data: Any) -> int | None:
    cursor = data.get("nextCursor") if isinstance(data, dict) else None
    return cursor if isinstance(cursor, int) and not isinstance(cursor, bool) else None


def _runs(data: Any) -> list[RunDocument]:
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise WaypostAPIError(200, "bad_response", "expected {'runs': [...]}")
    return [run for run in data["runs"] if isinstance(run, dict)]
