"""A TaskRun handled before its Task (issue 16: applied together, the TaskRun waited
about 15 s in kopf's retry because its handler ran before the Task synced). Both
handlers run here against real Postgres, as kopf calls them; e2e/test_operator.py
does the same with kubectl on a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest

from tests.factories import settings
from waypost.controller import handlers
from waypost.engine.core import Engine
from waypost.model.taskrun import TaskRunReason

SPEC = {"taskRef": {"name": "late"}, "payload": {"name": "late"}}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    engine = await Engine.open(settings(database_url))
    try:
        yield engine
    finally:
        await engine.close()


def _meta(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "generation": 1}, "spec": SPEC, "status": status}


async def taskrun_created(memo: handlers.OperatorMemo, name: str,
                          status: dict[str, Any] | None = None,
                          patch: kopf.Patch | None = None) -> kopf.Patch:
    body = _meta(name, status or {})
    patch = kopf.Patch() if patch is None else patch
    await handlers.taskrun_created(
        spec=kopf.Spec(body), name=name, namespace="default", uid=f"uid-{name}",
        meta=kopf.Meta(body), status=kopf.Status(body), patch=patch, memo=memo,
        body=kopf.Body(body))
    return patch


async def task_created(memo: handlers.OperatorMemo) -> None:
    body = {"metadata": {"name": "late", "namespace": "default", "generation": 1},
            "spec": {"entrypoint": "examples.hello:hello"}, "status": {}}
    await handlers.task_changed(
        spec=kopf.Spec(body), name="late", namespace="default", meta=kopf.Meta(body),
        status=kopf.Status(body), patch=kopf.Patch(), memo=memo, body=kopf.Body(body))


async def test_a_taskrun_starts_the_moment_its_task_syncs(engine: Engine) -> None:
    memo = handlers.OperatorMemo(engine=engine)
    loop = asyncio.get_running_loop()
    handling = asyncio.create_task(taskrun_created(memo, "early"))
    await asyncio.sleep(1.0)  # the TaskRun's handler ran first and is waiting
    assert not handling.done()
    synced = loop.time()
    await task_created(memo)
    patch = await asyncio.wait_for(handling, 5)
    assert loop.time() - synced < 1.0
    assert patch["status"]["runId"]
    [cond] = patch["status"]["conditions"]
    assert cond["reason"] == TaskRunReason.QUEUED


async def test_a_missing_task_is_said_then_awaited_without_kopf_retry_delay(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "TASK_GRACE_SECONDS", 0.2)
    warnings: list[str] = []
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: warnings.append(message))
    memo = handlers.OperatorMemo(engine=engine)
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as raised:
        await taskrun_created(memo, "orphan", patch=patch)
    assert raised.value.delay is not None and raised.value.delay <= 1
    # The status says why it waits (Succeeded=Unknown), so `kubectl wait` shows it.
    first = dict(patch["status"])
    [cond] = first["conditions"]
    assert (cond["status"], cond["reason"]) == ("Unknown", TaskRunReason.TASK_NOT_FOUND)
    assert "'late' does not exist in namespace 'default'" in cond["message"]
    # kopf's next try (its status now says TaskNotFound) waits for the Task itself.
    loop = asyncio.get_running_loop()
    retry = asyncio.create_task(taskrun_created(memo, "orphan", first))
    await asyncio.sleep(0.5)
    assert not retry.done()
    synced = loop.time()
    await task_created(memo)
    patch = await asyncio.wait_for(retry, 5)
    assert loop.time() - synced < 1.0
    assert patch["status"]["runId"]
    assert len(warnings) == 1  # one Warning event, not one per try

