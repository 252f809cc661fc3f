"""`python -m bench.history`: what a big history costs the hot path, and what a
retention pass costs everyone else.

    .venv/bin/python -m bench.history [--history 1000000] [--expire 1000000] [--repeats 3]

One durable Postgres (the settings of ``make bench``), two scenarios:

1. **History size.** Two databases cloned from one template holding waypost's schema:
   one with an empty history, one with ``--history`` finished runs (each with its
   attempt and five events, as a drained run leaves them; generated inside the
   server by ``INSERT … SELECT FROM generate_series`` in chunks of 100,000 rows,
   finished a day ago so retention keeps them; with ``--defer-indexes`` the history
   tables' indexes and keys are dropped for the load and built after it, which is
   what makes 10,000,000 runs loadable in reasonable time; a client-side ``COPY``
   would feed the same inserts, the cost is the index maintenance). In each,
   alternating which goes
   first: ``--triggers`` single enqueues one after another (latency p50/p99 of
   ``runs.enqueue``), then a drain of ``--jobs`` pre-loaded runs by the 4 workers
   of ``make bench`` (batch ``--batch``), timing every claim call (p50/p99) and the
   drain rate. Target: each within 10% of the empty history's.
2. **Retention pass.** A database with ``--expire`` finished runs that ended 8 days
   ago (past the default 7-day retention) and a light live load beside it: one
   producer enqueues 200 runs/s and one worker claims and acknowledges them
   (batch 10), timing each claim call. Then one retention pass through the
   engine's own statements (``store.history.expire_finished``, batches of
   ``--retention-batch``), each batch timed: a batch is one transaction, so its
   duration is how long it holds its locks (row locks on the runs it removes and
   the cascaded rows; ROW EXCLUSIVE on the tables, which conflicts with no claim).
   Target: the sum of lock hold ≤ 5 s over 1,000,000 runs, and no claim delayed
   by more than 100 ms (claim p99/max during the pass against before it).

Results go to ``bench/results/history-<UTC time>.json`` and are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.stats import pct
from bench.systems import NAMESPACE, Waypost

HERE = Path(__file__).resolve().parent
CHUNK = 100_000

# A drained no-op run as the store leaves it: the run row with the Task's spec, one
# attempt, and events (the insert triggers add "queued" and "attempt_started"; three
# more are added here: running, attempt finished, succeeded). Each chunk's ids are
# drawn first into a temporary table, so the attempts and events of the chunk are
# made from it without reading the runs already loaded.
LOAD_IDS = """
CREATE TEMP TABLE load_ids ON COMMIT DROP AS
SELECT gen_random_uuid() AS id, now() - $1::text::interval - g * interval '1 ms' AS at
FROM generate_series(1, $2) g
"""
LOAD_RUNS = """
INSERT INTO waypost.runs (id, namespace, task, queue, status, spec, memory_bytes, attempt,
                          result, trace_id, source, created_at, started_at, finished_at,
                          updated_at)
SELECT i.id, $1, 'noop', 'noop', 'succeeded', t.spec, t.memory_bytes, 1,
       'null', md5(i.id::text), 'bench', i.at, i.at, i.at, i.at
FROM load_ids i
CROSS JOIN (SELECT spec, memory_bytes FROM waypost.tasks
            WHERE namespace = $1 AND name = 'noop') t
"""
LOAD_ATTEMPTS = """
INSERT INTO waypost.attempts (run_id, attempt, claim_token, status, memory_bytes, worker,
                              started_at, finished_at)
SELECT i.id, 1, nextval('waypost.claim_tokens'), 'succeeded', 536870912, 'bench', i.at, i.at
FROM load_ids i
"""
LOAD_EVENTS = """
INSERT INTO waypost.run_events (run_id, kind, attempt, ts, data)
SELECT i.id, k.kind, 1, i.at, k.data::jsonb
FROM load_ids i
CROSS JOIN (VALUES ('status', '{"status": "running", "previous": "queued"}'),
                   ('attempt_finished', '{"status": "succeeded", "durationMs": 1}'),
                   ('status', '{"status": "succeeded", "previous": "running"}')) k(kind, data)
"""
# The history tables whose indexes and keys --defer-indexes builds after the load.
HISTORY_TABLES = ("runs", "attempts", "run_events")


async def load_history(dsn: str, n: int, ended_ago: str, *, defer_indexes: bool = False
                       ) -> dict[str, float]:
    """Insert ``n`` finished runs that ended ``ended_ago``; returns seconds taken (load,
    and with ``defer_indexes`` the index and key builds after it).

    ``defer_indexes`` drops the indexes, keys and foreign keys of the history tables
    first and builds them again after the load, as a bulk load into a new table would
    (one sorted build per index instead of millions of inserts into random places of
    a B-tree). The rebuilt indexes are compact where grown ones are not, which flatters
    the loaded history slightly; the hot path's reads are primary-key probes either way.
    """
    conn = await asyncpg.connect(dsn)
    took: dict[str, float] = {}
    try:
        rebuild: list[str] = []
        if defer_indexes:
            rebuild = await drop_history_indexes(conn)
        started = time.perf_counter()
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            async with conn.transaction():
                await conn.execute(LOAD_IDS, ended_ago, k)
                await conn.execute(LOAD_RUNS, NAMESPACE)
                await conn.execute(LOAD_ATTEMPTS)
                await conn.execute(LOAD_EVENTS)
            done += k
            if done % (10 * CHUNK) == 0 or done == n:
                print(f"    {done:,} of {n:,} runs loaded", flush=True)
        took["load"] = time.perf_counter() - started
        if rebuild:
            started = time.perf_counter()
            for ddl in rebuild:
                await conn.execute(ddl)
            took["index_build"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        took["vacuum_analyze"] = time.perf_counter() - started
    finally:
        await conn.close()
    return took


async def drop_history_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drops the keys, foreign keys and indexes of the history tables; returns the
    statements that make them again, in an order that works (keys, indexes, then the
    foreign keys that need the keys)."""
    tables = [f"waypost.{t}" for t in HISTORY_TABLES]
    constraints = await conn.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype::text AS contype,"
        " pg_get_constraintdef(c.oid) AS def FROM pg_constraint c"
        " WHERE c.contype IN ('p', 'u', 'f')"
        "   AND (c.conrelid::regclass::text = ANY($1) OR c.confrelid::regclass::text = ANY($1))",
        tables)
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def"
        " FROM pg_index i WHERE i.indrelid::regclass::text = ANY($1)"
        "   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        tables)
    fks = [c for c in constraints if c["contype"] == "f"]
    keys = [c for c in constraints if c["contype"] != "f" and c["tbl"] in tables]
    for c in fks + keys:
        await conn.execute(f"ALTER TABLE {c['tbl']} DROP CONSTRAINT {c['conname']}")
    for i in indexes:
        await conn.execute(f"DROP INDEX {i['name']}")
    return ([f"ALTER TABLE {c['tbl']} ADD CONSTRAINT {c['conname']} {c['def']}" for c in keys]
            + [i["def"] for i in indexes]
            + [f"ALTER TABLE {c['tbl']} ADD CONSTRAINT {c['conname']} {c['def']}"
               for c in fks])


class HistoryBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.doc: dict[str, Any] = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "args": vars(args),
            "history_size": {"empty": [], "loaded": []}, "retention": {}}

    async def run(self) -> None:
        from waypost.store.embedded import EmbeddedPostgres

        base = Path(tempfile.mkdtemp(prefix="waypost-bench-history-", dir="/var/tmp"))
        os.chmod(base, 0o755)
        self.pg = EmbeddedPostgres(base / "data", durable=True,
                                   settings={"max_connections": "300",
                                             "max_wal_size": "4GB"})
        print(f"Starting a durable Postgres in {self.pg.data_dir} …", flush=True)
        self.pg.start()
        try:
            await self._admin("CREATE DATABASE tpl_history")
            await Waypost().install(self.pg.dsn_for("tpl_history"))
            if self.args.history:
                await self.history_size()
            if self.args.expire:
                await self.retention()
        finally:
            self.pg.destroy()
            shutil.rmtree(base, ignore_errors=True)

    async def _admin(self, sql: str) -> None:
        admin = await asyncpg.connect(self.pg.dsn)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    async def _clone(self, name: str) -> str:
        await self._admin(f"CREATE DATABASE {name} TEMPLATE tpl_history")
        return self.pg.dsn_for(name)

    # --- 1. history size --------------------------------------------------------

    async def history_size(self) -> None:
        a = self.args
        dsns = {"empty": await self._clone("h_empty"), "loaded": await self._clone("h_loaded")}
        print(f"Loading {a.history:,} finished runs into h_loaded …", flush=True)
        self.doc["load_seconds"] = await load_history(
            dsns["loaded"], a.history, "1 day", defer_indexes=a.defer_indexes)
        print(f"  loaded: {self.doc['load_seconds']}", flush=True)
        for rep in range(a.repeats):
            order = ["empty", "loaded"] if rep % 2 == 0 else ["loaded", "empty"]
            for which in order:
                figures = await self.hot_path(dsns[which])
                self.doc["history_size"][which].append(figures)
                print(f"  rep {rep} {which}: " + ", ".join(
                    f"{k} {v:,.2f}" for k, v in figures.items()), flush=True)

    async def hot_path(self, dsn: str) -> dict[str, float]:
        a = self.args
        system = Waypost()
        await system.open(dsn, a.workers)
        try:
            latencies = []
            for _ in range(a.triggers):
                t = time.perf_counter()
                await system.enqueue_one(0.0)
                latencies.append((time.perf_counter() - t) * 1000)
            # The single enqueues are drained too (they are part of the backlog).
            await system.enqueue_many(a.jobs - a.triggers)
            claims = timed_claims()
            with claims:
                started = time.perf_counter()
                await system.start_workers(a.workers, a.batch, lambda _t0: None,
                                           drain_count=a.jobs)
                await system.wait_workers()
                elapsed = time.perf_counter() - started
        finally:
            await system.close()
        return {"trigger_p50_ms": pct(latencies, 50), "trigger_p99_ms": pct(latencies, 99),
                "claim_p50_ms": pct(claims.ms, 50), "claim_p99_ms": pct(claims.ms, 99),
                "drain_runs_per_s": a.jobs / elapsed}

    # --- 2. retention pass ------------------------------------------------------

    async def retention(self) -> None:
        from waypost.engine.core import Engine
        from waypost.model.settings import Settings
        from waypost.store import history

        a = self.args
        dsn = await self._clone("h_expire")
        print(f"Loading {a.expire:,} runs that ended 8 days ago …", flush=True)
        await load_history(dsn, a.expire, "8 days", defer_indexes=a.defer_indexes)
        live = Waypost()
        await live.open(dsn, 1)
        settings = Settings(database_url=dsn, worker_name="bench")
        engine = await Engine.open(settings, migrate_schema=False, pool_size=2)
        stop = asyncio.Event()
        claims = timed_claims()
        phase: dict[str, list[float]] = {"before": [], "during": [], "after": []}

        async def produce() -> None:
            while not stop.is_set():
                await live.enqueue_one(0.0)
                await asyncio.sleep(1 / 200)

        try:
            with claims:
                await live.start_workers(1, 10, lambda _t0: None)
                producer = asyncio.create_task(produce())
                await asyncio.sleep(a.settle)
                phase["before"] = list(claims.ms)
                mark = len(claims.ms)
                batches: list[float] = []
                started = time.perf_counter()
                removed = 0
                while True:
                    t = time.perf_counter()
                    statuses = await history.expire_finished(
                        engine.pool, now=dt.datetime.now(dt.UTC),
                        default_seconds=settings.history_retain_seconds,
                        batch=a.retention_batch)
                    batches.append((time.perf_counter() - t) * 1000)
                    removed += len(statuses)
                    if len(statuses) < a.retention_batch:
                        break
                elapsed = time.perf_counter() - started
                phase["during"] = list(claims.ms[mark:])
                mark = len(claims.ms)
                await asyncio.sleep(a.settle)
                phase["after"] = list(claims.ms[mark:])
                stop.set()
                await producer
                await live.stop_workers()
        finally:
            await engine.close()
            await live.close()
        left = await self._count(dsn)
        self.doc["retention"] = {
            "runs_removed": removed, "runs_left": left, "pass_seconds": elapsed,
            "batches": len(batches), "batch_ms": {
                "p50": pct(batches, 50), "p99": pct(batches, 99), "max": max(batches),
                "sum": sum(batches)},
            "claim_ms": {k: {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99),
                             "max": max(v) if v else None} for k, v in phase.items()},
        }
        print(json.dumps(self.doc["retention"], indent=2), flush=True)

    async def _count(self, dsn: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM waypost.runs WHERE finished_at < now() - interval '7 days'")
            return n
        finally:
            await conn.close()

    def report(self) -> dict[str, Any]:
        size = self.doc["history_size"]
        if size["empty"]:
            ratios = {}
            for key in size["empty"][0]:
                empty = statistics.median(f[key] for f in size["empty"])
                loaded = statistics.median(f[key] for f in size["loaded"])
                ratios[key] = {"empty": empty, "loaded": loaded,
                               "change_pct": (loaded - empty) / empty * 100}
            self.doc["history_size_medians"] = ratios
            print(json.dumps(ratios, indent=2))
        return self.doc


class timed_claims(contextlib.AbstractContextManager["timed_claims"]):
    """Times every ``runs.ack_and_claim`` call made while it is entered."""

    def __init__(self) -> None:
        self.ms: list[float] = []

    def __enter__(self) -> timed_claims:
        from waypost.store import runs

        self._runs = runs
        self._original = runs.ack_and_claim
        original, ms = self._original, self.ms

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                ms.append((time.perf_counter() - t) * 1000)

        runs.ack_and_claim = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        self._runs.ack_and_claim = self._original  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--history", type=int, default=10_000_000,
                   help="finished runs in the loaded history (0: skip scenario 1)")
    p.add_argument("--expire", type=int, default=1_000_000,
                   help="expired runs for the retention pass (0: skip scenario 2)")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--triggers", type=int, default=2_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--retention-batch", type=int, default=1000)
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds of live load before and after the retention pass")
    p.add_argument("--defer-indexes", action="store_true",
                   help="load the history without the history tables' indexes and keys, "
                        "then build them (much faster for millions of runs)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    bench = HistoryBench(args)
    asyncio.run(bench.run())
    doc = bench.report()
    out = Path(args.out) / f"history-{doc['when'][:19].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
