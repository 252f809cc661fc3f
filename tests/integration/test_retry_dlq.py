"""Backoff follows the policy; exhausted runs are dead-lettered, listed and requeued.

The policy is checked as a unit (``engine.retry``) and in the database: a real
runner subprocess executes the ``always-fails`` example, and the gaps between
its attempts, measured on the database clock, are the policy's delays.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from examples import ledger
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control, retry
from waypost.engine.retry import Outcome
from waypost.model.enums import FailureType, RunStatus
from waypost.model.run import TriggerRequest
from waypost.model.task import RetrySpec, TaskDefinition, TaskSpec
from waypost.standalone import Standalone

MIB = 1024 * 1024


def policy(**backoff: float) -> RetrySpec:
    return RetrySpec.model_validate({"maxAttempts": 4, "backoff": backoff})


def test_next_delay_without_jitter_is_exponential_and_capped() -> None:
    p = policy(initialSeconds=1, factor=2, maxSeconds=5, jitter=0)
    assert [retry.next_delay(p, n) for n in range(1, 7)] == [1, 2, 4, 5, 5, 5]
    assert [retry.next_delay(policy(initialSeconds=0.5, factor=3, jitter=0), n)
            for n in (1, 2, 3)] == [0.5, 1.5, 4.5]


def test_next_delay_jitter_stays_within_its_band() -> None:
    p = policy(initialSeconds=2, factor=2, maxSeconds=100, jitter=0.25)
    rng = random.Random(7)
    for failed, base in ((1, 2.0), (2, 4.0), (3, 8.0)):
        delays = [retry.next_delay(p, failed, rng) for _ in range(2000)]
        assert min(delays) >= base * 0.75 and max(delays) <= base * 1.25
        # Spread over the band, not a constant: runs failing together scatter.
        assert max(delays) - min(delays) > base * 0.4
    capped = policy(initialSeconds=10, factor=2, maxSeconds=12, jitter=0.5)
    assert all(0 <= retry.next_delay(capped, 3, rng) <= 12 for _ in range(500))


def test_decide_retries_then_dead_letters_and_grows_memory_on_oom() -> None:
    p = RetrySpec.model_validate({
        "maxAttempts": 3, "backoff": {"initialSeconds": 1, "factor": 2, "jitter": 0},
        "oom": {"memoryMultiplier": 4, "memoryCeiling": "512Mi"},
        "retryOn": ["error", "oom"],
    })
    first = retry.decide(p, attempts_used=1, failure=FailureType.ERROR, retryable=True,
                     memory_bytes=64 * MIB)
    assert (first.outcome, first.delay_seconds, first.memory_bytes) == (
        Outcome.RETRY, 1, 64 * MIB)
    oom = retry.decide(p, attempts_used=2, failure=FailureType.OOM, retryable=True,
                   memory_bytes=200 * MIB)
    assert (oom.outcome, oom.delay_seconds, oom.memory_bytes) == (Outcome.RETRY, 2, 512 * MIB)
    last = retry.decide(p, attempts_used=3, failure=FailureType.ERROR, retryable=True,
                    memory_bytes=64 * MIB)
    assert last.outcome is Outcome.DEAD_LETTER
    not_listed = retry.decide(p, attempts_used=1, failure=FailureType.TIMEOUT, retryable=True,
                          memory_bytes=64 * MIB)
    assert not_listed.outcome is Outcome.FAIL
    aborted = retry.decide(p, attempts_used=1, failure=FailureType.ERROR, retryable=False,
                       memory_bytes=64 * MIB)
    assert aborted.outcome is Outcome.FAIL


async def test_backoff_in_the_database_dead_letter_and_requeue(
    database_url: str, db: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(ledger.LEDGER_ENV, str(ledger_path))
    spec = TaskSpec.model_validate({
        "entrypoint": "examples.flaky:always_fails",
        "resources": {"memory": "256Mi"},
        "retry": {"maxAttempts": 3,
                  "backoff": {"initialSeconds": 1, "factor": 2, "jitter": 0}},
    })
    stack = await Standalone(settings(database_url), ProcessBackend(max_parallel=2)).start()
    try:
        await control.register_task(
            stack.engine, TaskDefinition(namespace="default", name="always-fails", spec=spec))
        run, _ = await control.trigger(stack.engine, "default", "always-fails",
                                       TriggerRequest(payload={"n": 1}))

        # While it waits out its first backoff, the queue row says when it may run.
        await wait_for_status(stack.engine, run.id, {RunStatus.RETRYING}, timeout=30)
        waiting = await db.fetchrow(
            "SELECT q.available_at - a.finished_at AS gap FROM run_queue q "
            "JOIN attempts a ON a.run_id = q.run_id AND a.attempt = 1 WHERE q.run_id = $1",
            run.id)
        assert waiting is not None and waiting["gap"] == timedelta(seconds=1)

        dead = await wait_for_status(stack.engine, run.id, {RunStatus.DEAD_LETTERED}, timeout=60)
        assert dead.attempt == 3 and dead.max_attempts == 3
        assert dead.error is not None and dead.error.type == FailureType.ERROR
        assert dead.error.name == "RuntimeError"
        assert dead.error.message == "always-fails failed on attempt 3, as designed"
        assert dead.error.traceback and "RuntimeError" in dead.error.traceback
        assert dead.attempts is not None
        assert [a.status for a in dead.attempts] == ["failed"] * 3
        messages = [a.error.message for a in dead.attempts if a.error]
        assert messages == [f"always-fails failed on attempt {n}, as designed" for n in (1, 2, 3)]

        gaps = await db.fetch(
            "SELECT a.attempt, extract(epoch FROM a.started_at - p.finished_at)::float AS gap "
            "FROM attempts a JOIN attempts p ON p.run_id = a.run_id AND p.attempt = a.attempt - 1 "
            "WHERE a.run_id = $1 ORDER BY a.attempt", run.id)
        measured = {r["attempt"]: r["gap"] for r in gaps}
        assert measured.keys() == {2, 3}
        for attempt, delay in ((2, 1.0), (3, 2.0)):
            assert delay <= measured[attempt] < delay + 1.5, measured

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{stack.url}/v1/dead-letters") as resp:
                assert resp.status == 200
                listed = await resp.json()
            assert [r["id"] for r in listed["runs"]] == [run.id]
            assert listed["runs"][0]["error"]["message"].startswith("always-fails failed")

            async with http.post(f"{stack.url}/v1/runs/{run.id}/requeue") as resp:
                assert resp.status == 200, await resp.text()
                requeued = await resp.json()
            assert requeued["status"] == "queued" and requeued["maxAttempts"] == 6
            assert requeued["error"] is None

            async with http.get(f"{stack.url}/v1/dead-letters") as resp:
                assert (await resp.json())["runs"] == []

            again = await wait_for_status(stack.engine, run.id, {RunStatus.DEAD_LETTERED},
                                          timeout=60)
            # A fresh budget of three attempts, numbered on from the first budget.
            assert again.attempt == 6
            assert again.error is not None
            assert again.error.message == "always-fails failed on attempt 6, as designed"

            async with http.post(f"{stack.url}/v1/runs/{run.id}/requeue") as resp:
                assert resp.status == 200
            await wait_for_status(stack.engine, run.id, {RunStatus.RUNNING, RunStatus.RETRYING},
                                  timeout=30)
            await control.cancel(stack.engine, run.id)
            # Running, it ends when its attempt does (always-fails fails at once).
            await wait_for_status(stack.engine, run.id, {RunStatus.CANCELLED}, timeout=30)
            async with http.post(f"{stack.url}/v1/runs/{run.id}/requeue") as resp:
                assert resp.status == 409  # a cancelled run is not requeued
                assert "cancelled" in (await resp.json())["error"]["message"]
    finally:
        await stack.stop()

    executed = Counter(e["attempt"] for e in ledger.read(str(ledger_path)) if e["run"] == run.id)
    assert [executed[n] for n in range(1, 7)] == [1] * 6
    gaps = await db.fetch(
        "SELECT extract(epoch FROM a.started_at - p.finished_at)::float AS gap "
        "FROM attempts a JOIN attempts p ON p.run_id = a.run_id AND p.attempt = a.attempt - 1 "
        "WHERE a.run_id = $1 AND a.attempt IN (5, 6) ORDER BY a.attempt", run.id)
    # The second budget backs off from its own first failure again: 1 s, then 2 s.
    assert 1.0 <= gaps[0]["gap"] < 2.5 and 2.0 <= gaps[1]["gap"] < 3.5
