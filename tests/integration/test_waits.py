"""Durable waits with real runner processes against real Postgres (issue 13).

- a 10 s sleep suspends the run: no process of it exists meanwhile, and it resumes
  within 1 s of due, passing through the step before the wait (ledger);
- an engine restart during a sleep loses nothing;
- a token completed by another process (the CLI), a double completion, a timeout;
- 50 children with maxConcurrency 5 in the parent's own queue: the waiting parent
  holds no slot, a retried parent starts no child twice (ledger);
- a dead-lettered child ends the wait with its error; cancelling a parent cancels
  its children; bad waits and unknown child tasks fail with a message naming them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from examples import hello, ledger
from examples import waits as examples
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import Run, TriggerRequest
from waypost.sdk.client import WaypostClient
from waypost.sdk.errors import WaypostAPIError
from waypost.standalone import Standalone

REPO = Path(__file__).resolve().parents[2]
TASKS = (examples.nap, examples.nap_sync, examples.approval, examples.square,
         examples.fan_out, examples.one_child, hello.hello)


async def _stack(database_url: str, max_parallel: int = 4) -> Standalone:
    app = await Standalone(settings(database_url, missed_heartbeats=10,
                                    wait_poll_seconds=0.2, wait_recheck_seconds=5.0),
                           ProcessBackend(max_parallel=max_parallel)).start()
    await app.register(*TASKS)
    return app


@pytest.fixture
async def stack(database_url: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Standalone]:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    app = await _stack(database_url)
    try:
        yield app
    finally:
        await app.stop()


def _effects(tmp_path: Path, run_id: str) -> Counter[str]:
    return Counter(e["effect"] for e in ledger.read(str(tmp_path / "ledger.jsonl"))
                   if e["run"] == run_id)


def _processes_of(run_id: str) -> list[int]:
    """Processes of this machine whose environment names the run (its runners)."""
    found = []
    needle = f"WAYPOST_RUN_ID={run_id}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


async def _runner_exits(app: Standalone, run_id: str, timeout: float = 30.0) -> None:
    """Wait until the suspended attempt's runner process has exited. The run is
    `waiting` as soon as the suspension commits; the runner's answer, its last log
    lines and the interpreter's exit come after that (seconds on a loaded machine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while _processes_of(run_id) or uuid.UUID(run_id) in app.backend.running():
        assert asyncio.get_running_loop().time() < deadline, (
            f"the runner of suspended run {run_id} still runs after {timeout} s: "
            f"{_processes_of(run_id)}")
        await asyncio.sleep(0.1)


async def _trigger(app: Standalone, task: str, payload: object) -> Run:
    run, _ = await control.trigger(app.engine, "default", task, TriggerRequest(payload=payload))
    return run


async def test_long_sleep_suspends_and_resumes_on_time(stack: Standalone, tmp_path: Path) -> None:
    run = await _trigger(stack, "nap", {"seconds": 10})
    waiting = await wait_for_status(stack.engine, run.id, {RunStatus.WAITING}, timeout=60)
    assert waiting.waiting is not None and waiting.waiting.kind == "sleep"
    assert waiting.waiting.step_key == "nap" and waiting.waiting.until is not None
    due = waiting.waiting.until
    assert waiting.attempts is not None and waiting.attempts[-1].status == "suspended"
    # The process is gone while it sleeps, and the run is not in the hot table.
    await _runner_exits(stack, run.id)
    samples = 0
    watch_started = asyncio.get_running_loop().time()
    while (await control.get(stack.engine, uuid.UUID(run.id))).status is RunStatus.WAITING:
        assert _processes_of(run.id) == [], "a runner of the sleeping run exists"
        assert uuid.UUID(run.id) not in stack.backend.running()
        in_hot = await stack.engine.pool.fetchval(
            "SELECT count(*) FROM waypost.run_queue WHERE run_id = $1", uuid.UUID(run.id))
        assert in_hot == 0
        samples += 1
        await asyncio.sleep(0.5)
    # The rest of the 10 s after the runner exited (most of it; seconds go to the
    # exit on a loaded machine) was watched, up to the resumption.
    watched = asyncio.get_running_loop().time() - watch_started
    assert samples >= 3 and watched >= 1.5, (samples, watched)
    done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    assert done.attempts is not None
    assert [a.status for a in done.attempts] == ["suspended", "succeeded"]
    resumed = done.attempts[1].started_at
    assert 0 <= (resumed - due).total_seconds() <= 1.0, (due, resumed)
    # The step before the wait ran once; the code after it once; a suspension is
    # not a retry, so the retry budget is untouched.
    assert _effects(tmp_path, run.id) == Counter({"before": 1, "after": 1})
    assert done.result["attempt"] == 2
    # The Task allows 3 attempts; the suspended one is not counted against them, so
    # after 2 attempts 2 retries are left (3 + 1 suspension - 2).
    assert (done.attempt, done.max_attempts) == (2, 4)
    keys = [c.key for c in done.checkpoints or []]
    assert keys == ["before", "nap"]


async def test_short_sleep_stays_in_process(stack: Standalone, tmp_path: Path) -> None:
    run = await _trigger(stack, "nap", {"seconds": 1})
    done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    assert [a.status for a in done.attempts or []] == ["succeeded"]
    assert _effects(tmp_path, run.id) == Counter({"before": 1, "after": 1})


async def test_sync_task_suspends_too(stack: Standalone, tmp_path: Path) -> None:
    run = await _trigger(stack, "nap-sync", {"seconds": 6})
    await wait_for_status(stack.engine, run.id, {RunStatus.WAITING}, timeout=60)
    done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    assert [a.status for a in done.attempts or []] == ["suspended", "succeeded"]
    assert _effects(tmp_path, run.id) == Counter({"before": 1, "after": 1})


async def test_engine_restart_during_sleep_loses_nothing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    first = await _stack(database_url)
    try:
        run = await _trigger(first, "nap", {"seconds": 6})
        await wait_for_status(first.engine, run.id, {RunStatus.WAITING}, timeout=60)
    finally:
        await first.stop()
    await asyncio.sleep(2.0)
    second = await _stack(database_url)
    try:
        done = await wait_for_status(second.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    finally:
        await second.stop()
    assert [a.status for a in done.attempts or []] == ["suspended", "succeeded"]
    assert _effects(tmp_path, run.id) == Counter({"before": 1, "after": 1})


async def _token_of(client: WaypostClient, run_id: str) -> dict[str, object]:
    for _ in range(300):
        tokens = await client.list_tokens(run_id=run_id)
        if tokens and tokens[0]["waitingRuns"]:
            return tokens[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} made no token it waits on")


async def test_token_completed_by_another_process(stack: Standalone, tmp_path: Path) -> None:
    run = await _trigger(stack, "approval", {"timeout": "1h"})
    async with WaypostClient(stack.url) as client:
        token = await _token_of(client, run.id)
        waiting = await wait_for_status(stack.engine, run.id, {RunStatus.WAITING})
        assert waiting.waiting is not None and waiting.waiting.token_id == token["id"]
        await _runner_exits(stack, run.id)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "waypost.cli", "tokens", "complete",
                             str(token["id"]), json.dumps({"approved": True, "by": "ops"})],
            cwd=REPO, env={**env, "WAYPOST_URL": stack.url}, capture_output=True, text=True,
            timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        # A second completion is refused and changes nothing.
        with pytest.raises(WaypostAPIError) as second:
            await client.complete_token(str(token["id"]), {"approved": False})
        assert second.value.status == 409
    done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    assert done.result == {"approved": True, "by": "ops"}
    assert _effects(tmp_path, run.id) == Counter({"asked": 1, "decided": 1})


async def test_token_timeout(stack: Standalone, tmp_path: Path) -> None:
    run = await _trigger(stack, "approval", {"timeout": 3})
    done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    assert done.result == {"approved": False, "timedOut": True}
    assert [a.status for a in done.attempts or []] == ["suspended", "succeeded"]
    assert _effects(tmp_path, run.id) == Counter({"asked": 1, "timed-out": 1})
    async with WaypostClient(stack.url) as client:
        (token,) = await client.list_tokens(run_id=run.id)
        assert token["status"] == "timed_out"
        with pytest.raises(WaypostAPIError) as late:
            await client.complete_token(str(token["id"]), {"approved": True})
        assert (late.value.status, late.value.code) == (409, "token_timed_out")


@pytest.mark.timeout(900)
async def test_fifty_children_parent_holds_no_slot_and_retries_without_duplicates(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    app = await _stack(database_url, max_parallel=6)
    peak = 0
    try:
        parent = await _trigger(app, "fan-out", {"n": 50, "pause": 0.3,
                                                 "failAfterChildren": True})
        while True:
            run = await control.get(app.engine, uuid.UUID(parent.id))
            if run.status.is_final:
                break
            counts = await app.engine.pool.fetch(
                "SELECT count(*) FILTER (WHERE state = 'running') AS running FROM "
                "waypost.run_queue h JOIN waypost.queues q ON q.id = h.queue_id "
                "WHERE q.name = 'fanout'")
            running = counts[0]["running"]
            assert running <= 5
            peak = max(peak, running)
            await asyncio.sleep(0.05)
        children = await control.get(app.engine, uuid.UUID(parent.id), details=True)
        kids = await app.engine.pool.fetch(
            "SELECT id, status FROM waypost.runs WHERE parent_run_id = $1", uuid.UUID(parent.id))
    finally:
        await app.stop()
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.result == {"sum": sum(i * i for i in range(50)), "failed": [], "errors": []}
    # Five children ran at once in the queue the waiting parent is in: it held no slot.
    assert peak == 5
    assert len(kids) == 50 and {k["status"] for k in kids} == {"succeeded"}
    entries = ledger.read(str(tmp_path / "ledger.jsonl"))
    per_child = Counter(e["i"] for e in entries if e["effect"] == "square")
    assert per_child == Counter(range(50)), "a child ran twice or not at all"
    statuses = [a.status for a in children.attempts or []]
    # Suspended while the children ran, failed once after them, then succeeded.
    assert statuses[0] == "suspended" and statuses[-2:] == ["failed", "succeeded"]
    assert _effects(tmp_path, parent.id)["children-done"] == len(statuses) - 1


async def test_dead_lettered_child_ends_the_wait_with_its_error(stack: Standalone) -> None:
    parent = await _trigger(stack, "fan-out", {"n": 3, "pause": 0.1, "failChildren": [1]})
    done = await wait_for_status(stack.engine, parent.id, {RunStatus.SUCCEEDED}, timeout=120)
    assert done.result["sum"] == 0 + 4
    assert len(done.result["failed"]) == 1
    assert "child 1 was told to fail" in done.result["errors"][0]
    failed = await control.get(stack.engine, uuid.UUID(done.result["failed"][0]))
    assert failed.status is RunStatus.DEAD_LETTERED
    assert failed.parent_run_id == parent.id
    async with WaypostClient(stack.url) as client:
        listed = await client.children(parent.id)
        assert len(listed) == 3 and all(c["parentRunId"] == parent.id for c in listed)


async def test_cancelling_a_parent_cancels_its_children(stack: Standalone) -> None:
    parent = await _trigger(stack, "fan-out", {"n": 4, "pause": 30})
    await wait_for_status(stack.engine, parent.id, {RunStatus.WAITING}, timeout=60)
    cancelled = await control.cancel(stack.engine, uuid.UUID(parent.id))
    assert cancelled.status is RunStatus.CANCELLED
    async with WaypostClient(stack.url) as client:
        for _ in range(200):
            kids = await client.children(parent.id)
            if all(k["status"] == "cancelled" for k in kids):
                break
            await asyncio.sleep(0.2)
    assert len(kids) == 4 and {k["status"] for k in kids} == {"cancelled"}


async def test_detached_children_go_on(stack: Standalone) -> None:
    parent = await _trigger(stack, "fan-out", {"n": 2, "pause": 0.2})
    await wait_for_status(stack.engine, parent.id, {RunStatus.WAITING}, timeout=60)
    await control.cancel(stack.engine, uuid.UUID(parent.id), children="detach")
    async with WaypostClient(stack.url) as client:
        kids = await client.children(parent.id)
    for kid in kids:
        await wait_for_status(stack.engine, kid["id"], {RunStatus.SUCCEEDED}, timeout=60)


@pytest.mark.parametrize(("payload", "needle"), [
    ({"task": "no-such-task", "child": 1}, "no-such-task"),
    ({"task": "square", "child": {"i": 2, "fail": True}, "raise": True},
     "child 2 was told to fail"),
])
async def test_bad_child_fails_the_parent_naming_it(
    stack: Standalone, payload: dict[str, object], needle: str
) -> None:
    parent = await _trigger(stack, "one-child", payload)
    done = await wait_for_status(stack.engine, parent.id,
                                 {RunStatus.DEAD_LETTERED, RunStatus.FAILED}, timeout=120)
    assert done.error is not None and needle in done.error.message


@pytest.mark.timeout(1200)
async def test_engine_killed_while_100_runs_sleep_each_wakes_once(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL of the engine process while 100 runs sleep: a new engine wakes every
    one of them exactly once (ledger: one 'before' and one 'after' per run; attempts
    suspended then succeeded)."""
    from waypost.store import embedded

    env = {**os.environ, ledger.LEDGER_ENV: str(tmp_path / "ledger.jsonl")}

    async def start() -> tuple[asyncio.subprocess.Process, str]:
        port = embedded.free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.engine_process", database_url, str(port),
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line.strip() == b"ready", line
        return proc, f"http://127.0.0.1:{port}"

    first, url = await start()
    try:
        async with WaypostClient(url, request_timeout=300) as client:
            made = await client.batch_trigger(
                "nap", [{"payload": {"seconds": 90}} for _ in range(100)])
            ids = [r.id for r in made]
            # 100 runner processes, 6 at a time, on a shared machine: the sleep (90 s)
            # outlasts starting them all (about 40 s at load 10), so that every run is
            # asleep when the engine dies.
            deadline = asyncio.get_running_loop().time() + 300
            while True:
                waiting = await client.runs_page(status="waiting", limit=1, count=True)
                if waiting.total == 100:
                    break
                woke = await client.runs_page(status="succeeded", limit=1, count=True)
                assert woke.total == 0 and asyncio.get_running_loop().time() < deadline, (
                    f"never were all 100 asleep at once: {waiting.total} waiting, "
                    f"{woke.total} already done")
                await asyncio.sleep(0.2)
    finally:
        first.kill()  # SIGKILL: no shutdown of any kind
        await first.wait()
    second, url = await start()
    try:
        async with WaypostClient(url, request_timeout=300) as client:
            for _ in range(1800):
                done = await client.runs_page(status="succeeded", limit=1, count=True)
                if done.total == 100:
                    break
                await asyncio.sleep(0.2)
            assert done.total == 100
            for run_id in ids[:10]:
                run = await client.get_run(run_id)
                assert [a["status"] for a in run["attempts"]] == ["suspended", "succeeded"]
    finally:
        second.kill()
        await second.wait()
    effects = Counter((e["run"], e["effect"]) for e in ledger.read(str(tmp_path / "ledger.jsonl")))
    for run_id in ids:
        assert effects[(run_id, "before")] == 1 and effects[(run_id, "after")] == 1, run_id
