"""Local fault scenarios against a real Postgres and real runner processes.

Each scenario ends with :func:`harness.check_invariants` and prints a
``FAULT-REPORT`` line with what it measured (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import aiohttp
import asyncpg

from tests.faults import harness
from waypost.store.embedded import EmbeddedPostgres


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
            figures = await harness.check_invariants(
                dsn, run_ids, engine.ledger_path, coordinator_url=engine.url)
        finally:
            engine.stop()
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
            return len(harness.runner_processes(engine.url)) == 4
        await harness.wait_until(all_four_running, 60, "4 attempts in flight")
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
        figures = await harness.check_invariants(dsn, runs, engine.ledger_path,
                                                 coordinator_url=engine.url)
        engine.stop()
    assert figures["statuses"] == {"succeeded": len(runs)}, figures
    harness.Report("SIGTERM with attempts in flight", {
        **figures, "sigterm_to_exit_s": round(stopped_in, 2), "drained": len(short),
        "handed_over": len(long)}).show()
