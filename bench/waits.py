"""`python -m bench.waits`: durable waits at scale, and batch triggers (issue 13).

    .venv/bin/python -m bench.waits [--sleepers 10000] [--sleep 5] [--batch 1000]
                                    [--probe 2000] [--repeats 3]

One durable Postgres (as ``make bench``), a fresh database per part, the engine's
own code paths; runners are not started (20,000 runner processes would measure
process spawning, not waits), so each attempt is claimed and suspended the way a
runner's ``POST /v1/runner/wait`` does it (``engine.waits.wait``, one transaction
per run, 8 at a time).

**Sleepers.** ``--sleepers`` runs are triggered (one batch trigger per 1,000),
claimed, and each suspended on a sleep that ends at the same instant ``T``
(``--sleep`` seconds after the last suspension began). While they sleep, a probe
drains ``--probe`` plain runs (claim in batches of 50, complete) and the hot
table's size is read; the same probe ran before the sleepers existed. Before each
probe the hot table is cleaned as the leader's loop cleans it (it rotates or
vacuums away the rows of runs claimed and deleted before). At ``T`` the waker
(``engine.waits.Waker``, one pass after another as the engine runs it) resumes
them; figures: when the last run was back in the queue (the last wait row gone,
counted every 20 ms), and when the last was claimed again by a dispatcher-like
claimer (batches of 50), both after ``T``; the 1-minute load average at each phase.

**Batch trigger.** ``--batch`` runs through the HTTP API of a coordinator in this
process: one ``POST …/batch`` against as many single ``POST …/trigger`` calls, one
after another and 16 at a time. ``--repeats`` times each, fresh database each time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.stats import pct

HERE = Path(__file__).resolve().parent


async def _fresh(pg: Any, name: str) -> str:
    from waypost.store import migrate

    admin = await asyncpg.connect(pg.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn: str = pg.dsn_for(name)
    await migrate.apply_dsn(dsn)
    return dsn


async def _engine(dsn: str) -> Any:
    from waypost.engine.core import Engine
    from waypost.model.settings import Settings

    return await Engine.open(Settings(database_url=dsn, coordinator_port=0), pool_size=20)


async def _register(engine: Any, name: str) -> None:
    from waypost.engine import control
    from waypost.model.task import TaskDefinition, TaskSpec

    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello"})
    await control.register_task(engine, TaskDefinition(namespace="default", name=name,
                                                       spec=spec))


async def _trigger(engine: Any, task: str, n: int) -> None:
    from waypost.engine import waits
    from waypost.model.run import BatchItem

    for start in range(0, n, 1000):
        items = [BatchItem(payload={"i": i}) for i in range(start, min(n, start + 1000))]
        await waits.trigger_batch(engine, "default", task, items)


async def _claim_all(engine: Any, n: int, batch: int = 50) -> tuple[list[Any], float]:
    from waypost.store import runs

    claimed: list[Any] = []
    started = time.perf_counter()
    while len(claimed) < n:
        got = await runs.claim(engine.pool, limit=batch, lease_seconds=600, worker="bench")
        if not got:
            await asyncio.sleep(0.005)
        claimed += got
    return claimed, time.perf_counter() - started


async def _probe(engine: Any, n: int) -> dict[str, Any]:
    """Drain ``n`` plain runs of another task: claim in batches of 50, complete each
    batch in one statement (the dispatcher's and the batcher's paths). First the
    hot table is cleaned as the leader's loop would (``engine.hot_table``), so that
    the rows the previous phase claimed and deleted are not what is measured."""
    from waypost.engine import hot_table
    from waypost.store import runs
    from waypost.store.pool import RawJson

    await asyncio.sleep(1.5)  # the dead-tuple statistics the cleaning reads lag ~1 s
    cleaned = await hot_table.clean_if_needed(engine)
    load = os.getloadavg()[0]
    await _trigger(engine, "probe", n)
    buffers = await _claim_buffers(engine)
    claim_ms: list[float] = []
    started = time.perf_counter()
    done = 0
    while done < n:
        t0 = time.perf_counter()
        got = await runs.claim(engine.pool, limit=50, lease_seconds=600, worker="probe")
        claim_ms.append((time.perf_counter() - t0) * 1000)
        if not got:
            continue
        await runs.complete_many(engine.pool, [(c.run_id, c.claim_token, RawJson("1"))
                                               for c in got])
        done += len(got)
    elapsed = time.perf_counter() - started
    size = await engine.pool.fetchval(
        "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('waypost.run_queue')")
    rows = await engine.pool.fetchval("SELECT count(*) FROM waypost.run_queue")
    return {"runs_per_s": n / elapsed, "claim_p50_ms": pct(claim_ms, 50),
            "claim_p99_ms": pct(claim_ms, 99), "hot_table_bytes": float(size),
            "hot_table_rows": float(rows), "hot_table_cleaned": cleaned, "load_1m": load,
            "claim_buffers": buffers}


async def _claim_buffers(engine: Any) -> int:
    """Shared buffers (hit or read) one claim of 50 touches, with ``n`` probe runs
    ready: work that does not depend on the machine's load, unlike its time. The
    claim is rolled back."""
    from waypost.store import sql

    text, *params = sql.bind("claim_runs", ack_run_ids=[], ack_tokens=[], ack_results=[],
                             limit=50, lease_seconds=600, worker="probe", leader_epoch=None)
    async with engine.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            plan = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + text, *params)
        finally:
            await tx.rollback()
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


async def sleepers(pg: Any, args: argparse.Namespace, rep: int) -> dict[str, Any]:
    from waypost.engine import waits
    from waypost.engine.credentials import AttemptIdentity
    from waypost.sdk import protocol

    dsn = await _fresh(pg, f"b_waits_{rep}_{os.urandom(3).hex()}")
    engine = await _engine(dsn)
    try:
        await _register(engine, "sleeper")
        await _register(engine, "probe")
        before = await _probe(engine, args.probe)
        await _trigger(engine, "sleeper", args.sleepers)
        claimed, _ = await _claim_all(engine, args.sleepers)
        # Far away while they are suspended one by one; moved to one instant below.
        due = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        gate = asyncio.Semaphore(8)
        suspend_ms: list[float] = []

        async def suspend(c: Any) -> None:
            async with gate:
                t0 = time.perf_counter()
                answer = await waits.wait(engine, AttemptIdentity(c.run_id, c.claim_token),
                                          protocol.WaitBody(key="nap", kind="sleep", until=due))
                suspend_ms.append((time.perf_counter() - t0) * 1000)
                assert answer.suspended

        t0 = time.perf_counter()
        await asyncio.gather(*(suspend(c) for c in claimed))
        suspend_s = time.perf_counter() - t0
        waiting = await engine.pool.fetchval(
            "SELECT count(*) FROM waypost.runs WHERE status = 'waiting'")
        assert waiting == args.sleepers, waiting
        during = await _probe(engine, args.probe)
        # All due at the same instant, --sleep seconds from now.
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=args.sleep)
        await engine.pool.execute("UPDATE waypost.run_waits SET due_at = $1, until = $1", due)
        waker = waits.Waker(engine)
        stop = asyncio.Event()
        loop_task = asyncio.create_task(waker.run(stop))
        await asyncio.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()))
        load_at_due = os.getloadavg()[0]
        # Watch the waiting set, not the runs: a wait's row leaves run_waits in the
        # statement that queues its run, and counting what is left of 10,000 rows is
        # cheap, where counting queued runs every 20 ms scans the whole runs table and
        # takes CPU from the waker it measures.
        while True:
            left = await engine.pool.fetchval("SELECT count(*) FROM waypost.run_waits")
            if not left:
                break
            await asyncio.sleep(0.02)
        last_queued = dt.datetime.now(dt.UTC)
        queued = await engine.pool.fetchval(
            "SELECT count(*) FROM waypost.runs WHERE status = 'queued' AND task = 'sleeper'")
        assert queued == args.sleepers, queued
        _, claim_s = await _claim_all(engine, args.sleepers)
        last_claimed = dt.datetime.now(dt.UTC)
        stop.set()
        await loop_task
        return {
            "suspend_s": suspend_s, "suspend_p50_ms": pct(suspend_ms, 50),
            "suspend_p99_ms": pct(suspend_ms, 99),
            "probe_before": before, "probe_while_sleeping": during,
            "all_queued_after_due_s": (last_queued - due).total_seconds(),
            "all_claimed_after_due_s": (last_claimed - due).total_seconds(),
            "reclaim_s": claim_s, "load_1m_at_due": load_at_due,
        }
    finally:
        await engine.close()


async def batch_vs_singles(pg: Any, args: argparse.Namespace, rep: int) -> dict[str, float]:
    from waypost.model.settings import Settings
    from waypost.sdk.client import TriggerItem, WaypostClient
    from waypost.standalone import Standalone

    out: dict[str, float] = {}
    for mode in ("batch", "singles_sequential", "singles_16"):
        dsn = await _fresh(pg, f"b_batch_{rep}_{mode}_{os.urandom(3).hex()}")
        stack = await Standalone(Settings(database_url=dsn, coordinator_port=0),
                                 dispatch=False).start()
        try:
            engine = stack.engine
            await _register(engine, "bulk")
            async with WaypostClient(stack.url) as client:
                t0 = time.perf_counter()
                if mode == "batch":
                    made = await client.batch_trigger(
                        "bulk", [TriggerItem(payload={"i": i}) for i in range(args.batch)])
                    assert len(made) == args.batch
                elif mode == "singles_sequential":
                    for i in range(args.batch):
                        await client.trigger("bulk", {"i": i})
                else:
                    gate = asyncio.Semaphore(16)

                    async def one(i: int, gate: asyncio.Semaphore = gate) -> None:
                        async with gate:
                            await client.trigger("bulk", {"i": i})

                    await asyncio.gather(*(one(i) for i in range(args.batch)))
                out[f"{mode}_s"] = time.perf_counter() - t0
            stored = await engine.pool.fetchval("SELECT count(*) FROM waypost.runs")
            assert stored == args.batch, stored
        finally:
            await stack.stop()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from waypost.store.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="waypost-bench-waits-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "data", durable=True, settings={"max_connections": "200"})
    print(f"Starting a durable Postgres in {pg.data_dir} …", flush=True)
    pg.start()
    doc: dict[str, Any] = {"args": vars(args), "started": dt.datetime.now(dt.UTC).isoformat(),
                           "load_average": os.getloadavg(), "sleepers": [], "batch": []}
    try:
        for rep in range(args.repeats):
            if not args.skip_sleepers:
                result = await sleepers(pg, args, rep)
                print(json.dumps(result, indent=2), flush=True)
                doc["sleepers"].append(result)
            if not args.skip_batch:
                result2 = await batch_vs_singles(pg, args, rep)
                print(json.dumps(result2, indent=2), flush=True)
                doc["batch"].append(result2)
    finally:
        pg.destroy()
        shutil.rmtree(base, ignore_errors=True)
    doc["load_average_after"] = os.getloadavg()
    return doc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.waits", description=__doc__.split("\n")[0])
    p.add_argument("--sleepers", type=int, default=10_000)
    p.add_argument("--sleep", type=float, default=5.0)
    p.add_argument("--probe", type=int, default=2000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-sleepers", action="store_true")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    doc = asyncio.run(run(args))
    out = Path(args.out) / f"waits-{dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
