"""Out-of-memory kills and timeouts under the process backend, with real runners.

The process backend samples each runner's resident memory and kills it past the
attempt's limit, recorded as ``oom`` like a Pod's ``OOMKilled``; an attempt past
the task's timeout is killed and recorded as ``timeout``. The watchdog samples,
so a spike shorter than its sampling interval can slip through (unlike a Pod's
kernel-enforced limit); the allocations here stay over the limit for 100+ ms. Both are retried by
the task's policy; on OOM the policy may grow the next attempt's memory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from examples import flaky, ledger
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import FailureType, RunStatus
from waypost.model.run import TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone

MIB = 1024 * 1024


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    # The watchdog samples resident memory; sampling every 20 ms (default 50 ms) keeps
    # a busy test machine from missing the short time a runner spends over its limit.
    backend = ProcessBackend(max_parallel=2, memory_poll_seconds=0.02)
    app = await Standalone(settings(database_url), backend).start()
    try:
        yield app
    finally:
        await app.stop()


async def test_memory_hog_is_oom_killed_and_retried(stack: Standalone) -> None:
    # memory-hog: 64Mi, 2 attempts, x2 after an OOM up to 256Mi; 200 MiB never fits.
    await stack.register(flaky.memory_hog)
    run, _ = await control.trigger(stack.engine, "default", "memory-hog",
                                   TriggerRequest(payload={"mb": 200}))
    done = await wait_for_status(stack.engine, run.id, {RunStatus.DEAD_LETTERED}, timeout=60)
    assert done.attempts is not None
    assert [a.status for a in done.attempts] == ["failed", "failed"]
    assert [a.error.type for a in done.attempts if a.error] == [FailureType.OOM] * 2
    assert [a.memory_bytes for a in done.attempts] == [64 * MIB, 128 * MIB]
    for attempt in done.attempts:
        assert attempt.error is not None
        assert attempt.error.message.startswith("OOMKilled: memory use")
        assert f"limit of {attempt.memory_bytes // MIB} MiB" in attempt.error.message
    assert done.error is not None and done.error.type == FailureType.OOM
    # Each attempt really ran (and started allocating) before it was killed.
    effects = [e for e in ledger.read(os.environ[ledger.LEDGER_ENV]) if e["run"] == run.id]
    assert [e["attempt"] for e in effects] == [1, 2]


async def test_oom_memory_multiplier_grows_the_next_attempt(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    spec = TaskSpec.model_validate({
        "entrypoint": "examples.flaky:memory_hog",
        "resources": {"memory": "160Mi"},
        "retry": {"maxAttempts": 3, "backoff": {"initialSeconds": 0.1, "jitter": 0},
                  "oom": {"memoryMultiplier": 4, "memoryCeiling": "512Mi"}},
    })
    # 300 MiB does not fit 160Mi; x4 would be 640Mi, capped by the ceiling at 512Mi,
    # where it fits. (The process backend samples memory, so the allocation is
    # large enough to stay over the limit for many samples.)
    await control.register_task(
        stack.engine, TaskDefinition(namespace="default", name="bigger-hog", spec=spec))
    run, _ = await control.trigger(stack.engine, "default", "bigger-hog",
                                   TriggerRequest(payload={"mb": 300}))
    done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    assert done.result == {"allocatedMiB": 300, "attempt": 2}
    rows = await db.fetch(
        "SELECT attempt, status, memory_bytes, error->>'type' AS failure FROM attempts "
        "WHERE run_id = $1 ORDER BY attempt", done.id)
    assert [tuple(r) for r in rows] == [
        (1, "failed", 160 * MIB, "oom"),
        (2, "succeeded", 512 * MIB, None),
    ]
    assert done.memory_bytes == 512 * MIB


async def test_sleepy_past_its_timeout_is_killed_as_timeout(stack: Standalone) -> None:
    spec = TaskSpec.model_validate({
        "entrypoint": "examples.flaky:sleepy",
        "resources": {"memory": "256Mi"},
        "timeout": {"maxDuration": "1s"},
        "retry": {"maxAttempts": 2, "backoff": {"initialSeconds": 0.1, "jitter": 0}},
    })
    await control.register_task(
        stack.engine, TaskDefinition(namespace="default", name="sleepy", spec=spec))
    run, _ = await control.trigger(stack.engine, "default", "sleepy",
                                   TriggerRequest(payload={"seconds": 30}))
    done = await wait_for_status(stack.engine, run.id, {RunStatus.DEAD_LETTERED}, timeout=30)
    assert done.attempts is not None
    assert [a.error.type for a in done.attempts if a.error] == [FailureType.TIMEOUT] * 2
    for attempt in done.attempts:
        assert attempt.error is not None
        assert "timeout of 1 s" in attempt.error.message
        assert attempt.finished_at is not None
        ran = (attempt.finished_at - attempt.started_at).total_seconds()
        assert 1.0 <= ran < 10, ran  # killed at its timeout, not after the 30 s sleep
    assert done.error is not None and done.error.type == FailureType.TIMEOUT
