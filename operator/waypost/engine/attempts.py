"""What runners do with their attempt: read it, checkpoint, beat, log, finish.

Every write is fenced on the attempt's claim token: a runner whose attempt was
superseded gets AttemptSuperseded (HTTP 409) and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from typing import Any

from waypost.engine import encoding, retry
from waypost.engine.backend import AttemptExit
from waypost.engine.core import Engine
from waypost.engine.credentials import AttemptIdentity, InvalidCredential
from waypost.engine.errors import AttemptSuperseded, InvalidValue, Unauthorized
from waypost.engine.retry import Outcome
from waypost.model.enums import FailureType, RunStatus
from waypost.model.run import ErrorInfo
from waypost.model.task import TaskSpec
from waypost.sdk import protocol, tracing
from waypost.store import checkpoints, insights, logs, runs
from waypost.store.pool import RawJson

log = logging.getLogger("waypost.engine.attempts")


def authenticate(engine: Engine, token: str | None) -> AttemptIdentity:
    if not token:
        raise Unauthorized("missing attempt credential (Authorization: Bearer <token>)")
    try:
        return engine.signer.verify(token)
    except InvalidCredential as exc:
        raise Unauthorized(str(exc)) from None


def _superseded(ident: AttemptIdentity) -> AttemptSuperseded:
    return AttemptSuperseded(
        f"attempt with claim token {ident.claim_token} of run {ident.run_id} is no longer "
        "current (it was superseded, cancelled, or the run already finished)"
    )


async def describe(engine: Engine, ident: AttemptIdentity) -> protocol.AttemptDocument:
    """The attempt document a runner starts from: task, payload, checkpoints, limits.

    The lease stays the start timeout it was claimed with: the runner still has to
    import the task's code, which on a busy machine can take longer than the
    heartbeat window. Its first heartbeat, once the task runs, switches the lease
    to the heartbeat window."""
    current = await runs.current_attempt(engine.pool, ident.run_id, ident.claim_token)
    if current is None:
        raise _superseded(ident)
    # Where its task's time starts, for an attempt killed before it reports (patterns).
    engine.usage.record(insights.RunnerStart(ident.claim_token, ident.run_id))
    stored = await checkpoints.list_for_run(engine.pool, ident.run_id)
    return document(
        engine, run_id=current.run_id, attempt=current.attempt, namespace=current.namespace,
        task=current.task, spec=TaskSpec.model_validate(current.spec), payload=current.payload,
        trace_id=current.trace_id, parent_sampled=current.parent_sampled,
        idempotency_key=current.idempotency_key,
        checkpoints=[protocol.AttemptCheckpoint(key=c.key, data=c.data, attempt=c.attempt,
                                                created_at=c.created_at) for c in stored])


def document(
    engine: Engine, *, run_id: uuid.UUID, attempt: int, namespace: str, task: str,
    spec: TaskSpec, payload: Any, trace_id: str, idempotency_key: str | None,
    checkpoints: list[protocol.AttemptCheckpoint], parent_sampled: bool | None = None,
) -> protocol.AttemptDocument:
    """The attempt document from what the store holds of the run (see :func:`describe`)."""
    limits = engine.settings.limits
    return protocol.AttemptDocument(
        run_id=str(run_id),
        attempt=attempt,
        task=protocol.AttemptTask(namespace=namespace, name=task, entrypoint=spec.entrypoint),
        payload=payload,
        checkpoints=checkpoints,
        # The run's span: the runner's attempt span is its child. Its flag says whether
        # the run is sampled (OTEL_TRACES_SAMPLER, the operator's, as the leader's spans).
        traceparent=tracing.run_traceparent(
            trace_id, str(run_id),
            sampled=tracing.trace_sampler(os.environ)(trace_id, parent_sampled)),
        idempotency_key=idempotency_key,
        heartbeat_interval_seconds=engine.settings.heartbeat_interval_seconds,
        cancellation_grace_period_seconds=spec.cancellation.grace_period_seconds,
        suspend_threshold_seconds=engine.settings.suspend_threshold_seconds,
        limits=protocol.AttemptLimits(
            checkpoint_bytes=limits.checkpoint_bytes,
            result_bytes=limits.result_bytes,
            log_batch=limits.log_batch,
        ),
    )


async def checkpoint(engine: Engine, ident: AttemptIdentity, key: str, data: Any) -> None:
    encoded = encoding.encode_limited(
        data, engine.settings.limits.checkpoint_bytes, f"checkpoint {key!r}"
    )
    if not await checkpoints.write(engine.pool, ident.run_id, ident.claim_token, key, encoded):
        raise _superseded(ident)


async def heartbeat(engine: Engine, ident: AttemptIdentity) -> bool:
    """Extend the attempt's lease; True when the run's cancellation was requested."""
    with engine.heartbeat_lag.timing():
        cancel_requested = await runs.heartbeat(engine.pool, ident.run_id, ident.claim_token,
                                                engine.settings.lease_seconds)
    if cancel_requested is None:
        raise _superseded(ident)
    return cancel_requested


async def cancelled(engine: Engine, ident: AttemptIdentity, how: str) -> RunStatus:
    """The attempt of a cancelled run ended: the run ends ``cancelled`` (once)."""
    if not await runs.finish_cancelled(engine.pool, ident.run_id, ident.claim_token, how):
        raise _superseded(ident)
    log.info("run cancelled", extra={"run_id": str(ident.run_id), "how": how})
    return RunStatus.CANCELLED


async def append_logs(
    engine: Engine, ident: AttemptIdentity, lines: list[protocol.LogLine]
) -> None:
    if len(lines) > engine.settings.limits.log_batch:
        raise InvalidValue(
            f"{len(lines)} log lines in one request; the limit is "
            f"{engine.settings.limits.log_batch}"
        )
    rows: list[logs.LogLine] = [
        (line.ts, line.level, line.message, line.fields, line.step) for line in lines
    ]
    if not await logs.append(engine.pool, ident.run_id, ident.claim_token, rows):
        raise _superseded(ident)


def encode_result(engine: Engine, result: Any) -> RawJson:
    """A task's result as stored, refused (413) over the result limit."""
    return encoding.encode_limited(result, engine.settings.limits.result_bytes, "result")


async def complete(engine: Engine, ident: AttemptIdentity, result: Any) -> None:
    encoded = encode_result(engine, result)
    if not await engine.completions.complete(ident.run_id, ident.claim_token, encoded):
        raise _superseded(ident)
    log.info("attempt succeeded", extra={"run_id": str(ident.run_id)})


async def fail(engine: Engine, ident: AttemptIdentity, error: ErrorInfo, *,
               lost_after: float | None = None) -> RunStatus:
    """Record a failed attempt and decide: retry after backoff, dead-letter, or fail.

    ``lost_after``: the attempt is failed as lost only if its lease is still over by
    that many seconds when the failure is written (a heartbeat recorded since the
    reaper looked keeps it: AttemptSuperseded)."""
    current = await runs.current_attempt(engine.pool, ident.run_id, ident.claim_token)
    if current is None:
        raise _superseded(ident)
    if current.cancel_requested:
        # A cancelled run is not retried, whatever ended its attempt.
        return await cancelled(engine, ident, f"the attempt ended: {error.message}")
    spec = TaskSpec.model_validate(current.spec)
    decision = retry.decide(
        spec.retry,
        attempts_used=current.attempt - current.attempt_base,
        failure=error.type,
        retryable=error.retryable,
        memory_bytes=current.memory_bytes,
        rng=engine.rng,
    )
    stored_error = error.model_dump(mode="json", by_alias=True, exclude_none=True)
    if decision.outcome is Outcome.RETRY:
        ok = await runs.retry(
            engine.pool, ident.run_id, ident.claim_token, delay_seconds=decision.delay_seconds,
            error=stored_error, memory_bytes=decision.memory_bytes, lost_after=lost_after,
        )
        status = RunStatus.RETRYING
    else:
        status = (RunStatus.DEAD_LETTERED if decision.outcome is Outcome.DEAD_LETTER
                  else RunStatus.FAILED)
        ok = await runs.finish_failed(
            engine.pool, ident.run_id, ident.claim_token, error=stored_error, status=status,
            lost_after=lost_after,
        )
    if not ok:
        raise _superseded(ident)
    log.info(
        "attempt failed",
        extra={"run_id": str(ident.run_id), "attempt": current.attempt, "task": current.task,
               "failure": str(error.type), "outcome": str(status),
               "delay_s": round(decision.delay_seconds, 3)},
    )
    return status


async def hand_over(engine: Engine, ident: AttemptIdentity, message: str,
                    delay_seconds: float = 0.0) -> None:
    """The engine stopped this attempt's worker to shut down, or the backend could not
    start it (its control plane away): requeue the run (after ``delay_seconds``), to
    resume from its last checkpoint, without spending its retry budget. A run whose
    cancellation was requested ends cancelled instead."""
    current = await runs.current_attempt(engine.pool, ident.run_id, ident.claim_token)
    if current is None:
        raise _superseded(ident)
    if current.cancel_requested:
        await cancelled(engine, ident, f"the attempt ended: {message}")
        return
    error = ErrorInfo(type=FailureType.LOST, message=message)
    stored = error.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not await runs.hand_over(engine.pool, ident.run_id, ident.claim_token, error=stored,
                                delay_seconds=delay_seconds):
        raise _superseded(ident)
    log.info("attempt handed over", extra={"run_id": str(ident.run_id),
                                           "attempt": current.attempt})


async def report_exit(engine: Engine, exit: AttemptExit) -> None:
    """A worker ended. If its attempt is still current, the runner did not report:
    record the failure the backend saw (OOM, timeout, exit code, lost), or hand the
    run over when the engine stopped it to shut down."""
    ident = AttemptIdentity(exit.run_id, exit.claim_token)
    if exit.handed_over:
        with contextlib.suppress(AttemptSuperseded):
            await hand_over(engine, ident, exit.message)
        return
    failure = exit.failure or FailureType.EXIT
    message = exit.message if exit.failure else (
        f"the runner exited (code {exit.exit_code}) without reporting a result"
    )
    # Superseded means the runner already reported, or a successor took over.
    with contextlib.suppress(AttemptSuperseded):
        await fail(engine, ident, ErrorInfo(type=failure, message=message,
                                            exit_code=exit.exit_code))


def record_usage(engine: Engine, ident: AttemptIdentity, usage: protocol.Usage | None) -> None:
    """Queue the runner's memory report of its attempt (written in the background;
    the claim token ties it to that attempt only)."""
    if usage is not None:
        engine.usage.record(insights.Usage(ident.claim_token, ident.run_id,
                                           usage.peak_rss_bytes, dict(usage.steps),
                                           usage.task_seconds))


async def expire_lost_attempts(
    engine: Engine, limit: int = 100
) -> list[tuple[AttemptIdentity, str]]:
    """Fail attempts whose heartbeats stopped, or that never started (no heartbeat within
    the start timeout), and end cancelled runs whose grace period ran out; returns them,
    each with why, so their workers get stopped."""
    # One heartbeat interval for a beat in flight, plus the time this coordinator takes
    # to record one now: on a busy machine a beat sent on time is written after the
    # lease it renews ran out (engine.heartbeat_lag).
    latency = engine.settings.heartbeat_interval_seconds + engine.heartbeat_lag.seconds()
    expired = await runs.expired_attempts(engine.pool, limit, latency=latency)
    lost: list[tuple[AttemptIdentity, str]] = []
    window = engine.settings.lease_seconds
    for run_id, token, cancel_requested in expired:
        ident = AttemptIdentity(run_id, token)
        try:
            if cancel_requested:
                await cancelled(engine, ident, "the grace period ran out; the attempt was killed")
                lost.append((ident, "cancelled: grace period over"))
                continue
            # Judged again as the failure is written: a heartbeat recorded since the
            # query above (it waited for the store as long as this did) keeps it alive.
            await fail(engine, ident, ErrorInfo(
                type=FailureType.LOST,
                message=f"no heartbeat for {window:g} s (or no start within the start "
                "timeout): the attempt is presumed lost",
            ), lost_after=latency)
            lost.append((ident, "heartbeat lost"))
        except AttemptSuperseded:
            continue
        # A warm runner that held it takes nothing more, should it wake up.
        await engine.warm.attempt_lost(run_id, token)
    return lost
