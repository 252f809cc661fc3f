"""waypost only: checkpoint writes through the coordinator, the cost of concurrency
limits, and the hot table's bloat after a steady run."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web

from bench.stats import pct
from bench.systems import Waypost, now

if TYPE_CHECKING:
    from bench.run import Bench


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def checkpoints(b: Bench) -> None:
    """``ctx.checkpoint(key, data)`` of the task SDK, with the runner's own coordinator
    client (``RunnerClient``, keep-alive) against the real coordinator app on a TCP
    port: SDK (size check, JSON) -> HTTP -> coordinator (credential, fencing) ->
    Postgres. One at a time, distinct keys; timed around the call."""
    from waypost.coordinator.app import create_app
    from waypost.coordinator.wire import CoordinatorRunner
    from waypost.runner.api import RunnerClient
    from waypost.sdk.context import Context
    from waypost.store import runs

    a = b.args
    for rep in range(a.repeats):
        async with b.database("waypost") as db:
            dsn = b.pg.dsn_for(db)
            sys_ = Waypost()
            await sys_.open(dsn, 4)
            engine = sys_.engine
            runner = CoordinatorRunner(create_app(engine))
            await runner.setup()
            port = _free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                await sys_.enqueue_one(now())
                (claimed,) = await runs.claim(engine.pool, limit=1, lease_seconds=3600,
                                              worker="bench")
                cred = engine.signer.issue(claimed.run_id, claimed.claim_token)
                async with RunnerClient(f"http://127.0.0.1:{port}", cred) as client:
                    ctx = Context(run_id=str(claimed.run_id), attempt=claimed.attempt,
                                  payload={}, port=client)
                    for size in (1024, 10 * 1024, 100 * 1024):
                        label = f"{size // 1024}kb"
                        lat: list[float] = []
                        for i in range(a.checkpoints + 20):
                            data = {"blob": "x" * (size - 12)}  # ~size bytes as JSON
                            t = now()
                            await ctx.checkpoint(f"{label}-{i}", data)
                            if i >= 20:  # warm-up excluded
                                lat.append((now() - t) * 1000)
                        stored = await engine.pool.fetchval(
                            "SELECT count(*) FROM checkpoints WHERE run_id = $1 AND key LIKE $2",
                            claimed.run_id, f"{label}-%")
                        assert stored == a.checkpoints + 20, (label, stored)
                        b.results.add("checkpoint", "waypost", f"{label}_p50_ms", pct(lat, 50))
                        b.results.add("checkpoint", "waypost", f"{label}_p99_ms", pct(lat, 99))
                        print(f"  rep {rep} checkpoint {label}: p50 {pct(lat, 50):.2f} ms "
                              f"p99 {pct(lat, 99):.2f} ms", flush=True)
            finally:
                await runner.cleanup()
                await sys_.close()


def _claim_before_0024() -> str:
    """claim_runs as the release before migration 0024 ran it (its last definition,
    in migration 0010: queues with a limit locked by row, FOR UPDATE SKIP LOCKED),
    over lock_claimable_queues and claim_ready_runs, which 0024 keeps."""
    from importlib import resources

    text = (resources.files("waypost.store") / "migrations" /
            "0010_queues_per_namespace.sql").read_text()
    start = text.index("CREATE OR REPLACE FUNCTION claim_runs(")
    end = text.index("$$;", start) + 3
    return (f"SET search_path = waypost; {text[start:end]} "
            "ALTER FUNCTION claim_runs(uuid[], bigint[], jsonb[], integer, double precision, "
            "text, bigint) SET jit = off;")


async def limits(b: Bench) -> None:
    """The same drain with no limit, a queue maxConcurrency and a per-key limit (100
    keys), none of them binding: what computing the limits costs. And the drain with
    one acknowledgement (one commit) per run instead of batched acknowledgements.
    With --limits-before, the two limits again with the claim of the release before
    migration 0024, in the same rotation (an A/B under the same load)."""
    a = b.args
    variants = [("none", "noop", 0, False), ("queue_limit", "noop-queue-limit", 0, False),
                ("key_limit", "noop-key-limit", 100, False), ("ack_each", "noop", 0, True)]
    if a.limits_before:
        variants += [("queue_limit_before", "noop-queue-limit", 0, False),
                     ("key_limit_before", "noop-key-limit", 100, False)]
    for rep in range(a.repeats):
        k = rep % len(variants)
        rates: dict[str, float] = {}
        for label, task, keys, ack_each in variants[k:] + variants[:k]:
            async with b.database("waypost") as db:
                if label.endswith("_before"):
                    conn = await asyncpg.connect(b.pg.dsn_for(db))
                    try:
                        await conn.execute(_claim_before_0024())
                    finally:
                        await conn.close()
                sys_ = Waypost(task=task, keys=keys, ack_each=ack_each)
                await sys_.open(b.pg.dsn_for(db), a.workers)
                left = a.limit_jobs
                while left > 0:
                    k = min(a.bulk_size, left)
                    await sys_.enqueue_many(k)
                    left -= k
                await b.reset_statements()
                t = now()
                await sys_.start_workers(a.workers, a.batch, lambda t0: None,
                                         drain_count=a.limit_jobs)
                await asyncio.wait_for(sys_.wait_workers(), 3600)
                rate = a.limit_jobs / (now() - t)
                await sys_.close()
                # Server time of the drain's top-level statements (the claim calls and
                # what the drain's acknowledgements add), per run: what the claim costs
                # the database, less sensitive than the rate to how the client is scheduled.
                admin = await b.admin()
                try:
                    db_ms = await admin.fetchval(
                        """SELECT coalesce(sum(s.total_exec_time), 0) FROM pg_stat_statements s
                           JOIN pg_database d ON d.oid = s.dbid
                           WHERE d.datname = $1 AND s.toplevel""", db)
                finally:
                    await admin.close()
                b.results.add("limits", "waypost", f"{label}_db_us_per_run",
                              float(db_ms) * 1000 / a.limit_jobs)
                b.results.add("limits", "waypost", f"{label}_runs_per_s", rate)
                rates[label] = rate
                print(f"  rep {rep} limits {label}: {rate:,.0f} runs/s", flush=True)
        # Each repeat's own ratio to its own plain drain, so that the spread of the
        # overhead shows beside the overhead of the medians.
        for label, rate in rates.items():
            if "limit" in label:
                b.results.add("limits", "waypost", f"{label}_overhead_pct_by_repeat",
                              (rates["none"] / rate - 1) * 100)
    base = b.results.median("limits", "waypost", "none_runs_per_s")
    for label in ("queue_limit", "key_limit", "queue_limit_before", "key_limit_before"):
        v = b.results.median("limits", "waypost", f"{label}_runs_per_s")
        if base and v:
            b.results.add("limits", "waypost", f"{label}_overhead_pct", (base / v - 1) * 100)


async def _hot_table(conn: asyncpg.Connection, table: str = "waypost.run_queue") -> dict[str, Any]:
    """A queue table's statistics and size, summed over its partitions (migration 0019
    partitioned waypost's run_queue; pg_partition_tree of an ordinary table is empty,
    so such a table stands for itself)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        """WITH rels AS (
               SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf
               UNION ALL
               SELECT $1::regclass WHERE NOT EXISTS (
                   SELECT 1 FROM pg_partition_tree($1::regclass))
           )
           SELECT sum(s.n_live_tup)::bigint AS n_live_tup, sum(s.n_dead_tup)::bigint AS n_dead_tup,
                  sum(s.autovacuum_count)::bigint AS autovacuum_count,
                  sum(s.vacuum_count)::bigint AS vacuum_count,
                  sum(pg_relation_size(p.relid))::bigint AS heap_bytes,
                  sum(pg_total_relation_size(p.relid))::bigint AS total_bytes
           FROM rels p JOIN pg_stat_user_tables s ON s.relid = p.relid""", table)
    return dict(row)


# The table each system claims from: what a long transaction makes grow.
QUEUE_TABLES = {"waypost": "waypost.run_queue", "pgqueuer": "pgqueuer"}


async def bloat(b: Bench) -> None:
    """A steady run at the steady-state rate for --bloat-seconds, sampling run_queue;
    then the same with a REPEATABLE READ transaction held open on another connection,
    for waypost and, beside it, pgqueuer (its queue table, cleaned by autovacuum)."""
    from waypost import aiotime

    a = b.args
    runs = [("waypost", False), ("waypost", True)]
    if "pgqueuer" in b.systems:
        runs.append(("pgqueuer", True))
    if a.bloat_runs:
        wanted = set(a.bloat_runs.split(","))
        runs = [(s, h) for s, h in runs if f"{s}:{'long_txn' if h else 'plain'}" in wanted]
    for system, held in runs:
        label = "long_txn" if held else "plain"
        async with b.database(system) as db:
            dsn = b.pg.dsn_for(db)
            watch = await asyncpg.connect(dsn)
            holder = None
            if held:
                holder = await asyncpg.connect(dsn)
                await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                await holder.fetchval("SELECT count(*) FROM pg_class")  # takes the snapshot
            samples: list[dict[str, Any]] = []
            stop = asyncio.Event()
            table = QUEUE_TABLES[system]

            async def sample(watch: asyncpg.Connection = watch,
                             samples: list[dict[str, Any]] = samples,
                             stop: asyncio.Event = stop, table: str = table) -> None:
                t0 = now()
                while not stop.is_set():
                    s = await _hot_table(watch, table)
                    s["t"] = round(now() - t0, 1)
                    samples.append(s)
                    await aiotime.sleep(max(1.0, a.bloat_seconds / 30), stop)

            sampler = asyncio.create_task(sample())
            lat: list[float] = []
            _offered, _thr, sent = await b.steady(system, db, b.rate, a.bloat_seconds, lat)
            stop.set()
            await sampler
            end = await _hot_table(watch, table)
            if holder is not None:
                await holder.execute("ROLLBACK")
                await holder.close()
            await watch.close()
            first = samples[0]
            fig = b.results.add
            fig("bloat", system, f"{label}_runs", sent)
            fig("bloat", system, f"{label}_seconds", a.bloat_seconds)
            fig("bloat", system, f"{label}_dead_tuples_end", end["n_dead_tup"])
            fig("bloat", system, f"{label}_dead_tuples_max",
                max(s["n_dead_tup"] for s in samples))
            fig("bloat", system, f"{label}_hot_table_kb_start", first["total_bytes"] / 1024)
            fig("bloat", system, f"{label}_hot_table_kb_end", end["total_bytes"] / 1024)
            fig("bloat", system, f"{label}_hot_table_kb_max",
                max(s["total_bytes"] for s in samples) / 1024)
            fig("bloat", system, f"{label}_autovacuums", end["autovacuum_count"])
            fig("bloat", system, f"{label}_p50_ms", pct(lat, 50))
            fig("bloat", system, f"{label}_p99_ms", pct(lat, 99))
            fig("bloat", system, f"{label}_started_fraction", b.last_started_fraction)
            key = label if system == "waypost" else f"{system}:{label}"  # report.py reads these
            b.meta.setdefault("bloat_samples", {})[key] = samples
            print(f"  bloat {system} {label}: {sent} runs in {a.bloat_seconds:.0f} s, "
                  f"p50 {pct(lat, 50):,.1f} ms p99 {pct(lat, 99):,.1f} ms, started "
                  f"{b.last_started_fraction:.3f}, {table} "
                  f"{first['total_bytes'] // 1024} kB -> {end['total_bytes'] // 1024} kB "
                  f"(max {max(s['total_bytes'] for s in samples) // 1024} kB), dead tuples "
                  f"{end['n_dead_tup']} (max {max(s['n_dead_tup'] for s in samples)}), "
                  f"autovacuums {end['autovacuum_count']}", flush=True)


async def run_all(b: Bench) -> None:
    if "checkpoint" not in b.skip:
        print("Checkpoints through the coordinator …", flush=True)
        await checkpoints(b)
    if "limits" not in b.skip:
        print("Concurrency limits vs none …", flush=True)
        await limits(b)
    if "bloat" not in b.skip:
        print(f"Bloat: {b.args.bloat_seconds:.0f} s steady runs …", flush=True)
        await bloat(b)


