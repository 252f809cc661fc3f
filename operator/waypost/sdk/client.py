"""``WaypostClient``: trigger and inspect runs through the coordinator's user API.

::

    async with WaypostClient("http://localhost:8080") as client:
        handle = await client.trigger("process-order", {"orderId": "o-1"})
        run = await client.wait(handle.id, timeout=60)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from waypost.sdk.decorator import Task
from waypost.sdk.errors import CoordinatorUnavailable, WaypostAPIError
from waypost.sdk.transport import NO_RETRY, SendOnce, Sleep, TransportError, request_json

__all__ = ["TERMINAL_STATUSES", "RunHandle", "WaypostAPIError", "WaypostClient"]

#: Run statuses after which nothing more happens to a run (unless requeued).
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "dead_lettered", "cancelled"})

RunDocument = dict[str, Any]


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
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._clock = clock
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
    ) -> tuple[int, Any]:
        # No automatic retries: a repeated trigger without an idempotency
        # key could enqueue the run twice. Callers decide.
        return await request_json(
            aiohttp_sender(self._get_session()),
            method,
            f"{self.base_url}{path}",
            headers=self._headers,
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
    ) -> RunHandle:
        """Enqueue a run of ``task`` (an id or a decorated task) with ``payload``.

        With ``idempotency_key``, triggering again returns the existing run
        (``created`` False) instead of enqueuing another.
        """
        task_id = task.definition.id if isinstance(task, Task) else task
        body: dict[str, Any] = {"payload": payload}
        if priority is not None:
            body["priority"] = priority
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        if concurrency_key is not None:
            body["concurrencyKey"] = concurrency_key
        path = f"/v1/tasks/{_segment(namespace)}/{_segment(task_id)}/trigger"
        status, data = await self._request("POST", path, body=body)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise WaypostAPIError(status, "bad_response", "trigger: answer has no run id")
        return RunHandle(id=data["id"], created=status == 201, run=data)

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
    ) -> tuple[list[RunDocument], int | None]:
        """One page of runs and the cursor of the next page (``None`` on the last)."""
        statuses = status if isinstance(status, str) or status is None else ",".join(status)
        params = _params(
            namespace=namespace, task=task, status=statuses, limit=limit, cursor=cursor
        )
        _, data = await self._request("GET", "/v1/runs", params=params)
        return _runs(data), _next_cursor(data)

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

    async def cancel(self, run_id: str) -> RunDocument:
        """Cancel a run; returns the updated run document."""
        return await self._document("POST", f"/v1/runs/{_segment(run_id)}/cancel")

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

    async def list_schedules(
        self, *, namespace: str | None = None, task: str | None = None
    ) -> list[dict[str, Any]]:
        """Cron schedules with their ``nextFireAt``, ``lastFireAt`` and ``lastError``."""
        _, data = await self._request(
            "GET", "/v1/schedules", params=_params(namespace=namespace, task=task))
        if not isinstance(data, dict) or not isinstance(data.get("schedules"), list):
            raise WaypostAPIError(200, "bad_response", "expected {'schedules': [...]}")
        return [s for s in data["schedules"] if isinstance(s, dict)]

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
        poll_interval: float = 0.5,
        on_update: Callable[[RunDocument], Awaitable[None] | None] | None = None,
    ) -> RunDocument:
        """Poll until the run reaches a terminal status and return its document.

        Raises ``TimeoutError`` after ``timeout`` seconds. A coordinator that
        is briefly unreachable does not end the wait. ``on_update`` is called
        with each document whose status or attempt changed.
        """
        deadline = None if timeout is None else self._clock() + timeout
        last_seen: tuple[Any, Any] | None = None
        while True:
            try:
                run = await self.get_run(run_id)
            except CoordinatorUnavailable:
                run = None
            except WaypostAPIError as exc:
                if exc.status < 500:
                    raise
                run = None
            if run is not None:
                seen = (run.get("status"), run.get("attempt"))
                if on_update is not None and seen != last_seen:
                    maybe = on_update(run)
                    if maybe is not None:
                        await maybe
                last_seen = seen
                if run.get("status") in TERMINAL_STATUSES:
                    return run
            if deadline is not None and self._clock() >= deadline:
                status = last_seen[0] if last_seen else "unknown"
                raise TimeoutError(
                    f"run {run_id} did not finish within {timeout} s (last status: {status})"
                )
            await self._sleep(poll_interval)


def _params(**values: str | int | None) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def _next_cursor(data: Any) -> int | None:
    cursor = data.get("nextCursor") if isinstance(data, dict) else None
    return cursor if isinstance(cursor, int) and not isinstance(cursor, bool) else None


def _runs(data: Any) -> list[RunDocument]:
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise WaypostAPIError(200, "bad_response", "expected {'runs': [...]}")
    return [run for run in data["runs"] if isinstance(run, dict)]
