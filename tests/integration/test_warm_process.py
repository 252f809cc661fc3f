"""Hot workers: the process backend's warm runners, with real subprocesses and Postgres.

A warm runner is a ``waypost-runner`` process that, after its attempt, long-polls
for the next attempt of the same task and spec fingerprint. Each test reads what
the task itself reports (its pid and a module-level counter) and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import FailureType, RunStatus
from waypost.model.run import Run, TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone

MIB = 1024 * 1024


def probe_spec(**overrides: Any) -> TaskSpec:
    body: dict[str, Any] = {
        "entrypoint": "examples.warm:probe",
        "resources": {"memory": "256Mi"},
        "retry": {"maxAttempts": 2, "backoff": {"initialSeconds": 0.1, "jitter": 0}},
    }
    body.update(overrides)
    return TaskSpec.model_validate(body)


async def register(stack: Standalone, name: str, spec: TaskSpec) -> None:
    await control.register_task(stack.engine,
                                TaskDefinition(namespace="default", name=name, spec=spec))


async def run(stack: Standalone, task: str, payload: Any = None,
              statuses: frozenset[RunStatus] = frozenset({RunStatus.SUCCEEDED})) -> Run:
    created, _ = await control.trigger(stack.engine, "default", task,
                                       TriggerRequest(payload=payload))
    return await wait_for_status(stack.engine, created.id, statuses, timeout=60)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Standalone]:
    backend = ProcessBackend(max_parallel=4, warm=True, warm_max_total=3, memory_poll_seconds=0.02)
    app = await Standalone(settings(database_url), backend).start()
    try:
        yield app
    finally:
        await app.stop()


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_same_process_serves_consecutive_runs(stack: Standalone, db: asyncpg.Pool) -> None:
    await register(stack, "probe", probe_spec())
    first = await run(stack, "probe")
    second = await run(stack, "probe")
    third = await run(stack, "probe")
    assert first.result["pid"] == second.result["pid"] == third.result["pid"]
    assert [r.result["count"] for r in (first, second, third)] == [1, 2, 3]
    # The later attempts were bound to the warm runner in the store.
    workers = await db.fetch(
        "SELECT worker FROM attempts WHERE run_id = ANY($1::uuid[]) ORDER BY started_at",
        [second.id, third.id])
    assert all(w["worker"] and w["worker"].startswith("warm:") for w in workers)
    # The first run starts its runner cold, unless pre-warming (its queue-depth signal
    # sees the run waiting for the dispatcher) started one for it a moment before the
    # claim: then that idle runner takes it, and all three runs are hits. Both happen
    # (CI on a quiet machine saw 3 hits); the worker of the first attempt says which.
    first_worker = await db.fetchval("SELECT worker FROM attempts WHERE run_id = $1", first.id)
    prewarmed = bool(first_worker) and str(first_worker).startswith("warm:")
    hits, misses = (3, 0) if prewarmed else (2, 1)
    assert stack.engine.warm.stats.hits[("default", "probe")] == hits
    # The memory report and the task's start ride on the warm hand-off and the next
    # poll as on a cold runner's requests (failure patterns read them).
    await stack.engine.usage.flush()
    reports = await db.fetch(
        "SELECT peak_memory_bytes, task_seconds, runner_started_at FROM attempts"
        " WHERE run_id = ANY($1::uuid[])", [second.id, third.id])
    assert all(r["peak_memory_bytes"] > 0 and r["task_seconds"] is not None
               and r["runner_started_at"] is not None for r in reports), reports
    # The same figures on /metrics: hits, misses (the first run, when cold), pool size,
    # and the dispatch latency histograms. A series never counted is absent: 0.
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}

    def sample(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)
    probe = {"namespace": "default", "task": "probe"}
    assert sample("waypost_warm_hits_total", **probe) == hits
    assert sample("waypost_warm_misses_total", **probe) == misses
    assert sample("waypost_warm_pool_runners", **probe, state="idle") == 1
    assert sample("waypost_dispatch_latency_seconds_count", kind="warm") == hits
    assert sample("waypost_dispatch_latency_seconds_count", kind="cold") == misses


async def test_nothing_of_run_a_is_visible_in_run_b(stack: Standalone) -> None:
    await register(stack, "probe", probe_spec())
    a = await run(stack, "probe", {"leave": True})
    b = await run(stack, "probe")
    assert a.result["pid"] == b.result["pid"]  # the same process, so a real test
    assert b.result["count"] == 2  # module state is what it keeps (documented)
    # Run A left an env var, a temp file and a checkpoint; run B sees none of them.
    assert b.result["env"] is None
    assert b.result["tmpFile"] is False
    assert b.result["checkpoints"] == []
    # Neither run sees a credential or a run id in its environment.
    assert a.result["waypostEnv"] == [] and b.result["waypostEnv"] == []
    assert a.result["runId"] != b.result["runId"]


async def test_pool_off_gives_one_process_per_attempt(stack: Standalone) -> None:
    await register(stack, "cold-probe", probe_spec(warmPool={"enabled": False}))
    results = [(await run(stack, "cold-probe")).result for _ in range(3)]
    assert len({r["pid"] for r in results}) == 3
    assert [r["count"] for r in results] == [1, 1, 1]
    assert stack.backend.warm_workers() == {}  # type: ignore[attr-defined]
    # A cold runner reads its credential from the environment, then removes it.
    assert all(not [k for k in r["waypostEnv"] if "TOKEN" in k] for r in results)


async def test_idle_ttl_ends_the_warm_process(stack: Standalone, db: asyncpg.Pool) -> None:
    await register(stack, "short-ttl", probe_spec(warmPool={"idleTTLSeconds": 1}))
    first = await run(stack, "short-ttl")
    backend: ProcessBackend = stack.backend
    await wait_until(lambda: backend.warm_workers() == {}, timeout=20)
    reason = await db.fetchval("SELECT retired_reason FROM warm_runners WHERE task = 'short-ttl'")
    assert reason == "idle_ttl"
    with pytest.raises(ProcessLookupError):
        os.kill(first.result["pid"], 0)
    second = await run(stack, "short-ttl")
    assert second.result["pid"] != first.result["pid"]
    assert second.result["count"] == 1


async def test_caps_per_task_and_global(stack: Standalone) -> None:
    backend: ProcessBackend = stack.backend
    # maxWarm 1 for this task; the backend's global cap is 3.
    await register(stack, "one-warm", probe_spec(warmPool={"maxWarm": 1}))
    created = [
        (await control.trigger(stack.engine, "default", "one-warm",
                               TriggerRequest(payload={"sleep": 0.5})))[0]
        for _ in range(4)
    ]
    peak = 0
    while True:
        per_task = sum(1 for w in backend._warm.values() if w.task == ("default", "one-warm"))
        peak = max(peak, per_task)
        runs = [await control.get(stack.engine, c.id) for c in created]
        if all(r.status == RunStatus.SUCCEEDED for r in runs):
            break
        await asyncio.sleep(0.05)
    assert peak == 1
    # The global cap: three tasks fill it, a fourth evicts the least recently used.
    # The evicted process counts until it has exited, so the fourth task's first
    # run is one-shot and its next one finds the room.
    for name in ("g1", "g2", "g3", "g4"):
        await register(stack, name, probe_spec())
    for name in ("g1", "g2", "g3"):
        await run(stack, name)
    await register(stack, "one-warm", probe_spec(warmPool={"maxWarm": 1}))
    assert len(backend._warm) <= 3
    await run(stack, "g4")
    assert len(backend._warm) <= 3
    for _ in range(200):
        if len(backend._warm) < 3:
            break
        await asyncio.sleep(0.05)
    second = await run(stack, "g4")
    assert len(backend._warm) <= 3
    tasks = sorted(w.task[1] for w in backend._warm.values() if not w.retired)
    assert "g4" in tasks, tasks
    assert second.result["pid"] in backend.warm_workers().values()
    assert stack.engine.warm.stats.evictions["evicted"] >= 1
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as response:
        assert 'waypost_warm_evictions_total{reason="evicted"}' in await response.text()


async def test_oom_in_a_warm_process_fails_as_oom_and_is_replaced(stack: Standalone) -> None:
    await register(stack, "hog", probe_spec(resources={"memory": "128Mi"},
                                            retry={"maxAttempts": 2,
                                                   "backoff": {"initialSeconds": 0.1,
                                                               "jitter": 0}}))
    warm_run = await run(stack, "hog")
    pid = warm_run.result["pid"]
    # The next run lands in the same warm process and grows past 128Mi.
    hog = await run(stack, "hog", {"grow_mb": 200},
                    statuses=frozenset({RunStatus.DEAD_LETTERED, RunStatus.SUCCEEDED}))
    assert hog.attempts is not None
    first = hog.attempts[0]
    assert first.error is not None and first.error.type == FailureType.OOM
    assert first.worker is not None and first.worker.startswith("warm:")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # The retry ran (and failed the same way) in a fresh process, not the killed one.
    assert len(hog.attempts) == 2
    after = await run(stack, "hog")
    assert after.result["pid"] != pid


async def test_stalled_warm_runner_gets_409_and_takes_nothing_more(
    database_url: str, db: asyncpg.Pool
) -> None:
    # Fast heartbeats so the lease (1 s x 3) runs out quickly.
    backend = ProcessBackend(max_parallel=4, warm=True, warm_max_total=3)
    stack = await Standalone(settings(database_url), backend).start()
    try:
        await register(stack, "stall", probe_spec())
        first = await run(stack, "stall")
        (runner_id, pid), = backend.warm_workers().items()
        # Freeze the warm runner, then give it a run: it is bound to it, but never beats.
        os.kill(pid, signal.SIGSTOP)
        try:
            created, _ = await control.trigger(stack.engine, "default", "stall",
                                               TriggerRequest(payload={}))
            await wait_for_status(stack.engine, created.id, {RunStatus.SUCCEEDED}, timeout=60)
        finally:
            # The backend stopped it when its attempt was declared lost (SIGTERM,
            # then SIGKILL to a process that does not stop); wake it if it is there.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        done = await control.get(stack.engine, created.id, details=True)
        assert done.attempts is not None and len(done.attempts) == 2
        lost = done.attempts[0]
        assert lost.error is not None and lost.error.type == FailureType.LOST
        assert lost.worker == f"warm:{runner_id}"
        # The woken runner: its registration is retired as lost, so its poll is a 409,
        # and it got nothing after; the retry ran in another process.
        assert done.result["pid"] != pid
        row = await db.fetchrow("SELECT state, retired_reason FROM warm_runners "
                                "WHERE runner_id = $1", runner_id)
        assert (row["state"], row["retired_reason"]) == ("retired", "lost")
        # Whatever it still holds: its runner credential polls into a 409, and so
        # does its lost attempt's credential.
        credential = stack.engine.signer.issue_runner(runner_id)
        token = await db.fetchval("SELECT claim_token FROM attempts WHERE run_id = $1 "
                                  "AND attempt = 1", created.id)
        attempt_credential = stack.engine.signer.issue(uuid.UUID(str(created.id)), token)
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{stack.url}/v1/runner/warm/poll", json={"waitSeconds": 0},
                headers={"Authorization": f"Bearer {credential}"},
            ) as response:
                assert response.status == 409
            async with http.post(
                f"{stack.url}/v1/runner/heartbeat", json={},
                headers={"Authorization": f"Bearer {attempt_credential}"},
            ) as response:
                assert response.status == 409
        # The first run may have been its too (a pre-warmed runner takes it as a warm
        # one; a one-shot process that stays warm took it cold): not counted.
        bound = await db.fetchval(
            "SELECT count(*) FROM attempts WHERE worker = $1 AND run_id <> $2",
            f"warm:{runner_id}", uuid.UUID(str(first.id)))
        assert bound == 1  # only the attempt it stalled on
    finally:
        await stack.stop()


async def test_warm_poll_refuses_bad_credentials(stack: Standalone) -> None:
    async with aiohttp.ClientSession() as http:
        for header in ("", "Bearer nonsense", f"Bearer wpr.{uuid.uuid4().hex}.00"):
            async with http.post(f"{stack.url}/v1/runner/warm/poll", json={},
                                 headers={"Authorization": header} if header else {}) as r:
                assert r.status == 401, header
                body = await r.json()
                assert body["error"]["code"]
        good = stack.engine.signer.issue_runner(uuid.uuid4())
        async with http.post(f"{stack.url}/v1/runner/warm/poll",
                             json={"waitSeconds": "soon"},
                             headers={"Authorization": f"Bearer {good}"}) as r:
            assert r.status == 400
            assert "waitSeconds" in (await r.json())["error"]["message"]
        # A success carried by the poll needs that attempt's own, valid credential.
        run_id = str(uuid.uuid4())
        other = stack.engine.signer.issue(uuid.uuid4(), 7)
        # A well-signed credential of an attempt that is not current (here: none such):
        # the success is refused as a stale attempt's, 409, whatever the runner.
        stale = stack.engine.signer.issue(uuid.UUID(run_id), 7)
        for finished, status, field in (
                ({"runId": run_id, "attempt": 1, "succeeded": True, "credential": stale,
                  "result": {"x": 1}}, 409, None),
                ({"runId": run_id, "attempt": 1, "succeeded": True}, 400,
                 "finished.credential"),
                ({"runId": run_id, "attempt": 1, "succeeded": True, "credential": "wpa.x.y"},
                 401, None),
                ({"runId": run_id, "attempt": 1, "succeeded": True, "credential": other},
                 400, "finished.credential")):
            async with http.post(f"{stack.url}/v1/runner/warm/poll",
                                 json={"finished": finished, "waitSeconds": 0},
                                 headers={"Authorization": f"Bearer {good}"}) as r:
                assert r.status == status, finished
                if field:
                    assert field in (await r.json())["error"]["message"]


async def test_changed_spec_retires_the_old_warm_process(
    stack: Standalone, db: asyncpg.Pool
) -> None:
    await register(stack, "probe", probe_spec())
    before = await run(stack, "probe")
    backend: ProcessBackend = stack.backend
    assert list(backend.warm_workers().values()) == [before.result["pid"]]
    # A new environment is a new fingerprint: the idle process can never serve it.
    await register(stack, "probe", probe_spec(env={"RELEASE": "2"}))
    await wait_until(lambda: backend.warm_workers() == {}, timeout=20)
    reason = await db.fetchval("SELECT retired_reason FROM warm_runners WHERE task = 'probe'")
    assert reason == "spec_changed"
    after = await run(stack, "probe")
    assert after.result["pid"] != before.result["pid"] and after.result["count"] == 1
