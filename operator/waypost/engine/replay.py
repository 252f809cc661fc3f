"""Replay: run a finished run again from one of its checkpoints, with edited input.

The replay is a new run linked to the original (``replayOf``). It gets copies of
the original's checkpoints up to and including the chosen one (edited ones
replaced), so its first attempt finds them and resumes right after that
checkpoint; ``ctx.step`` calls for them return the stored data without running.
Everything is checked before anything is written, and everything is written in
one transaction with the audit record: bad input creates nothing.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import jsonpatch

from waypost.engine import encoding
from waypost.engine.core import Engine
from waypost.engine.errors import InvalidState, InvalidValue, RunNotFound, UnknownTask
from waypost.model.enums import RunStatus
from waypost.model.run import ReplayRequest, Run
from waypost.model.task import TaskSpec
from waypost.model.taskrun import TaskRunSpec
from waypost.store import pool as store_pool
from waypost.store import replays, runs, tasks
from waypost.store.pool import RawJson


def _patch(before: Any, after: Any) -> list[dict[str, Any]]:
    if before == after:
        return []
    if not isinstance(before, dict | list) or not isinstance(after, dict | list):
        return [{"op": "replace", "path": "", "value": after}]
    ops: list[dict[str, Any]] = jsonpatch.make_patch(before, after).patch
    return ops


def from_taskrun(spec: TaskRunSpec, uid: str) -> tuple[uuid.UUID, ReplayRequest]:
    """The run to replay and the request a TaskRun's ``spec.replay`` stands for. The
    TaskRun's uid is the idempotency key, so a handler that runs again after a restart
    finds the replay it made. The payload is ``replay.payload`` when given, else the
    TaskRun's ``payload`` when given, else the original's."""
    assert spec.replay is not None
    wanted = spec.replay
    try:
        run_id = uuid.UUID(wanted.from_run)
    except ValueError:
        raise InvalidValue(f"replay.fromRun: {wanted.from_run!r} is not a run id") from None
    fields: dict[str, Any] = {
        "from_checkpoint": wanted.from_checkpoint, "checkpoints": wanted.checkpoints,
        "spec": wanted.spec, "idempotency_key": spec.idempotency_key or uid,
    }
    if "payload" in wanted.model_fields_set:
        fields["payload"] = wanted.payload
    elif "payload" in spec.model_fields_set and spec.payload is not None:
        fields["payload"] = spec.payload
    return run_id, ReplayRequest(**fields)


async def replay(
    engine: Engine, run_id: uuid.UUID, request: ReplayRequest, *, requested_by: str,
    taskrun_name: str | None = None, expect_task: tuple[str, str] | None = None,
) -> tuple[Run, bool]:
    """Create the replay of ``run_id``; returns it and whether it is new (False: the
    idempotency key named an earlier replay). With ``expect_task`` (namespace, name),
    the original must be a run of that task (a TaskRun's taskRef)."""
    limits = engine.settings.limits
    new_id = uuid.uuid4()
    async with engine.pool.acquire() as conn, conn.transaction():
        source = await replays.source(conn, run_id)
        if source is None:
            raise RunNotFound(f"no run {run_id}")
        if expect_task is not None and (source.namespace, source.task) != expect_task:
            raise InvalidValue(
                f"replay.fromRun: run {run_id} is a run of {source.namespace}/{source.task}, "
                f"not of {expect_task[0]}/{expect_task[1]}")
        if request.idempotency_key is not None:
            # A replay's key returns its run whatever it holds (no payload comparison).
            existing = await runs.find_by_idempotency_key(
                conn, source.namespace, source.task, request.idempotency_key,
                store_pool.RawJson("null"))
            if existing is not None:
                run = await runs.get(conn, existing.run_id)
                assert run is not None
                return run, False
        if not RunStatus(source.status).is_final:
            raise InvalidState(
                f"run {run_id} is {source.status}; only a finished run can be replayed "
                "(cancel it first)")
        stored = await replays.checkpoints_in_order(conn, run_id)
        keys = [c.key for c in stored]
        if request.from_checkpoint is None:
            copied: list[str] = []
        elif request.from_checkpoint in keys:
            copied = keys[: keys.index(request.from_checkpoint) + 1]
        else:  # 409: the request is well-formed; this run does not have it
            raise InvalidState(
                f"fromCheckpoint: run {run_id} has no checkpoint {request.from_checkpoint!r} "
                f"(its checkpoints: {', '.join(keys) or 'none'})")
        original = {c.key: c.data for c in stored}
        edited: dict[str, RawJson] = {}
        for key, data in (request.checkpoints or {}).items():
            if key not in copied:
                raise InvalidState(
                    f"checkpoints.{key}: only copied checkpoints can be edited "
                    f"({', '.join(copied) or 'none are copied without fromCheckpoint'})")
            edited[key] = encoding.encode_limited(data, limits.checkpoint_bytes,
                                                  f"checkpoints.{key}")
        payload = request.payload if "payload" in request.model_fields_set else source.payload
        encoded_payload = encoding.encode_limited(payload, limits.payload_bytes, "payload")
        generation: int | None
        if request.spec == "current":
            definition = await tasks.get(conn, source.namespace, source.task)
            if definition is None:
                raise UnknownTask(
                    f"spec: task {source.task!r} no longer exists in namespace "
                    f"{source.namespace!r}; replay with spec \"original\"")
            spec, generation = definition.spec, definition.generation
        else:
            spec, generation = TaskSpec.model_validate(source.spec), source.spec_generation
        created = await replays.enqueue(
            conn, run_id=new_id, source=source, queue=spec.queue_name(source.task),
            payload=encoded_payload, idempotency_key=request.idempotency_key,
            spec=spec.stored(), memory_bytes=spec.memory_bytes,
            trace_id=secrets.token_hex(16), taskrun_name=taskrun_name,
            spec_generation=generation,
        )
        if not created:
            assert request.idempotency_key is not None
            existing = await runs.find_by_idempotency_key(
                conn, source.namespace, source.task, request.idempotency_key,
                encoded_payload)
            if existing is None:  # pragma: no cover - the key was just seen taken
                raise InvalidState("the idempotency key is taken by a run being created")
            run = await runs.get(conn, existing.run_id)
            assert run is not None
            return run, False
        await replays.copy_checkpoints(conn, run_id, new_id, copied, edited)
        diff: dict[str, Any] = {}
        if payload_patch := _patch(source.payload, payload):
            diff["payload"] = payload_patch
        changed = {key: _patch(original[key], (request.checkpoints or {})[key])
                   for key in edited}
        if any(changed.values()):
            diff["checkpoints"] = {k: v for k, v in changed.items() if v}
        await replays.record(
            conn, run_id=new_id, replay_of=run_id, from_checkpoint=request.from_checkpoint,
            spec_source=str(request.spec), requested_by=requested_by, diff=diff)
        run = await runs.get(conn, new_id)
    assert run is not None
    return run, True

