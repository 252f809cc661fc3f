"""Running one attempt: the part of the runner shared by cold and warm mode.

:func:`run_attempt` takes an already fetched :class:`AttemptDocument` and a
client, runs the task function, and reports the outcome. It does no
process-level setup (environment, ``sys.path``, logging, exit codes): cold
mode wraps it in :mod:`waypost.runner.main`, warm mode will call it once per
assignment in a long-lived process.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import inspect
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from waypost.runner import loader, memory, tracing
from waypost.sdk import protocol, serialization
from waypost.sdk.context import (
    AttemptControl,
    Checkpoint,
    Context,
    CoordinatorPort,
    StopReason,
    SyncContext,
)
from waypost.sdk.errors import (
    AbortRun,
    AttemptSuperseded,
    CheckpointTooLarge,
    CoordinatorUnavailable,
    NotJSONSerializable,
    ResultTooLarge,
    RunCancelled,
    WaypostAPIError,
)
from waypost.sdk.logger import TaskLogger
from waypost.sdk.transport import Sleep

_log = logging.getLogger("waypost.runner")

# Errors that would recur on every retry: retrying only burns attempts.
NON_RETRYABLE: tuple[type[BaseException], ...] = (
    AbortRun,
    CheckpointTooLarge,
    ResultTooLarge,
    NotJSONSerializable,
)

# Bound what an error report can weigh, so that a huge message or a deep
# recursion traceback cannot itself be refused as too large.
MAX_MESSAGE_CHARS = 8 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024

DEFAULT_LOG_FLUSH_INTERVAL = 1.0
# How long a stopped task gets to unwind after cancellation before the
# runner gives up waiting for it (a sync task's thread cannot be cancelled).
DEFAULT_STOP_GRACE = 5.0
# Kubernetes allows 30 s between SIGTERM and SIGKILL by default; stay well inside.
SHUTDOWN_FLUSH_TIMEOUT = 2.0


def context_checkpoints(doc: protocol.AttemptDocument) -> tuple[Checkpoint, ...]:
    """The document's checkpoints as the task sees them (key and data)."""
    return tuple(Checkpoint(c.key, c.data) for c in doc.checkpoints)


class Outcome(enum.StrEnum):
    """How an attempt ended, from the runner's point of view."""

    SUCCEEDED = "succeeded"  # result reported
    FAILED = "failed"  # the task raised; failure reported
    SUPERSEDED = "superseded"  # 409: another attempt is current; nothing more reported
    CANCELLED = "cancelled"  # the run was cancelled; the task stopped and that was reported
    SUSPENDED = "suspended"  # the task waits: the run suspended; nothing more to report
    CONFIG_ERROR = "config_error"  # the entrypoint could not be loaded; reported as failure
    UNREPORTED = "unreported"  # the outcome could not be delivered to the coordinator


@dataclass(frozen=True)
class AttemptResult:
    """What :func:`run_attempt` did: the outcome and the coordinator's answer."""

    outcome: Outcome
    run_status: str | None = None
    error_name: str | None = None


class RunnerPort(CoordinatorPort, Protocol):
    """The coordinator calls one attempt needs (see :class:`~waypost.runner.api.RunnerClient`)."""

    async def send_logs(self, entries: list[protocol.LogLine]) -> None: ...

    async def complete(self, result: Any, usage: protocol.Usage | None = None) -> str | None: ...

    async def fail(self, error: protocol.FailureReport,
                   usage: protocol.Usage | None = None) -> str | None: ...

    async def cancelled(self, message: str) -> str | None: ...


Loader = Callable[[str], Callable[..., Any]]


def error_report(
    exc: BaseException, *, name: str | None = None, details: str | None = None,
    retryable: bool | None = None,
) -> protocol.FailureReport:
    """The ``error`` body of ``POST /v1/runner/fail`` for an exception."""
    tb = details if details is not None else _user_traceback(exc)
    if len(tb) > MAX_TRACEBACK_CHARS:
        # The head says where it started, the tail where it failed: keep both.
        half = MAX_TRACEBACK_CHARS // 2
        tb = tb[:half] + "\n... (traceback truncated) ...\n" + tb[-half:]
    message = str(exc)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "... (truncated)"
    return protocol.FailureReport(
        type=protocol.FailureType.ERROR,
        name=name or type(exc).__name__,
        message=message,
        traceback=tb,
        retryable=not isinstance(exc, NON_RETRYABLE) if retryable is None else retryable,
    )


def _user_traceback(exc: BaseException) -> str:
    # The outermost frames are the runner calling the task; the reader wants
    # to start at their own code.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


async def run_attempt(
    doc: protocol.AttemptDocument,
    api: RunnerPort,
    *,
    load: Loader = loader.load_entrypoint,
    sleep: Sleep = asyncio.sleep,
    log_flush_interval: float = DEFAULT_LOG_FLUSH_INTERVAL,
    stop_grace: float = DEFAULT_STOP_GRACE,
    log_stream: TextIO | None = None,
) -> AttemptResult:
    """Run one attempt to the end and report its outcome to the coordinator.

    Never raises for anything the task does; the outcome says what happened.
    With tracing on, the attempt and its steps are spans (waypost.runner.tracing),
    exported before this returns.
    """
    trace = tracing.start(doc)
    try:
        result = await _run_attempt(doc, api, memory.MeasuredSteps(trace.steps), load=load,
                                    sleep=sleep,
                                    log_flush_interval=log_flush_interval,
                                    stop_grace=stop_grace, log_stream=log_stream)
    except BaseException as exc:
        trace.end(type(exc).__name__, failed=True)
        raise
    trace.end(str(result.outcome), failed=result.outcome is not Outcome.SUCCEEDED)
    await trace.flush()
    return result


async def _run_attempt(
    doc: protocol.AttemptDocument,
    api: RunnerPort,
    steps: memory.MeasuredSteps,
    *,
    load: Loader,
    sleep: Sleep,
    log_flush_interval: float,
    stop_grace: float,
    log_stream: TextIO | None,
) -> AttemptResult:
    fields = {"run_id": doc.run_id, "attempt": doc.attempt, "task": doc.task.name}
    try:
        fn = load(doc.task.entrypoint)
    except loader.EntrypointError as load_error:
        _log.error("cannot load entrypoint", extra={**fields, "error": str(load_error)})
        # Importing the same image again will fail the same way: not retryable.
        report = error_report(
            load_error, name="EntrypointError", details=load_error.details or str(load_error),
            retryable=False,
        )
        result = await _report(api, fields, failure=report)
        if result.outcome is Outcome.SUPERSEDED:
            return result
        # Reported or not, the cause is the configuration: say that first.
        return AttemptResult(Outcome.CONFIG_ERROR, result.run_status, "EntrypointError")

    steps.task_started()
    control = AttemptControl()
    task_log = TaskLogger(doc.run_id, doc.attempt, stream=log_stream)
    ctx = Context(
        run_id=doc.run_id,
        attempt=doc.attempt,
        payload=doc.payload,
        port=api,
        checkpoints=context_checkpoints(doc),
        limits=doc.limits,
        traceparent=doc.traceparent,
        log=task_log,
        control=control,
        suspend_threshold=doc.suspend_threshold_seconds,
        tracer=steps,
    )
    shipper = _LogShipper(api, task_log, control, doc.limits.log_batch)
    ctx.flush_logs = shipper.flush
    _log.info("attempt started", extra={**fields, "resumed_checkpoints": len(doc.checkpoints)})

    loop = asyncio.get_running_loop()
    work: asyncio.Future[Any]
    if inspect.iscoroutinefunction(fn):
        work = asyncio.ensure_future(_invoke_async(fn, ctx, doc.payload))
    else:
        work = _run_in_thread(fn, SyncContext(ctx, loop), doc.payload, loop, doc.run_id)
    background = [
        asyncio.create_task(
            _heartbeat_loop(api, control, doc.heartbeat_interval_seconds, sleep, fields)
        ),
        asyncio.create_task(shipper.run_periodically(log_flush_interval, sleep)),
    ]
    stopped = asyncio.create_task(control.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # The runner itself is shutting down (SIGTERM, a warm Pod draining):
        # the task goes with it rather than running on unsupervised. Its
        # last log lines are worth a bounded try: they say what it was doing.
        work.cancel()
        await asyncio.wait({work}, timeout=stop_grace)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(shipper.flush(), timeout=SHUTDOWN_FLUSH_TIMEOUT)
        raise
    finally:
        for task in [*background, stopped]:
            task.cancel()
        await asyncio.gather(*background, stopped, return_exceptions=True)

    if control.reason is StopReason.SUSPENDED:
        # The run waits: the coordinator already ended this attempt. A task that
        # caught Suspended and went on is not waited for.
        if not work.done():
            work.cancel()
            await asyncio.wait({work}, timeout=stop_grace)
        _log.info("run suspended; attempt ends", extra=fields)
        return AttemptResult(Outcome.SUSPENDED, "waiting")
    if not work.done():
        # Stopped from outside (409 or cancellation) while the task ran.
        grace = doc.cancellation_grace_period_seconds
        if control.reason is StopReason.CANCELLED:
            # A quarter of the grace period for the task to stop by itself (it
            # sees ctx.cancelled, or RunCancelled at its next step), another
            # for it to unwind once cancelled; the other half covers hearing of
            # the cancellation late and reporting it before the kill.
            await asyncio.wait({work}, timeout=grace / 4)
            stop_grace = min(stop_grace, grace / 4)
        # A sync task's thread cannot be interrupted: the runner exits without it.
        how = "the task stopped" if work.done() else "the task was interrupted; the runner exited"
        if not work.done():
            work.cancel()
            await asyncio.wait({work}, timeout=stop_grace)
        if control.reason is StopReason.CANCELLED:
            return await _report_cancelled(api, shipper, fields, how)
        return _stopped_result(control, fields)
    failure: BaseException | None
    if work.cancelled():
        failure = asyncio.CancelledError("the task function was cancelled")
    else:
        failure = work.exception()
    if isinstance(failure, AttemptSuperseded):
        control.stop(StopReason.SUPERSEDED)
    elif isinstance(failure, RunCancelled):
        control.stop(StopReason.CANCELLED)
    if control.reason is StopReason.CANCELLED:
        # Whatever the task returned or raised, the run was cancelled.
        return await _report_cancelled(api, shipper, fields, "the task stopped")
    if control.reason is not None:
        return _stopped_result(control, fields)

    if failure is None:
        try:
            value, size = serialization.roundtrip(work.result(), what="task result")
            if size > doc.limits.result_bytes:
                raise ResultTooLarge(size, doc.limits.result_bytes)
        except (NotJSONSerializable, ResultTooLarge) as bad_result:
            failure = bad_result
        else:
            if not await shipper.flush():
                return _stopped_result(control, fields)
            try:
                return await _report(
                    api, fields, result=value, result_limit=doc.limits.result_bytes,
                    usage=steps.usage(),
                )
            except ResultTooLarge as too_large:
                failure = too_large

    task_log_failure(failure, fields)
    if not await shipper.flush():
        return _stopped_result(control, fields)
    return await _report(api, fields, failure=error_report(failure), usage=steps.usage())


def task_log_failure(exc: BaseException, fields: dict[str, Any]) -> None:
    """Log (without the message, which may carry payload data) that the task failed."""
    _log.info("task raised", extra={**fields, "error_name": type(exc).__name__})


async def _report_cancelled(
    api: RunnerPort, shipper: _LogShipper, fields: dict[str, Any], how: str
) -> AttemptResult:
    """Tell the coordinator that the cancelled run's task stopped: the run ends now
    rather than when its grace period runs out."""
    _log.warning("run cancelled; attempt stopped", extra={**fields, "how": how})
    with contextlib.suppress(Exception):
        await asyncio.wait_for(shipper.flush(), timeout=SHUTDOWN_FLUSH_TIMEOUT)
    try:
        status = await api.cancelled(how)
    except AttemptSuperseded:
        # Already ended (its grace period ran out): nothing more to say.
        return AttemptResult(Outcome.CANCELLED)
    except (CoordinatorUnavailable, WaypostAPIError) as exc:
        _log.error("could not report the cancellation", extra={**fields, "error": str(exc)})
        return AttemptResult(Outcome.CANCELLED)
    return AttemptResult(Outcome.CANCELLED, status)


def _stopped_result(control: AttemptControl, fields: dict[str, Any]) -> AttemptResult:
    reason = control.reason
    if reason is StopReason.CANCELLED:
        _log.warning("run cancelled; attempt stopped", extra=fields)
        return AttemptResult(Outcome.CANCELLED)
    _log.warning("attempt superseded; stopped without reporting", extra=fields)
    return AttemptResult(Outcome.SUPERSEDED)


async def _report(
    api: RunnerPort,
    fields: dict[str, Any],
    *,
    result: Any = None,
    failure: protocol.FailureReport | None = None,
    result_limit: int = 0,
    usage: protocol.Usage | None = None,
) -> AttemptResult:
    try:
        if failure is None:
            try:
                status = await api.complete(result, usage)
            except WaypostAPIError as exc:
                if exc.status == 413:
                    size = serialization.json_size(
                        serialization.encode_json(result, what="task result")
                    )
                    # The coordinator's limit was lower than announced; say
                    # so with the size it refused.
                    raise ResultTooLarge(size, min(result_limit, size - 1)) from exc
                raise
            _log.info("attempt succeeded", extra={**fields, "run_status": status})
            return AttemptResult(Outcome.SUCCEEDED, status)
        status = await api.fail(failure, usage)
        _log.info(
            "attempt failed",
            extra={**fields, "error_name": failure.name, "run_status": status},
        )
        return AttemptResult(Outcome.FAILED, status, failure.name)
    except AttemptSuperseded:
        _log.warning("attempt superseded while reporting", extra=fields)
        return AttemptResult(Outcome.SUPERSEDED)
    except (CoordinatorUnavailable, WaypostAPIError) as exc:
        _log.error("could not report the outcome", extra={**fields, "error": str(exc)})
        return AttemptResult(Outcome.UNREPORTED)


async def _heartbeat_loop(
    api: RunnerPort,
    control: AttemptControl,
    interval: float,
    sleep: Sleep,
    fields: dict[str, Any],
) -> None:
    while True:
        await sleep(interval)
        try:
            cancelled = await api.heartbeat()
        except AttemptSuperseded:
            control.stop(StopReason.SUPERSEDED)
            return
        except (CoordinatorUnavailable, WaypostAPIError) as exc:
            # The lease tolerates a few missed beats; keep the task running.
            _log.warning("heartbeat failed", extra={**fields, "error": str(exc)})
            continue
        if cancelled:
            control.stop(StopReason.CANCELLED)
            return


class _LogShipper:
    """Moves buffered ``ctx.log`` entries to the coordinator in batches."""

    def __init__(
        self, api: RunnerPort, task_log: TaskLogger, control: AttemptControl, batch: int
    ) -> None:
        self._api = api
        self._log = task_log
        self._control = control
        self._batch = batch
        self._lock = asyncio.Lock()

    async def run_periodically(self, interval: float, sleep: Sleep) -> None:
        while True:
            await sleep(interval)
            if not await self.flush():
                return

    async def flush(self) -> bool:
        """Ship everything buffered; False when the attempt turned out superseded."""
        async with self._lock:
            while True:
                entries = self._log.drain(self._batch)
                if not entries:
                    return True
                try:
                    await self._send(entries)
                except AttemptSuperseded:
                    self._control.stop(StopReason.SUPERSEDED)
                    return False
                except (CoordinatorUnavailable, WaypostAPIError) as exc:
                    if isinstance(exc, CoordinatorUnavailable):
                        # Keep them for the next flush; stderr already has them.
                        self._log.requeue(entries)
                    _log.warning(
                        "could not ship task logs",
                        extra={"error": str(exc), "entries": len(entries)},
                    )
                    return True

    async def _send(self, entries: list[protocol.LogLine]) -> None:
        try:
            await self._api.send_logs(entries)
        except WaypostAPIError as exc:
            if exc.status not in (400, 413) or len(entries) == 1:
                raise
            # One refused entry should not cost the whole batch.
            middle = len(entries) // 2
            await self._send(entries[:middle])
            await self._send(entries[middle:])


class TaskExited(Exception):
    """The task function raised ``SystemExit`` or ``KeyboardInterrupt``."""


async def _invoke_async(fn: Callable[..., Any], ctx: Context, payload: Any) -> Any:
    try:
        return await fn(ctx, payload)
    except (SystemExit, KeyboardInterrupt) as exc:
        # Left alone, these would escape the event loop and end the process
        # without reporting anything; report them as the task's failure.
        raise TaskExited(f"the task raised {type(exc).__name__}({exc})") from exc


def _run_in_thread(
    fn: Callable[..., Any],
    ctx: SyncContext,
    payload: Any,
    loop: asyncio.AbstractEventLoop,
    run_id: str,
) -> asyncio.Future[Any]:
    """Run a sync task function in a daemon thread; its outcome lands in a future.

    A daemon thread rather than the default executor: a superseded or
    cancelled sync task cannot be interrupted, and it must not keep the
    process alive once the runner has decided to exit.
    """
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(outcome)

    def set_result(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def set_exception(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    def target() -> None:
        try:
            value = fn(ctx, payload)
        except BaseException as exc:
            settle(functools.partial(set_exception, exc))
        else:
            settle(functools.partial(set_result, value))

    threading.Thread(target=target, name=f"waypost-task-{run_id}", daemon=True).start()
    return future
