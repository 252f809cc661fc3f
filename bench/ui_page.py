"""How long the UI's run page takes on the server for a big run.

    .venv/bin/python -m bench.ui_page [--attempts 20] [--checkpoints 200] [--logs 10000]
                                      [--repeat 30]

It starts an embedded Postgres and the coordinator (no dispatcher), stores one run
with that many attempts (each failed but the last, with backoff gaps), checkpoints
(spread over the attempts, each a small JSON document) and log lines (as log
events, spread over the attempts), then fetches ``/runs/{id}`` repeatedly and
reports the page's own ``Server-Timing`` figures (``page``: the handler's wall time,
queries plus rendering; ``cpu``: the coordinator process's CPU meanwhile, which a
busy machine inflates less) and the client's wall time over loopback. Not a pass/fail test:
docs/ui.md reports the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp

from waypost.engine import control
from waypost.model.run import TriggerRequest
from waypost.model.settings import Settings
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone
from waypost.store.embedded import EmbeddedPostgres


async def seed(stack: Standalone, attempts: int, checkpoints: int, logs: int) -> str:
    engine = stack.engine
    spec = TaskSpec.model_validate({"entrypoint": "examples.orders:process_order",
                                    "retry": {"maxAttempts": attempts}})
    await control.register_task(engine, TaskDefinition(namespace="default", name="big",
                                                       spec=spec))
    run, _ = await control.trigger(engine, "default", "big", TriggerRequest(
        payload={"orderId": "ord-1", "items": [{"sku": f"sku-{i}", "n": i} for i in range(20)]}))
    run_id = uuid.UUID(run.id)
    start = run.created_at
    per_attempt = timedelta(seconds=30)
    gap = timedelta(seconds=5)
    async with engine.pool.acquire() as conn, conn.transaction():
        for n in range(1, attempts + 1):
            began = start + (per_attempt + gap) * (n - 1) + gap
            last = n == attempts
            error = None if last else {
                "type": "oom" if n % 3 == 0 else "error", "message": f"attempt {n} failed",
                "exitCode": 137 if n % 3 == 0 else 1}
            await conn.execute(
                "INSERT INTO attempts (run_id, attempt, claim_token, status, memory_bytes, "
                "error, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)",
                run_id, n, n, "succeeded" if last else "failed", 256 * 1024 * 1024, error,
                began, began + per_attempt)
        for i in range(checkpoints):
            n = i * attempts // checkpoints + 1
            at = start + (per_attempt + gap) * (n - 1) + gap + timedelta(
                seconds=1 + (i % (checkpoints // attempts)) * 0.25)
            data = {"step": i, "items": [{"sku": f"sku-{k}", "qty": k} for k in range(5)],
                    "note": "x" * 40}
            await conn.execute(
                "INSERT INTO checkpoints (run_id, key, attempt, data, size_bytes, created_at) "
                "VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
                run_id, f"step-{i:03d}", n, data, len(json.dumps(data)), at)
        await conn.execute(
            "INSERT INTO run_events (run_id, kind, attempt, ts, data) "
            "SELECT $1, 'log', 1 + (g * $3 / $2), $4::timestamptz + g * interval '10 ms', "
            "jsonb_build_object('level', CASE WHEN g % 10 = 0 THEN 'warning' ELSE 'info' END, "
            "'message', 'processed item ' || g, 'fields', jsonb_build_object('item', g)) "
            "FROM generate_series(0, $2 - 1) AS g",
            run_id, logs, attempts, start)
        await conn.execute(
            "UPDATE runs SET status = 'succeeded', attempt = $2, started_at = $3, "
            "finished_at = $4, result = '{\"ok\": true}' WHERE id = $1",
            run_id, attempts, start + gap, start + (per_attempt + gap) * attempts)
        # What autovacuum's analyze does soon after a bulk insert like this one: the
        # planner then knows the run has thousands of events.
    await engine.pool.execute("ANALYZE run_events, checkpoints, attempts, runs")
    return run.id


async def measure(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="waypost-ui-bench-"))
    postgres = EmbeddedPostgres(base / "pg", durable=False).start()
    try:
        settings = Settings.model_validate({"database_url": postgres.dsn,
                                            "coordinator_port": 0})
        stack = await Standalone(settings, dispatch=False).start()
        try:
            run_id = await seed(stack, args.attempts, args.checkpoints, args.logs)
            server: list[float] = []
            cpu: list[float] = []
            wall: list[float] = []
            size = 0
            async with aiohttp.ClientSession() as http:
                for i in range(args.repeat + 3):
                    began = time.perf_counter()
                    async with http.get(f"{stack.url}/runs/{run_id}") as resp:
                        body = await resp.read()
                        assert resp.status == 200, body[:500]
                        timing = resp.headers["Server-Timing"]
                    if i < 3:
                        continue  # warm-up: template compilation, plan caches
                    wall.append((time.perf_counter() - began) * 1000)
                    page, spent = (float(part.split("dur=")[1]) for part in timing.split(","))
                    server.append(page)
                    cpu.append(spent)
                    size = len(body)
        finally:
            await stack.stop()
    finally:
        postgres.destroy()
    print(f"run page of a run with {args.attempts} attempts, {args.checkpoints} checkpoints, "
          f"{args.logs} log lines ({size / 1024:.0f} KiB of HTML, {args.repeat} requests):")
    load = os.getloadavg()[0]
    print(f"  (load average {load:.1f} on {os.cpu_count()} CPUs while measuring)")
    for name, values in (("server time (page)", server), ("server CPU (cpu)", cpu),
                         ("client wall time", wall)):
        values.sort()
        print(f"  {name:<24} median {statistics.median(values):6.1f} ms   "
              f"p95 {values[int(len(values) * 0.95) - 1]:6.1f} ms   max {values[-1]:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=20)
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--logs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
