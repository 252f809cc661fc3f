"""Local fault scenarios against a real Postgres and real runner processes.

Each scenario ends with :func:`harness.check_invariants` and prints a
``FAULT-REPORT`` line with what it measured (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from examples import ledger
from tests.factories import settings, wait_for_status
from tests.faults import fault_tasks, harness
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.engine.backend import AttemptExit, ExitHandler
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.runner.main import EXIT_STOPPED
from waypost.standalone import Standalone
from waypost.store.embedded import EmbeddedPostgres

# Minutes of faults each, on a machine that may be busy.
pytestmark = pytest.mark.timeout(1200)


async def test_engine_sigkilled_during_dispatch_20_times(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """The engine is SIGKILLed 20 times at random moments while it claims, starts and
    finishes attempts; each time it is started again. Nothing is lost or done twice."""
    rng = random.Random(16)
    dsn = own_postgres.dsn_for("waypost")
    engine = harness.DevEngine(dsn, tmp_path / "engine")
    engine.start()
    await engine.ready()
    run_ids: list[str] = []
    recoveries: list[float] = []
    async with aiohttp.ClientSession() as http:
        for i in range(60):
            run_ids.append(await harness.trigger(
                http, engine.url, {"steps": 3, "pause": 0.15}, f"kill-{i}"))
        try:
            for _ in range(20):
                # Dispatch is busy: claims, starts, checkpoints and completions in flight.
                await asyncio.sleep(harness.jitter(0.3, 2.5, rng))
                engine.signal(signal.SIGKILL)
                engine.wait(10)
                down = time.monotonic()
                engine.start()
                await engine.ready()
                recoveries.append(time.monotonic() - down)
                # More work arrives while it recovers.
                for j in range(3):
                    run_ids.append(await harness.trigger(
                        http, engine.url, {"steps": 3, "pause": 0.15},
                        f"kill-late-{len(run_ids)}-{j}"))
            settle = await harness.wait_until(
                lambda: harness.all_settled(dsn, run_ids), 240, "every run to finish")
            figures = await harness.check_invariants(dsn, run_ids, engine.ledger_path)
        finally:
            engine.stop()
    await harness.no_runner_left(engine.url)
    assert figures["statuses"] == {"succeeded": len(run_ids)}, figures
    harness.Report("engine SIGKILL x20 during dispatch", {
        **figures, "kills": 20,
        "restart_to_ready_s_max": round(max(recoveries), 2),
        "restart_to_ready_s_median": round(sorted(recoveries)[len(recoveries) // 2], 2),
        "settle_after_last_kill_s": round(settle, 1)}).show()


async def test_sigterm_drains_attempts_in_flight_then_hands_over(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """SIGTERM with attempts in flight (README, "Stopping waypost dev"): the engine
    claims nothing more, lets the attempts in flight finish for up to
    WAYPOST_SHUTDOWN_GRACE seconds, and requeues the rest to resume from their last
    checkpoint. No run fails for the shutdown; the next engine finishes the rest."""
    dsn = own_postgres.dsn_for("waypost")
    engine = harness.DevEngine(dsn, tmp_path / "engine", env={"WAYPOST_SHUTDOWN_GRACE": "3"})
    engine.start()
    await engine.ready()
    async with aiohttp.ClientSession() as http:
        # Short runs finish inside the grace period; long ones cannot.
        short = [await harness.trigger(http, engine.url, {"steps": 2, "pause": 0.5},
                                       f"short-{i}") for i in range(2)]
        long = [await harness.trigger(http, engine.url, {"steps": 3, "pause": 4},
                                      f"long-{i}") for i in range(2)]
        queued = [await harness.trigger(http, engine.url, {"steps": 1, "pause": 0.1},
                                        f"queued-{i}") for i in range(4)]

        async def all_four_running() -> bool:
            conn = await asyncpg.connect(dsn)
            try:
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM waypost.runs WHERE status = 'running'") == 4)
            finally:
                await conn.close()
        await harness.wait_until(all_four_running, 120, "4 attempts in flight")
        await asyncio.sleep(1.0)
        sent = time.monotonic()
        engine.signal(signal.SIGTERM)
        code = await asyncio.to_thread(engine.wait, 60)
        stopped_in = time.monotonic() - sent
        assert code == 0
        assert not harness.runner_processes(engine.url), "a runner outlived the engine"

        conn = await asyncpg.connect(dsn)
        try:
            status = {str(r["id"]): r["status"] for r in await conn.fetch(
                "SELECT id, status FROM waypost.runs")}
            interrupted = await conn.fetch(
                "SELECT a.run_id, a.error->>'type' AS type, r.attempt_base FROM waypost.attempts a "
                "JOIN waypost.runs r ON r.id = a.run_id WHERE a.status = 'failed'")
        finally:
            await conn.close()
        assert all(status[r] == "succeeded" for r in short), status   # drained
        assert all(status[r] == "retrying" for r in long), status     # handed over
        assert all(status[r] == "queued" for r in queued), status     # never claimed
        assert {str(a["run_id"]) for a in interrupted} == set(long)
        assert all(a["type"] == "lost" for a in interrupted), interrupted
        # The interrupted attempt does not count against the retry budget.
        assert all(a["attempt_base"] == 1 for a in interrupted), interrupted

        engine.start()
        await engine.ready()
        runs = short + long + queued
        await harness.wait_until(lambda: harness.all_settled(dsn, runs), 120,
                                 "the next engine to finish the runs")
        figures = await harness.check_invariants(dsn, runs, engine.ledger_path)
        engine.stop()
    await harness.no_runner_left(engine.url)
    assert figures["statuses"] == {"succeeded": len(runs)}, figures
    harness.Report("SIGTERM with attempts in flight", {
        **figures, "sigterm_to_exit_s": round(stopped_in, 2), "drained": len(short),
        "handed_over": len(long)}).show()


class PartitionedBackend(ProcessBackend):
    """Real runner processes that the engine cannot stop, as a worker on a node cut off
    from the control plane: ``stop`` is recorded and does nothing. Exits are recorded."""

    def __init__(self) -> None:
        super().__init__(max_parallel=4)
        self.stops: list[tuple[uuid.UUID, str]] = []
        self.exits: list[AttemptExit] = []

    def set_exit_handler(self, handler: ExitHandler) -> None:
        async def record(exit: AttemptExit) -> None:
            self.exits.append(exit)
            await handler(exit)
        super().set_exit_handler(record)

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        self.stops.append((run_id, reason))


async def test_runner_frozen_past_its_lease_is_fenced(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner SIGSTOPped past its lease, then SIGCONTed: the engine gave its run to a
    new attempt meanwhile, so the woken runner's writes get 409 and it takes no further
    step; the run succeeds once, from the successor."""
    ledger_path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(ledger.LEDGER_ENV, str(ledger_path))
    backend = PartitionedBackend()
    stack = await Standalone(
        settings(database_url, heartbeat_interval_seconds=0.3, missed_heartbeats=3,
                 poll_interval_seconds=0.1), backend).start()
    try:
        await stack.register(fault_tasks.fault_steps)
        run, _ = await control.trigger(stack.engine, "default", "fault-steps", TriggerRequest(
            payload={"steps": 3, "pause": 1.0}))

        async def first_step_done() -> bool:
            return any(e["effect"] == "s0" for e in ledger.read(str(ledger_path)))
        await harness.wait_until(first_step_done, 60, "the first step")
        [frozen] = harness.runner_processes(stack.url)
        frozen.suspend()  # SIGSTOP
        stopped_at = time.monotonic()

        async def successor_running() -> bool:
            return await stack.engine.pool.fetchval(
                "SELECT count(*) FROM attempts WHERE run_id = $1", uuid.UUID(run.id)) >= 2
        await harness.wait_until(successor_running, 30, "a second attempt")
        taken_over = time.monotonic() - stopped_at
        assert (uuid.UUID(run.id), "heartbeat lost") in backend.stops
        await asyncio.sleep(1.0)
        frozen.resume()  # SIGCONT, while the successor runs

        done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)

        async def stale_runner_ended() -> bool:
            return len(backend.exits) == 2
        await harness.wait_until(stale_runner_ended, 30, "the woken runner to end")
        # It was told 409 (superseded) and stopped: exit code 3, nothing more reported.
        assert sorted(e.exit_code or 0 for e in backend.exits) == [0, EXIT_STOPPED], (
            backend.exits)
        entries = ledger.read(str(ledger_path))
        # The woken runner took no step after the one it was frozen in.
        assert not [e for e in entries if e["attempt"] == 1 and e["effect"] == "s2"], entries
        figures = await harness.check_invariants(
            stack.settings.database_url, [run.id], ledger_path)
    finally:
        await stack.stop()
    await harness.no_runner_left(stack.url)
    assert done.result == {"steps": 3}
    harness.Report("runner SIGSTOP past its lease, then SIGCONT", {
        **figures, "lease_s": 0.9, "new_attempt_after_s": round(taken_over, 2),
        "stale_runner_exit_code": EXIT_STOPPED}).show()


async def test_connection_cut_at_commit(
    own_postgres: EmbeddedPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection goes through a proxy that cuts it at one statement end in
    twelve, before or after the server got it: commits happen that the engine never
    hears of, and others are rolled back. For 60 s under load, then the proxy
    behaves; every run finishes once."""
    rng = random.Random(12)
    ledger_path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(ledger.LEDGER_ENV, str(ledger_path))
    faulty = asyncio.Event()

    def decide() -> str | None:
        if faulty.is_set() and rng.random() < 1 / 12:
            return rng.choice(["before", "after"])
        return None

    proxy = await harness.PgProxy(own_postgres.port, decide).start()
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/waypost"
    stack = await Standalone(
        settings(dsn, heartbeat_interval_seconds=0.5, missed_heartbeats=4,
                 poll_interval_seconds=0.2, start_timeout_seconds=5),
        ProcessBackend(max_parallel=4)).start()
    try:
        await stack.register(fault_tasks.fault_steps)
        load = harness.Load(stack.url, rate=1.0, payload={"steps": 3, "pause": 0.1})
        stop = asyncio.Event()
        faulty.set()
        loader = asyncio.get_running_loop().create_task(load.run(stop))
        await asyncio.sleep(60)
        faulty.clear()
        healed = time.monotonic()
        stop.set()
        await loader
        direct = own_postgres.dsn_for("waypost")
        await harness.wait_until(lambda: harness.all_settled(direct, load.run_ids), 180,
                                 "every run to finish")
        settled = time.monotonic() - healed
        figures = await harness.check_invariants(direct, load.run_ids, ledger_path)
    finally:
        await stack.stop()
        await proxy.close()
    await harness.no_runner_left(stack.url)
    assert figures["statuses"] == {"succeeded": len(load.run_ids)}, figures
    assert proxy.cuts["before"] > 0 and proxy.cuts["after"] > 0, proxy.cuts
    harness.Report("connection cut at COMMIT (1 in 12 statement ends, 60 s)", {
        **figures, "cuts_before_commit": proxy.cuts["before"],
        "cuts_after_commit": proxy.cuts["after"],
        "settled_after_heal_s": round(settled, 1)}).show()


async def test_postgres_restarted_under_load(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Postgres is restarted every 5-40 s for 3 minutes while a run is triggered every
    2 s (as DBOS tests itself); the engine rides through each restart."""
    rng = random.Random(40)
    dsn = own_postgres.dsn_for("waypost")
    engine = harness.DevEngine(dsn, tmp_path / "engine")
    engine.start()
    await engine.ready()
    # A run takes 1-10 s from trigger to end here (a runner process each), 4 at once.
    load = harness.Load(engine.url, rate=0.5, payload={"steps": 3, "pause": 0.1})
    stop = asyncio.Event()
    loader = asyncio.get_running_loop().create_task(load.run(stop))
    recoveries: list[float] = []
    restarts = 0
    try:
        end = time.monotonic() + 180
        while True:
            wait = harness.jitter(5, 40, rng)
            if time.monotonic() + wait > end:
                break
            await asyncio.sleep(wait)
            await asyncio.to_thread(own_postgres.stop, "fast")
            await asyncio.sleep(harness.jitter(0.5, 3, rng))
            await asyncio.to_thread(own_postgres.start)
            back = time.monotonic()
            restarts += 1
            await engine.ready(timeout=120)
            recoveries.append(time.monotonic() - back)
        stop.set()
        await loader
        settle = await harness.wait_until(lambda: harness.all_settled(dsn, load.run_ids), 600,
                                          "every run to finish")
        figures = await harness.check_invariants(dsn, load.run_ids, engine.ledger_path)
    finally:
        stop.set()
        engine.stop()
    await harness.no_runner_left(engine.url)
    assert restarts >= 4
    assert figures["statuses"] == {"succeeded": len(load.run_ids)}, figures
    harness.Report("Postgres restarted every 5-40 s for 3 min under load", {
        **figures, "restarts": restarts,
        "ready_after_restart_s_max": round(max(recoveries), 2),
        "settle_after_load_s": round(settle, 1)}).show()
