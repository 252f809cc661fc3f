"""kopf handlers for Task and TaskRun. Each parses the body into the model once,
lets the engine decide, and writes status through kopf's patch.

Handlers run again after restarts (kopf resumes them), so each is idempotent:
a Task is upserted, a TaskRun is enqueued with its uid as idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from waypost.controller import status as decide
from waypost.engine import control, replay
from waypost.engine.core import Engine
from waypost.engine.errors import EngineError, InvalidState, RunNotFound, UnknownTask
from waypost.model import k8s
from waypost.model.run import Run, TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.model.taskrun import TaskReason, TaskRunReason, TaskRunSpec
from waypost.sdk import durations

registry = kopf.OperatorRegistry()
log = logging.getLogger("waypost.controller")


# How long a TaskRun whose Task is missing waits for it before its status says
# TaskNotFound (a Task applied together with its TaskRun syncs within this), and
# then how long each later try waits. The wait ends the moment the Task syncs.
TASK_GRACE_SECONDS = 3.0
TASK_WAIT_SECONDS = 10.0


class TaskSyncs:
    """Tells TaskRuns waiting for a Task that it has just been stored, so they start
    at once instead of after a kopf retry delay (a GitOps tool applies a TaskRun and
    its Task together, in any order). Both handlers run in the leader's one loop."""

    def __init__(self) -> None:
        self._events: defaultdict[tuple[str, str], asyncio.Event] = defaultdict(asyncio.Event)

    def synced(self, namespace: str, name: str) -> None:
        event = self._events.pop((namespace, name), None)
        if event is not None:
            event.set()

    def expect(self, namespace: str, name: str) -> asyncio.Event:
        """An event set when the Task syncs next; ask before looking it up again, so
        a sync in between is not missed."""
        return self._events[(namespace, name)]


@dataclass
class OperatorMemo:
    """What every handler gets as ``memo``."""

    engine: Engine
    task_syncs: TaskSyncs = field(default_factory=TaskSyncs)


def _engine(memo: Any) -> Engine:
    engine: Engine = memo.engine
    return engine


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
    )


KOPF_IGNORED_FIELDS = ("spec.payload", "spec.replay.payload")


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's bookkeeping stays under our own prefix, with a domain-qualified finalizer.
    settings.persistence.finalizer = k8s.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=k8s.KOPF_ANNOTATION_PREFIX)
    # The diff base never carries a TaskRun's payload: up to the payload limit (512 KiB)
    # it would push the annotations past the apiserver's 256 KiB, after which every
    # patch, the finalizer's removal included, is refused. A TaskRun's spec is
    # immutable, so no handler needs the payload's diff.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=k8s.KOPF_ANNOTATION_PREFIX, key=k8s.KOPF_LAST_HANDLED_KEY,
        ignored_fields=KOPF_IGNORED_FIELDS)
    # Only warnings become Kubernetes Events (kopf posts every INFO line by default).
    settings.posting.level = logging.WARNING
    # Bookmarks and an inactivity timeout keep a silently frozen watch from lasting.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 600
    settings.execution.max_workers = 4


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Our own registry has none of kopf's default login handlers: use the
    # in-cluster service account, or the kubeconfig outside a cluster.
    info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
    return info


@kopf.on.resume(k8s.GROUP, k8s.VERSION, k8s.TASK_PLURAL, registry=registry)
@kopf.on.create(k8s.GROUP, k8s.VERSION, k8s.TASK_PLURAL, registry=registry)
@kopf.on.update(k8s.GROUP, k8s.VERSION, k8s.TASK_PLURAL, field="spec", registry=registry)
async def task_changed(spec: kopf.Spec, name: str, namespace: str | None, meta: kopf.Meta,
                       status: kopf.Status, patch: kopf.Patch, memo: Any, body: kopf.Body,
                       **_: Any) -> None:
    assert namespace is not None  # Tasks are namespaced
    engine = _engine(memo)
    generation = meta.get("generation")
    now = engine.clock.now()
    try:
        task_spec = TaskSpec.model_validate(dict(spec))
    except ValidationError as exc:
        message = _describe(exc)
        patch.status.update(decide.task_ready(False, TaskReason.INVALID, message, dict(status),
                                              now=now, generation=generation))
        kopf.warn(body, reason="InvalidSpec", message=message)
        raise kopf.PermanentError(message) from None
    invalid = await control.register_task(
        engine, TaskDefinition(namespace=namespace, name=name, spec=task_spec,
                               generation=generation or 1))
    if invalid:
        message = "; ".join(str(e) for e in invalid)
        patch.status.update(decide.task_ready(False, TaskReason.INVALID_SCHEDULE, message,
                                              dict(status), now=now, generation=generation))
        kopf.warn(body, reason="InvalidSchedule", message=message)
        return
    memo.task_syncs.synced(namespace, name)
    patch.status.update(decide.task_ready(True, TaskReason.SYNCED, "stored; runs can be queued",
                                          dict(status), now=now, generation=generation))


@kopf.on.delete(k8s.GROUP, k8s.VERSION, k8s.TASK_PLURAL, registry=registry)
async def task_deleted(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    assert namespace is not None
    cancelled = await control.delete_task(_engine(memo), namespace, name)
    log.info("task deleted", extra={"task": name, "namespace": namespace,
                                    "cancelled_runs": len(cancelled)})


def _requester(namespace: str, name: str, meta: kopf.Meta) -> str:
    """Who asked for a TaskRun's replay, for its audit record: the TaskRun and the
    field manager that created it (kubectl, a GitOps controller)."""
    managers = [str(m.get("manager")) for m in meta.get("managedFields") or []
                if isinstance(m, dict) and m.get("operation") in ("Create", "Apply", "Update")
                and m.get("manager")]
    via = f" (via {managers[0]})" if managers else ""
    return f"TaskRun {namespace}/{name}{via}"


def _seconds(value: str | None, field: str) -> float | None:
    """A TaskRun's duration text (``"10m"``) in seconds; ValueError naming the field."""
    if value is None:
        return None
    seconds = durations.parse_duration(value, field)
    if field == "spec.ttl" and seconds <= 0:
        raise ValueError(f"{field} must be more than 0 seconds")
    return seconds


@kopf.on.resume(k8s.GROUP, k8s.VERSION, k8s.TASKRUN_PLURAL, registry=registry)
@kopf.on.create(k8s.GROUP, k8s.VERSION, k8s.TASKRUN_PLURAL, registry=registry)
async def taskrun_created(spec: kopf.Spec, name: str, namespace: str | None, uid: str,
                          meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, memo: Any,
                          body: kopf.Body, **_: Any) -> None:
    assert namespace is not None  # TaskRuns are namespaced
    engine = _engine(memo)
    generation = meta.get("generation")
    now = engine.clock.now()
    try:
        run_spec = TaskRunSpec.model_validate(dict(spec))
        request = TriggerRequest(
            payload=run_spec.payload, priority=run_spec.priority,
            idempotency_key=run_spec.idempotency_key or uid,
            concurrency_key=run_spec.concurrency_key,
            delay=_seconds(run_spec.delay, "spec.delay"), run_at=run_spec.run_at,
            ttl=_seconds(run_spec.ttl, "spec.ttl"),
            # Handled again (a restart): this TaskRun's own run, even if bumped since.
            idempotency_conflict="returnExisting" if status.get("runId") else "error",
        )
    except (ValidationError, ValueError) as exc:
        message = _describe(exc) if isinstance(exc, ValidationError) else str(exc)
        patch.status.update(decide.taskrun_not_enqueued(
            TaskRunReason.INVALID, message, dict(status), now=now, generation=generation))
        kopf.warn(body, reason="Invalid", message=message)
        raise kopf.PermanentError(message) from None
    if status.get("runId") and await _history_expired(engine, str(status["runId"])):
        # Handled before (a restart resumes every TaskRun), and the run's history has
        # expired since (engine.history): the TaskRun keeps the final status it
        # mirrored. Triggering again would find no run under its idempotency key and
        # run the task a second time.
        return
    task_name = run_spec.task_ref.name

    async def enqueue() -> Run:
        if run_spec.replay is not None:
            original, wanted = replay.from_taskrun(run_spec, uid)
            run, _created = await replay.replay(
                engine, original, wanted, requested_by=_requester(namespace, name, meta),
                taskrun_name=name, expect_task=(namespace, task_name))
        else:
            run, _created = await control.trigger(engine, namespace, task_name, request,
                                                  source="taskrun", taskrun_name=name)
        return run

    # Its status already says TaskNotFound: a later try, which waits longer and quietly.
    told = any(isinstance(c, dict) and c.get("reason") == TaskRunReason.TASK_NOT_FOUND
               for c in status.get("conditions") or [])
    try:
        try:
            run = await enqueue()
        except UnknownTask:
            # Not permanent: the Task may be applied right after its TaskRun (GitOps).
            # Wait for its sync here, so the run starts the moment it is stored.
            synced = memo.task_syncs.expect(namespace, task_name)
            try:
                run = await enqueue()
            except UnknownTask:
                wait = TASK_WAIT_SECONDS if told else TASK_GRACE_SECONDS
                try:
                    await asyncio.wait_for(synced.wait(), wait)
                except TimeoutError:
                    raise UnknownTask(task_name) from None
                run = await enqueue()
    except UnknownTask:
        message = f"Task {task_name!r} does not exist in namespace {namespace!r}"
        patch.status.update(decide.taskrun_not_enqueued(
            TaskRunReason.TASK_NOT_FOUND, message, dict(status), now=engine.clock.now(),
            generation=generation))
        if not told:
            kopf.warn(body, reason="TaskNotFound", message=message)
        # Soon again: the next try waits for the Task's sync itself.
        raise kopf.TemporaryError(message, delay=1) from None
    except EngineError as exc:
        if exc.status >= 500:  # the store is away: soon again (kopf's default is 60 s)
            raise kopf.TemporaryError(f"{exc.code}: {exc.message}", delay=5) from None
        patch.status.update(decide.taskrun_not_enqueued(
            TaskRunReason.INVALID, exc.message, dict(status), now=now, generation=generation))
        kopf.warn(body, reason="Invalid", message=exc.message)
        raise kopf.PermanentError(exc.message) from None
    patch.status.update(decide.taskrun_status(run, None, dict(status), now=engine.clock.now(),
                                              generation=generation))


async def _history_expired(engine: Engine, run_id: str) -> bool:
    try:
        await control.get(engine, control.parse_run_id(run_id))
    except RunNotFound:
        return True
    except EngineError:
        return False  # not a run id of ours (400): let the trigger path judge the spec
    return False


@kopf.on.delete(k8s.GROUP, k8s.VERSION, k8s.TASKRUN_PLURAL, registry=registry)
async def taskrun_deleted(status: kopf.Status, memo: Any, name: str, **_: Any) -> None:
    run_id = status.get("runId")
    if not run_id:
        return
    # InvalidState: already finished, nothing to stop.
    with contextlib.suppress(InvalidState, RunNotFound):
        await control.cancel(_engine(memo), control.parse_run_id(str(run_id)),
                             reason=f"TaskRun {name} was deleted")
