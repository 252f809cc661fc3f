"""TaskRun spec.replay through the controller's create handler, against real Postgres
and real runner processes (the e2e test does the same with kubectl on a cluster)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from tests.factories import example_stack, wait_for_status
from waypost.controller import handlers
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch) as app:
        yield app


async def create(stack: Standalone, name: str, spec: dict[str, Any]) -> kopf.Patch:
    patch = kopf.Patch()
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "generation": 1,
            "managedFields": [{"manager": "kubectl-client-side-apply",
                               "operation": "Update"}]}
    await handlers.taskrun_created(
        spec=kopf.Spec({"spec": spec}), name=name, namespace="default", uid=f"uid-{name}",
        meta=kopf.Meta({"metadata": meta}), status=kopf.Status({"status": {}}), patch=patch,
        memo=handlers.OperatorMemo(engine=stack.engine),
        body=kopf.Body({"metadata": meta, "spec": spec}),
    )
    return patch


async def test_spec_replay_makes_a_replay_that_resumes_after_the_checkpoint(
    stack: Standalone,
) -> None:
    original, _ = await control.trigger(
        stack.engine, "default", "process-order",
        TriggerRequest(payload={"orderId": "o-60", "failPaymentOnAttempts": [1]}))
    await wait_for_status(stack.engine, original.id, {RunStatus.SUCCEEDED})
    spec = {"taskRef": {"name": "process-order"},
            "replay": {"fromRun": original.id, "fromCheckpoint": "order-fetched",
                       "checkpoints": {"order-fetched": {"id": "o-61", "amountCents": 1,
                                                         "items": []}}}}
    patch = await create(stack, "replay-1", spec)
    run_id = patch["status"]["runId"]
    # kopf runs the handler again after a restart: the same replay, not a second one.
    again = await create(stack, "replay-1", spec)
    assert again["status"]["runId"] == run_id
    done = await wait_for_status(stack.engine, run_id, {RunStatus.SUCCEEDED})
    assert done.replay_of == original.id and done.taskrun_name == "replay-1"
    # No payload in spec.replay nor in the TaskRun: the original's, so the charge fails
    # on attempt 1 again and attempt 2 succeeds with the edited order.
    assert done.payload == {"orderId": "o-60", "failPaymentOnAttempts": [1]}
    assert done.result["orderId"] == "o-61" and done.attempt == 2
    assert done.replay is not None
    assert done.replay.requested_by == ("TaskRun default/replay-1 "
                                        "(via kubectl-client-side-apply)")
    full = await control.get(stack.engine, uuid.UUID(original.id), details=True)
    assert [r.run_id for r in full.replays or []] == [run_id]


@pytest.mark.parametrize(("replay", "words"), [
    ({"fromRun": "not-a-uuid"}, "replay.fromRun"),
    ({"fromRun": "00000000-0000-0000-0000-000000000000"}, "no run"),
    ({"fromRun": "ORIGINAL", "fromCheckpoint": "nope"}, "no checkpoint 'nope'"),
    ({"fromRun": "HELLO"}, "not of default/process-order"),
])
async def test_bad_spec_replay_is_invalid_and_creates_nothing(
    stack: Standalone, replay: dict[str, Any], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: warnings.append(message))
    original, _ = await control.trigger(stack.engine, "default", "process-order",
                                        TriggerRequest(payload={"orderId": "o-62"}))
    other, _ = await control.trigger(stack.engine, "default", "hello", TriggerRequest())
    await wait_for_status(stack.engine, original.id, {RunStatus.SUCCEEDED})
    await wait_for_status(stack.engine, other.id, {RunStatus.SUCCEEDED})
    wanted = {k: {"ORIGINAL": original.id, "HELLO": other.id}.get(v, v)
              for k, v in replay.items()}
    before, _ = await control.list_runs(stack.engine, limit=100)
    with pytest.raises(kopf.PermanentError, match=words):
        await create(stack, "bad-1", {"taskRef": {"name": "process-order"},
                                      "replay": wanted})
    after, _ = await control.list_runs(stack.engine, limit=100)
    assert len(after) == len(before)
    assert warnings and words in warnings[0]
