"""The context a task function receives: checkpoints, steps, logs, heartbeats.

Async task functions get a :class:`Context`; sync ones run in a worker thread
and get a :class:`SyncContext` with the same attributes and blocking methods.

The context talks to the coordinator through a :class:`CoordinatorPort`
(the runner's HTTP client in production, an in-memory fake in tests), and
learns that the attempt must stop through an :class:`AttemptControl` shared
with the runner.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from waypost.sdk import logger, protocol, serialization
from waypost.sdk.errors import (
    AttemptSuperseded,
    CheckpointTooLarge,
    CoordinatorUnavailable,
    RunCancelled,
    WaypostAPIError,
)
from waypost.sdk.logger import TaskLogger

__all__ = [
    "AttemptControl",
    "Checkpoint",
    "Context",
    "CoordinatorPort",
    "Limits",
    "StopReason",
    "SyncContext",
]

_log = logging.getLogger("waypost.sdk")

T = TypeVar("T")

MAX_KEY_LENGTH = protocol.MAX_KEY_LENGTH


@dataclass(frozen=True)
class Checkpoint:
    """A stored checkpoint: its key and its JSON data."""

    key: str
    data: Any


Limits = protocol.AttemptLimits
"""Size limits announced by the coordinator for this attempt (the attempt
document's ``limits``)."""


class CoordinatorPort(Protocol):
    """What a context needs from the coordinator."""

    async def write_checkpoint(self, key: str, data: Any) -> None:
        """Store a checkpoint for the current attempt (raises AttemptSuperseded on 409)."""
        ...

    async def heartbeat(self) -> bool:
        """Extend the attempt's lease; return True when the run was cancelled."""
        ...


class StopReason(enum.StrEnum):
    """Why an attempt was told to stop before its task function returned."""

    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


class AttemptControl:
    """The stop signal shared by the runner and the context of one attempt.

    Whoever first learns that the attempt must stop (a 409 on any call, a
    heartbeat answering ``cancelled``) calls :meth:`stop`; the runner waits
    on :meth:`wait` and the context refuses further writes.
    """

    def __init__(self) -> None:
        self._reason: StopReason | None = None
        self._event = asyncio.Event()

    @property
    def reason(self) -> StopReason | None:
        """Why the attempt was stopped, or ``None`` while it may go on."""
        return self._reason

    def stop(self, reason: StopReason) -> None:
        """Signal that the attempt must stop; the first reason given wins."""
        if self._reason is None:
            self._reason = reason
            self._event.set()

    async def wait(self) -> StopReason:
        """Wait until the attempt is told to stop and return why."""
        await self._event.wait()
        assert self._reason is not None
        return self._reason

    def raise_if_stopped(self) -> None:
        """Raise the signal exception matching the stop reason, if stopped."""
        if self._reason is StopReason.SUPERSEDED:
            raise AttemptSuperseded("this attempt is no longer current")
        if self._reason is StopReason.CANCELLED:
            raise RunCancelled("the run was cancelled")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"checkpoint key: expected a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(
            f"checkpoint key: {len(key)} characters, over the limit of {MAX_KEY_LENGTH}"
        )


class Context:
    """What an async task function receives as ``ctx``.

    Attributes: ``run_id``, ``attempt`` (1 for the first attempt),
    ``payload``, ``traceparent`` (W3C trace context to pass on to outgoing
    calls), ``log`` (structured logger), ``checkpoints`` and
    ``last_checkpoint``.
    """

    def __init__(
        self,
        *,
        run_id: str,
        attempt: int,
        payload: Any,
        port: CoordinatorPort,
        checkpoints: Iterable[Checkpoint] = (),
        limits: Limits | None = None,
        traceparent: str = "",
        log: TaskLogger | None = None,
        control: AttemptControl | None = None,
    ) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.payload = payload
        self.traceparent = traceparent
        self.limits = limits if limits is not None else Limits()
        self.log = log if log is not None else TaskLogger(run_id, attempt)
        self.control = control if control is not None else AttemptControl()
        self._port = port
        self._checkpoints: dict[str, Any] = {}
        for checkpoint in checkpoints:
            self._remember(checkpoint.key, checkpoint.data)

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled: stop soon (return or raise).

        For loops that call no other SDK method; ``step``, ``checkpoint`` and
        ``heartbeat`` raise :class:`~waypost.sdk.errors.RunCancelled` instead.
        The runner learns of a cancellation from its heartbeats; after the
        Task's ``spec.cancellation.gracePeriodSeconds`` the process or Pod is
        killed.
        """
        return self.control.reason is StopReason.CANCELLED

    @property
    def checkpoints(self) -> Mapping[str, Any]:
        """Read-only mapping of checkpoint key to data, in write order."""
        return MappingProxyType(self._checkpoints)

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The most recently written checkpoint, or ``None`` when there is none."""
        if not self._checkpoints:
            return None
        key = next(reversed(self._checkpoints))
        return Checkpoint(key, self._checkpoints[key])

    def idempotency_key(self, suffix: str) -> str:
        """A key for an outgoing call, the same on every attempt of this run.

        Pass it to APIs that deduplicate requests (payments, emails) so a
        retried attempt that repeats the call has no second effect. Different
        suffixes give different keys; different runs never share one.
        """
        if not isinstance(suffix, str) or not suffix:
            raise ValueError(f"idempotency_key suffix: expected a non-empty string, got {suffix!r}")
        digest = hashlib.sha256(f"{self.run_id}\x00{suffix}".encode()).hexdigest()
        return f"wp-{digest[:40]}"

    async def step(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once per run and checkpoint its result.

        If a checkpoint named ``key`` exists (an earlier attempt finished this
        step), return its data without calling ``fn``. Otherwise call ``fn``
        (sync or async), store its JSON-encoded result under ``key`` and
        return the result as decoded from JSON, so every attempt sees the
        same value. Sync functions run inline on the event loop; wrap
        blocking work in ``asyncio.to_thread``.
        """
        _check_key(key)
        self.control.raise_if_stopped()
        if key in self._checkpoints:
            return self._checkpoints[key]
        token = logger.current_step.set(key)
        try:
            result: Any = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        finally:
            logger.current_step.reset(token)
        decoded, size = self._prepare(key, result, what=f"result of step {key!r}")
        await self._write(key, decoded, size)
        return decoded

    async def checkpoint(self, key: str, data: Any) -> None:
        """Store ``data`` (JSON) under ``key``; a later attempt finds it in ``checkpoints``."""
        _check_key(key)
        decoded, size = self._prepare(key, data, what=f"checkpoint {key!r}")
        await self._write(key, decoded, size)

    async def heartbeat(self) -> None:
        """Tell the coordinator this attempt is alive.

        The runner already sends heartbeats in the background; call this
        during long stretches that block the event loop (or, from a sync
        task, that never return to the SDK). Raises
        :class:`~waypost.sdk.errors.RunCancelled` if the run was cancelled.
        """
        self.control.raise_if_stopped()
        try:
            cancelled = await self._port.heartbeat()
        except AttemptSuperseded:
            self.control.stop(StopReason.SUPERSEDED)
            raise
        except (CoordinatorUnavailable, WaypostAPIError) as exc:
            # A missed beat is not fatal: the lease allows several, and the
            # background loop keeps trying.
            _log.warning("heartbeat failed", extra={"error": str(exc)})
            return
        if cancelled:
            self.control.stop(StopReason.CANCELLED)
            self.control.raise_if_stopped()

    def _prepare(self, key: str, data: Any, *, what: str) -> tuple[Any, int]:
        decoded, size = serialization.roundtrip(data, what=what)
        if size > self.limits.checkpoint_bytes:
            raise CheckpointTooLarge(key, size, self.limits.checkpoint_bytes)
        return decoded, size

    async def _write(self, key: str, decoded: Any, size: int) -> None:
        self.control.raise_if_stopped()
        try:
            await self._port.write_checkpoint(key, decoded)
        except AttemptSuperseded:
            self.control.stop(StopReason.SUPERSEDED)
            raise
        except WaypostAPIError as exc:
            if exc.status == 413:
                raise CheckpointTooLarge(key, size, self.limits.checkpoint_bytes) from exc
            raise
        self._remember(key, decoded)

    def _remember(self, key: str, data: Any) -> None:
        # Re-writing a key moves it to the end: last_checkpoint is the latest write.
        self._checkpoints.pop(key, None)
        self._checkpoints[key] = data


class SyncContext:
    """What a sync task function receives as ``ctx``.

    Same attributes as :class:`Context`; ``step``, ``checkpoint`` and
    ``heartbeat`` block. The task runs in a worker thread and these methods
    hand the coordinator calls to the runner's event loop.
    """

    def __init__(self, context: Context, loop: asyncio.AbstractEventLoop) -> None:
        self._context = context
        self._loop = loop

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._context.run_id

    @property
    def attempt(self) -> int:
        """The attempt number, 1 for the first."""
        return self._context.attempt

    @property
    def payload(self) -> Any:
        """The run's payload."""
        return self._context.payload

    @property
    def traceparent(self) -> str:
        """W3C trace context of the run, to pass on to outgoing calls."""
        return self._context.traceparent

    @property
    def log(self) -> TaskLogger:
        """The structured logger of this attempt."""
        return self._context.log

    @property
    def limits(self) -> Limits:
        """Size limits for checkpoints and results."""
        return self._context.limits

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled (see :attr:`Context.cancelled`)."""
        return self._context.cancelled

    @property
    def checkpoints(self) -> Mapping[str, Any]:
        """Read-only mapping of checkpoint key to data, in write order."""
        return self._context.checkpoints

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The most recently written checkpoint, or ``None``."""
        return self._context.last_checkpoint

    def idempotency_key(self, suffix: str) -> str:
        """A key for an outgoing call, the same on every attempt of this run."""
        return self._context.idempotency_key(suffix)

    def step(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` once per run and checkpoint its result (see :meth:`Context.step`).

        ``fn`` runs in the task's worker thread; an async ``fn`` runs on the
        runner's event loop.
        """
        ctx = self._context
        _check_key(key)
        ctx.control.raise_if_stopped()
        if key in ctx.checkpoints:
            return ctx.checkpoints[key]
        token = logger.current_step.set(key)
        try:
            result: Any = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._call(_await(result))
        finally:
            logger.current_step.reset(token)
        decoded, size = ctx._prepare(key, result, what=f"result of step {key!r}")
        self._call(ctx._write(key, decoded, size))
        return decoded

    def checkpoint(self, key: str, data: Any) -> None:
        """Store ``data`` under ``key`` (see :meth:`Context.checkpoint`)."""
        self._call(self._context.checkpoint(key, data))

    def heartbeat(self) -> None:
        """Tell the coordinator this attempt is alive (see :meth:`Context.heartbeat`)."""
        self._call(self._context.heartbeat())

    def _call(self, coro: Awaitable[T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            if inspect.iscoroutine(coro):
                coro.close()
            raise RuntimeError(
                "SyncContext methods block; call them from the sync task's worker thread, "
                "not from the event loop"
            )
        self._context.control.raise_if_stopped()
        future = asyncio.run_coroutine_threadsafe(_await(coro), self._loop)
        return future.result()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
