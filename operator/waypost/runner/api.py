"""The runner's HTTP client for the coordinator's runner API.

Every call carries the attempt's bearer token. A 409 from any endpoint means
the attempt was superseded and raises
:class:`~waypost.sdk.errors.AttemptSuperseded`; transient failures are
retried with backoff (see :mod:`waypost.sdk.transport`).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from waypost.runner.http import StreamHTTP
from waypost.sdk import protocol, transport
from waypost.sdk.errors import AttemptSuperseded, WaypostAPIError
from waypost.sdk.retry import Retry
from waypost.sdk.transport import Sleep, request_json

# Every runner call is a single short transaction on the coordinator; a
# request that takes longer is stuck, and retrying it is the better bet.
DEFAULT_REQUEST_TIMEOUT = 10.0


class RunnerClient:
    """Client for ``/v1/runner/*``, scoped to one attempt by its token.

    Implements :class:`waypost.sdk.context.CoordinatorPort` and the extra
    calls the runner makes (fetch, logs, complete, fail).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        retry: Retry | None = None,
        sleep: Sleep = asyncio.sleep,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        http: StreamHTTP | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._retry = retry if retry is not None else transport.PATIENT
        self._sleep = sleep
        self._timeout = request_timeout
        self._http = http
        # A shared transport (a warm runner's, across attempts) is its owner's to close.
        self._owns_http = http is None

    async def __aenter__(self) -> RunnerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections if this client opened them."""
        if self._http is not None and self._owns_http:
            self._http.close()
        self._http = None

    def _get_http(self) -> StreamHTTP:
        if self._http is None:
            self._http = StreamHTTP(self.base_url, self._timeout)
            self._owns_http = True
        return self._http

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            _, data = await request_json(
                self._get_http().send,
                method,
                f"{self.base_url}{path}",
                headers=self._headers,
                json_body=body,
                retry=self._retry,
                sleep=self._sleep,
            )
        except WaypostAPIError as exc:
            if exc.status == 409:
                raise AttemptSuperseded(exc.message or "attempt superseded") from None
            raise
        return data

    async def get_attempt(self) -> protocol.AttemptDocument:
        """``GET /v1/runner/attempt``: the attempt document.

        Raises :class:`~waypost.sdk.protocol.ProtocolError` when the
        coordinator's answer is not a valid document.
        """
        answer = await self._call("GET", protocol.PATH_ATTEMPT)
        return protocol.decode(protocol.AttemptDocument, answer)

    async def write_checkpoint(self, key: str, data: Any) -> None:
        """``POST /v1/runner/checkpoints``."""
        await self._send(protocol.PATH_CHECKPOINTS, protocol.CheckpointBody(key=key, data=data))

    async def heartbeat(self) -> bool:
        """``POST /v1/runner/heartbeat``; True when the run was cancelled."""
        answer = await self._call("POST", protocol.PATH_HEARTBEAT, {})
        try:
            return protocol.decode(protocol.HeartbeatAnswer, answer).cancelled
        except protocol.ProtocolError as exc:
            raise WaypostAPIError(200, "bad_answer", f"heartbeat answer: {exc}") from None

    async def send_logs(self, entries: list[protocol.LogLine]) -> None:
        """``POST /v1/runner/logs`` with a batch of entries."""
        await self._send(protocol.PATH_LOGS, protocol.LogsBody(entries=entries))

    async def complete(self, result: Any, usage: protocol.Usage | None = None) -> str | None:
        """``POST /v1/runner/complete``; returns the run status the coordinator reports."""
        answer = await self._send_with_usage(
            protocol.PATH_COMPLETE, protocol.CompleteBody(result=result, usage=usage),
            protocol.CompleteBody(result=result))
        return _status(answer)

    async def fail(self, error: protocol.FailureReport,
                   usage: protocol.Usage | None = None) -> str | None:
        """``POST /v1/runner/fail``; returns ``retrying``, ``dead_lettered`` or ``failed``."""
        answer = await self._send_with_usage(
            protocol.PATH_FAIL, protocol.FailBody(error=error, usage=usage),
            protocol.FailBody(error=error))
        return _status(answer)

    async def wait(self, body: protocol.WaitBody) -> protocol.WaitAnswer:
        """``POST /v1/runner/wait``: suspend on a wait, or its outcome when it is over."""
        answer = await self._send(protocol.PATH_WAIT, body)
        return protocol.decode(protocol.WaitAnswer, answer)

    async def create_token(self, body: protocol.TokenBody) -> protocol.TokenAnswer:
        """``POST /v1/runner/tokens``: a wait token of this run."""
        answer = await self._send(protocol.PATH_TOKENS, body)
        return protocol.decode(protocol.TokenAnswer, answer)
    async def _send_with_usage(self, path: str, body: Any, without: Any) -> Any:
        # Without a report the body has no usage field at all: what the previous
        # release's coordinator accepts.
        plain = protocol.encode(without)
        plain.pop("usage", None)
        if body == without:
            return await self._call("POST", path, plain)
        try:
            return await self._send(path, body)
        except WaypostAPIError as exc:
            # A coordinator of the previous release (rolling upgrade) refuses the
            # field it does not know: the outcome matters, the report does not.
            if exc.status != 400 or "usage" not in (exc.message or ""):
                raise
            return await self._call("POST", path, plain)

    async def cancelled(self, message: str) -> str | None:
        """``POST /v1/runner/cancelled``: the cancelled run's task stopped."""
        answer = await self._send(protocol.PATH_CANCELLED, protocol.CancelledBody(message=message))
        return _status(answer)

    async def _send(self, path: str, body: Any) -> Any:
        return await self._call("POST", path, protocol.encode(body))


def _status(answer: Any) -> str | None:
    # The outcome is recorded whatever the answer says; its status is for the log.
    try:
        return protocol.decode(protocol.OutcomeAnswer, answer).status
    except protocol.ProtocolError:
        return None
