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
import contextlib
import enum
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from waypost.sdk import durations, logger, protocol, serialization
from waypost.sdk.errors import (
    AttemptSuperseded,
    CheckpointTooLarge,
    ChildRunFailed,
    CoordinatorUnavailable,
    RunCancelled,
    Suspended,
    WaitTimeout,
    WaypostAPIError,
)
from waypost.sdk.logger import TaskLogger

__all__ = [
    "AttemptControl",
    "Checkpoint",
    "ChildRun",
    "Context",
    "CoordinatorPort",
    "Limits",
    "StepTracer",
    "StopReason",
    "SyncContext",
    "WaitToken",
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


@dataclass(frozen=True)
class WaitToken:
    """A wait token made by :meth:`Context.create_token`.

    Hand ``id`` to whoever completes it (``waypost tokens complete ID``, the API,
    ``WaypostClient.complete_token``), or ``url`` to a webhook: a ``POST`` of a
    JSON body to it completes the token with that body (the URL holds the token's
    secret). ``timeout_at`` is when it times out, if ever.
    """

    id: str
    url: str
    timeout_at: datetime | None = None


@dataclass(frozen=True)
class ChildRun:
    """How a child run of :meth:`Context.trigger_and_wait` ended."""

    id: str
    task: str
    status: str
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when the child succeeded (``result`` is its return value)."""
        return self.status == "succeeded"


class CoordinatorPort(Protocol):
    """What a context needs from the coordinator."""

    async def write_checkpoint(self, key: str, data: Any) -> None:
        """Store a checkpoint for the current attempt (raises AttemptSuperseded on 409)."""
        ...

    async def heartbeat(self) -> bool:
        """Extend the attempt's lease; return True when the run was cancelled."""
        ...

    async def wait(self, body: protocol.WaitBody) -> protocol.WaitAnswer:
        """Suspend the run on a wait, or get its outcome when it is over already."""
        ...

    async def create_token(self, body: protocol.TokenBody) -> protocol.TokenAnswer:
        """Create a wait token for this run (the same key returns the same token)."""
        ...


class StepTracer(Protocol):
    """Where a context reports its steps for tracing (the runner's OpenTelemetry
    spans when export is on; :class:`UntracedSteps` otherwise)."""

    def traceparent(self) -> str:
        """W3C ``traceparent`` of the current span: the step's inside a step."""
        ...

    def step(self, key: str) -> contextlib.AbstractContextManager[None]:
        """A span around a step that runs (its function and its checkpoint write)."""
        ...

    def skipped(self, key: str) -> None:
        """A step that did not run: its checkpoint existed from an earlier attempt."""
        ...

    def checkpoint(self, key: str, size: int) -> None:
        """A checkpoint was written (``size`` bytes of JSON)."""
        ...


class UntracedSteps:
    """No spans: ``traceparent`` is the attempt's, as the coordinator gave it."""

    def __init__(self, traceparent: str = "") -> None:
        self._traceparent = traceparent

    def traceparent(self) -> str:
        return self._traceparent

    def step(self, key: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def skipped(self, key: str) -> None:
        pass

    def checkpoint(self, key: str, size: int) -> None:
        pass


class StopReason(enum.StrEnum):
    """Why an attempt was told to stop before its task function returned."""

    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"  # the run waits; the attempt ends without a result


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
        if self._reason is StopReason.SUSPENDED:
            raise Suspended("the run is suspended; this attempt ends")


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
        suspend_threshold: float = 5.0,
        flush_logs: Callable[[], Awaitable[bool]] | None = None,
        tracer: StepTracer | None = None,
    ) -> None:
        self.run_id = run_id
        self.suspend_threshold = suspend_threshold
        # Lines logged before a suspension are shipped first (the attempt's
        # credential is no longer current once it suspends).
        self.flush_logs = flush_logs
        self._auto_keys: dict[str, int] = {}
        self.attempt = attempt
        self.payload = payload
        self.tracer: StepTracer = tracer if tracer is not None else UntracedSteps(traceparent)
        self.limits = limits if limits is not None else Limits()
        self.log = log if log is not None else TaskLogger(run_id, attempt)
        self.control = control if control is not None else AttemptControl()
        self._port = port
        self._checkpoints: dict[str, Any] = {}
        for checkpoint in checkpoints:
            self._remember(checkpoint.key, checkpoint.data)

    @property
    def traceparent(self) -> str:
        """W3C trace context to pass on to outgoing calls (the ``traceparent``
        header): inside ``ctx.step`` it names the step's span, elsewhere the
        attempt's, so the callee's spans join the run's trace where they belong."""
        return self.tracer.traceparent()

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
            self.tracer.skipped(key)
            return self._checkpoints[key]
        with self.tracer.step(key):
            token = logger.current_step.set(key)
            try:
                result: Any = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            finally:
                logger.current_step.reset(token)
            decoded, size = self._prepare(key, result, what=f"result of step {key!r}")
            await self._write(key, decoded, size)
            self.tracer.checkpoint(key, size)
        return decoded

    async def checkpoint(self, key: str, data: Any) -> None:
        """Store ``data`` (JSON) under ``key``; a later attempt finds it in ``checkpoints``."""
        _check_key(key)
        decoded, size = self._prepare(key, data, what=f"checkpoint {key!r}")
        await self._write(key, decoded, size)
        self.tracer.checkpoint(key, size)

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

    # --- durable waits ---------------------------------------------------------------

    def _next_key(self, kind: str) -> str:
        # Calls without a key are numbered in call order per kind ("wait-1",
        # "child-2"): the same on every attempt as long as the code calls them in
        # the same order. Pass key= where the order can change.
        self._auto_keys[kind] = self._auto_keys.get(kind, 0) + 1
        return f"{kind}-{self._auto_keys[kind]}"

    async def wait_for(self, duration: durations.DurationLike, *, key: str | None = None) -> None:
        """Wait ``duration`` (seconds, a ``timedelta`` or text like ``"10m"``).

        Shorter than the suspend threshold (5 s by default, the coordinator's
        ``WAYPOST_SUSPEND_THRESHOLD``) it sleeps in this attempt. Longer, the run
        *suspends*: this attempt ends (its process or Pod exits, its concurrency
        slot is free, the run shows ``waiting``), and when the time has come a new
        attempt runs the task from the top, where this call returns at once (the
        wait is recorded under ``key`` like a ``step``). Not a retry attempt.
        """
        seconds = durations.parse_duration(duration, "wait_for duration")
        key = key if key is not None else self._next_key("wait")
        _check_key(key)
        if key in self._checkpoints:
            return
        if seconds < self.suspend_threshold:
            self.control.raise_if_stopped()
            await asyncio.sleep(seconds)
            return
        await self._wait(protocol.WaitBody(key=key, kind="sleep", seconds=seconds))

    async def wait_until(self, when: datetime, *, key: str | None = None) -> None:
        """Wait until ``when`` (a timezone-aware datetime); see :meth:`wait_for`."""
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise ValueError(f"wait_until: expected a timezone-aware datetime, got {when!r}")
        key = key if key is not None else self._next_key("wait")
        _check_key(key)
        if key in self._checkpoints:
            return
        remaining = (when - datetime.now(UTC)).total_seconds()
        if remaining > durations.MAX_DURATION_SECONDS:
            raise ValueError(f"wait_until: {when.isoformat()} is more than a year away")
        if remaining < self.suspend_threshold:
            self.control.raise_if_stopped()
            await asyncio.sleep(max(0.0, remaining))
            return
        await self._wait(protocol.WaitBody(key=key, kind="sleep", until=when))

    async def create_token(
        self, *, timeout: durations.DurationLike | None = None,
        idempotency_key: str | None = None,
    ) -> WaitToken:
        """Create a wait token for :meth:`wait_for_token`.

        The same ``idempotency_key`` in this run returns the same token (without
        one, calls are numbered in call order, so a retried attempt gets the token
        its predecessor made). ``timeout``: seconds, ``timedelta`` or text; after
        it, the token can no longer be completed and waiting on it raises
        :class:`~waypost.sdk.errors.WaitTimeout`.
        """
        seconds = None if timeout is None else durations.parse_duration(timeout,
                                                                         "token timeout")
        if seconds is not None and seconds <= 0:
            raise ValueError("token timeout must be more than 0 seconds")
        key = idempotency_key if idempotency_key is not None else self._next_key("token")
        _check_key(key)
        self.control.raise_if_stopped()
        answer = await self._call_port(self._port.create_token(
            protocol.TokenBody(key=key, timeout_seconds=seconds)))
        return WaitToken(id=answer.id, url=answer.url, timeout_at=answer.timeout_at)

    async def wait_for_token(self, token: WaitToken | str, *, key: str | None = None) -> Any:
        """Wait until the token is completed and return the data it was completed with.

        The run suspends meanwhile (see :meth:`wait_for`). Raises
        :class:`~waypost.sdk.errors.WaitTimeout` when the token timed out first.
        ``key`` defaults to ``token:<id>``.
        """
        token_id = token.id if isinstance(token, WaitToken) else str(token)
        key = key if key is not None else f"token:{token_id}"
        outcome = await self._wait(protocol.WaitBody(key=key, kind="token", token_id=token_id))
        if not isinstance(outcome, dict) or not outcome.get("ok"):
            raise WaitTimeout(token_id)
        return outcome.get("data")

    async def trigger_and_wait(
        self, task: Any, payload: Any = None, *, key: str | None = None,
        priority: int | None = None, concurrency_key: str | None = None,
        raise_on_failure: bool = False,
    ) -> ChildRun:
        """Start a child run of ``task`` (an id or an ``@task`` function) and wait
        until it ends; see :meth:`batch_trigger_and_wait`."""
        (child,) = await self.batch_trigger_and_wait(
            task, [payload], key=key if key is not None else self._next_key("child"),
            priority=priority, concurrency_key=concurrency_key,
            raise_on_failure=raise_on_failure)
        return child

    async def batch_trigger_and_wait(
        self, task: Any, payloads: Sequence[Any], *, key: str | None = None,
        priority: int | None = None, concurrency_key: str | None = None,
        raise_on_failure: bool = False,
    ) -> list[ChildRun]:
        """Start one child run of ``task`` per payload (at most 1,000) and suspend
        until all of them ended; return how each ended, in order.

        The call is a step: on a retry of this run the same children are found
        again (their idempotency keys are made of this run's id, ``key`` and the
        index), never started twice. A failed, dead-lettered, cancelled or expired
        child is returned with its ``error`` (``ok`` False); with
        ``raise_on_failure`` the first such child raises
        :class:`~waypost.sdk.errors.ChildRunFailed` instead. Children wait in their
        own task's queue, under its limits; this run holds no slot meanwhile.
        """
        definition = getattr(task, "definition", None)
        task_id = str(definition.id) if definition is not None else str(task)
        items = list(payloads)
        if not items or len(items) > protocol.MAX_CHILDREN:
            raise ValueError(f"batch_trigger_and_wait: 1 to {protocol.MAX_CHILDREN} payloads, "
                             f"got {len(items)}")
        key = key if key is not None else self._next_key("children")
        for i, item in enumerate(items):
            serialization.roundtrip(item, what=f"payload {i} of child run")
        outcome = await self._wait(protocol.WaitBody(
            key=key, kind="children", task=task_id,
            children=[protocol.WaitChild(payload=item, priority=priority,
                                         concurrency_key=concurrency_key) for item in items]))
        runs = [ChildRun(id=r["id"], task=r["task"], status=r["status"], result=r.get("result"),
                         error=r.get("error")) for r in (outcome or {}).get("runs", [])]
        if raise_on_failure:
            for child in runs:
                if not child.ok:
                    message = (child.error or {}).get("message", "")
                    raise ChildRunFailed(child, child.status,
                                         f"child run {child.id} of {child.task} ended "
                                         f"{child.status}: {message}")
        return runs

    async def _wait(self, body: protocol.WaitBody) -> Any:
        """Pass a wait that ended, or ask the coordinator: the run suspends
        (:class:`Suspended` ends the attempt) or the outcome comes back at once."""
        _check_key(body.key)
        if body.key in self._checkpoints:
            return self._checkpoints[body.key]
        self.control.raise_if_stopped()
        if self.flush_logs is not None:
            await self.flush_logs()
        answer = await self._call_port(self._port.wait(body))
        if answer.suspended:
            self.control.stop(StopReason.SUSPENDED)
            raise Suspended(f"the run waits at {body.key!r}; this attempt ends")
        self._remember(body.key, answer.data)
        return answer.data

    async def _call_port(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except AttemptSuperseded:
            self.control.stop(StopReason.SUPERSEDED)
            raise

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
        """W3C trace context to pass on to outgoing calls (the current step's span
        inside ``ctx.step``; see :attr:`Context.traceparent`)."""
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
            ctx.tracer.skipped(key)
            return ctx.checkpoints[key]
        with ctx.tracer.step(key):
            token = logger.current_step.set(key)
            try:
                result: Any = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = self._call(_await(result))
            finally:
                logger.current_step.reset(token)
            decoded, size = ctx._prepare(key, result, what=f"result of step {key!r}")
            self._call(ctx._write(key, decoded, size))
            ctx.tracer.checkpoint(key, size)
        return decoded

    def checkpoint(self, key: str, data: Any) -> None:
        """Store ``data`` under ``key`` (see :meth:`Context.checkpoint`)."""
        ctx = self._context
        _check_key(key)
        decoded, size = ctx._prepare(key, data, what=f"checkpoint {key!r}")
        self._call(ctx._write(key, decoded, size))
        # Here, not on the event loop: this thread's current span is the step's.
        ctx.tracer.checkpoint(key, size)

    def wait_for(self, duration: durations.DurationLike, *, key: str | None = None) -> None:
        """Wait, suspending the run when long (see :meth:`Context.wait_for`)."""
        self._call(self._context.wait_for(duration, key=key))

    def wait_until(self, when: datetime, *, key: str | None = None) -> None:
        """Wait until ``when`` (see :meth:`Context.wait_until`)."""
        self._call(self._context.wait_until(when, key=key))

    def create_token(self, *, timeout: durations.DurationLike | None = None,
                     idempotency_key: str | None = None) -> WaitToken:
        """Create a wait token (see :meth:`Context.create_token`)."""
        return self._call(self._context.create_token(timeout=timeout,
                                                     idempotency_key=idempotency_key))

    def wait_for_token(self, token: WaitToken | str, *, key: str | None = None) -> Any:
        """Wait for a token's data (see :meth:`Context.wait_for_token`)."""
        return self._call(self._context.wait_for_token(token, key=key))

    def trigger_and_wait(self, task: Any, payload: Any = None, **options: Any) -> ChildRun:
        """Start a child run and wait for it (see :meth:`Context.trigger_and_wait`)."""
        return self._call(self._context.trigger_and_wait(task, payload, **options))

    def batch_trigger_and_wait(self, task: Any, payloads: Sequence[Any],
                               **options: Any) -> list[ChildRun]:
        """Start child runs and wait for all (see :meth:`Context.batch_trigger_and_wait`)."""
        return self._call(self._context.batch_trigger_and_wait(task, payloads, **options))

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
