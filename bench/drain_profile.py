"""Where a drain's time goes: one drain per system, with the database side watched.

    .venv/bin/python -m bench.drain_profile [--jobs 20000] [--workers 4] [--batch 10]
                                            [--systems waypost,pgqueuer]

`make bench` says how fast each system drains; this says why. For each system it
starts the same kind of durable Postgres as `make bench`, pre-loads the jobs,
takes a CHECKPOINT, then drains them with N workers while it

- samples ``pg_stat_activity`` of the system's database every 3 ms: how many of
  its backends are, on average, running, waiting for a WAL flush, idle inside a
  transaction (waiting for the client between statements) or idle;
- counts the CPU time of every Postgres process (``/proc``, Linux only) and of
  this Python process, per job;
- reads ``pg_stat_statements`` (nested statements included) and the WAL written,
  per resource manager (``pg_walinspect``), per job.

The sampler itself costs some database CPU; it does so for every system alike.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.systems import SYSTEMS
from waypost.store.embedded import EmbeddedPostgres


def postgres_cpu_seconds() -> float:
    """User + system CPU of every process named postgres, children's included."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if not text[text.index("(") + 1:text.rindex(")")].startswith("postgres"):
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


async def sample_backends(dsn: str, db: str, stop: asyncio.Event,
                          seen: collections.Counter[tuple[Any, ...]]) -> int:
    conn = await asyncpg.connect(dsn)
    samples = 0
    try:
        while not stop.is_set():
            for r in await conn.fetch(
                    """SELECT state, wait_event_type, wait_event FROM pg_stat_activity
                       WHERE datname = $1 AND pid <> pg_backend_pid()""", db):
                seen[(r["state"], r["wait_event_type"], r["wait_event"])] += 1
            samples += 1
            await asyncio.sleep(0.003)
    finally:
        await conn.close()
    return samples


async def profile(pg: EmbeddedPostgres, name: str, jobs: int, workers: int,
                  batch: int) -> None:
    admin = await asyncpg.connect(pg.dsn)
    try:
        db = f"profile_{name}"
        await admin.execute(f"CREATE DATABASE {db}")
        system = SYSTEMS[name]()
        await system.install(pg.dsn_for(db))
        await system.open(pg.dsn_for(db), workers)
        for done in range(0, jobs, 1000):
            await system.enqueue_many(min(1000, jobs - done))
        await admin.execute("CHECKPOINT")
        await admin.execute("SELECT pg_stat_statements_reset()")
        lsn0 = await admin.fetchval("SELECT pg_current_wal_lsn()::text")
        syncs0 = await admin.fetchval("SELECT wal_sync FROM pg_stat_wal")
        seen: collections.Counter[tuple[Any, ...]] = collections.Counter()
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_backends(pg.dsn, db, stop, seen))
        pg_cpu0, py_cpu0, t0 = postgres_cpu_seconds(), time.process_time(), time.perf_counter()
        await system.start_workers(workers, batch, lambda _t: None, drain_count=jobs)
        await system.wait_workers()
        wall = time.perf_counter() - t0
        py_cpu, pg_cpu = time.process_time() - py_cpu0, postgres_cpu_seconds() - pg_cpu0
        stop.set()
        samples = await sampler
        await system.close()
        lsn1 = await admin.fetchval("SELECT pg_current_wal_lsn()::text")
        syncs1 = await admin.fetchval("SELECT wal_sync FROM pg_stat_wal")
        wal_bytes = await admin.fetchval("SELECT $2::text::pg_lsn - $1::text::pg_lsn", lsn0, lsn1)

        print(f"\n== {name}: {jobs:,} jobs, {workers} workers, batch {batch}: "
              f"{jobs / wall:,.0f} runs/s ({wall:.1f} s)")
        print(f"   CPU per job: Postgres {pg_cpu / jobs * 1e6:.0f} µs, "
              f"this Python process {py_cpu / jobs * 1e6:.0f} µs")
        print(f"   WAL per job {float(wal_bytes) / jobs:,.0f} bytes, "
              f"WAL flushes per job {(syncs1 - syncs0) / jobs:.3f}")
        print("   backends of its database, average over the drain:")
        for (state, wtype, wevent), n in seen.most_common(8):
            print(f"     {n / max(samples, 1):5.2f}  {state} {wtype or ''} {wevent or ''}")
        print("   statements (exec time; a function's time includes its nested statements):")
        for r in await admin.fetch(
                """SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 80) AS q, calls,
                          total_exec_time AS ms
                   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                   WHERE d.datname = $1 ORDER BY total_exec_time DESC LIMIT 8""", db):
            print(f"     {r['ms'] / max(r['calls'], 1) * 1000:8.0f} µs x {r['calls']:6d}  {r['q']}")
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        print("   WAL per job by resource manager (records + full-page images):")
        for r in await admin.fetch(
                """SELECT * FROM (SELECT "resource_manager/record_type" AS rm, count,
                                         record_size, fpi_size
                                  FROM pg_get_wal_stats($1::text::pg_lsn, $2::text::pg_lsn)) w
                   WHERE count > 0 ORDER BY record_size + fpi_size DESC LIMIT 5""", lsn0, lsn1):
            print(f"     {r['rm']:12s} {r['record_size'] / jobs:7,.0f} + "
                  f"{r['fpi_size'] / jobs:6,.0f} bytes ({r['count'] / jobs:.1f} records)")
        # Each record counted against the relation of its first block (the heap or index
        # page it changes); relations truncated since (waypost's rotated run_queue) no
        # longer resolve and show as "(rotated away)".
        conn = await asyncpg.connect(pg.dsn_for(db))
        try:
            # The relations resolve only in the system's own database: the extension
            # is needed there too.
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            rows = await conn.fetch(
                """WITH w AS (
                       SELECT record_length, fpi_length, record_type,
                              substring(block_ref FROM 'rel \\d+/\\d+/(\\d+)')::oid AS node,
                              substring(block_ref FROM 'rel (\\d+)/')::oid AS space
                       FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn))
                   SELECT coalesce(pg_filenode_relation(
                                       CASE WHEN w.space = 1663 THEN 0 ELSE w.space END,
                                       w.node)::text,
                                   CASE WHEN w.node IS NULL THEN '(no block)'
                                        ELSE '(rotated away)' END) AS rel,
                          w.record_type AS kind,
                          count(*) AS n, sum(record_length) AS rec, sum(fpi_length) AS fpi
                   FROM w GROUP BY 1, 2 ORDER BY sum(record_length) DESC LIMIT 30""",
                lsn0, lsn1)
        finally:
            await conn.close()
        # record_length counts a record's full-page images too.
        print("   WAL per job by relation and record type (bytes, of which full-page images):")
        for r in rows:
            print(f"     {r['rel'][:36]:36s} {r['kind'][:14]:14s} {float(r['rec']) / jobs:7,.0f} "
                  f"(FPI {float(r['fpi']) / jobs:5,.0f}) bytes, {r['n'] / jobs:.2f} records")
    finally:
        await admin.close()


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.drain_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--systems", default="waypost,pgqueuer")
    a = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="waypost-drain-profile-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "data", durable=True, settings={
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
        "max_connections": "300",
    })
    pg.start()
    try:
        conn = await asyncpg.connect(pg.dsn)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.close()
        for name in [s for s in a.systems.split(",") if s]:
            await profile(pg, name, a.jobs, a.workers, a.batch)
    finally:
        pg.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
