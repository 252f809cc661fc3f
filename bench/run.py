"""`make bench`: waypost, pgqueuer and procrastinate on one durable Postgres.

    .venv/bin/python -m bench [--jobs 100000] [--workers 4] [--batch 10] [--repeats 3]
                              [--bloat-seconds 300] [--systems waypost,pgqueuer,procrastinate]
    BENCH_QUICK=1 .venv/bin/python -m bench      # smaller counts, a smoke run

Each scenario runs every system in its own freshly created database (cloned from a
template holding that system's schema), the order rotating between repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg

from bench import extras, floors
from bench.stats import Results, pct
from bench.systems import SYSTEMS, System, now

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=5000 if quick else 100_000,
                   help="pre-loaded no-op jobs per drain (the issue: 100,000)")
    p.add_argument("--slow-jobs", type=int, default=1000 if quick else 10_000,
                   help="pre-loaded jobs per drain for procrastinate, which drains about "
                        "two orders of magnitude slower (100,000 would take ~15 min a repeat)")
    p.add_argument("--single", type=int, default=500 if quick else 5000,
                   help="single enqueues per repeat")
    p.add_argument("--enqueue-concurrency", type=int, default=4,
                   help="concurrent clients for single enqueues")
    p.add_argument("--bulk-size", type=int, default=1000, help="runs per batched enqueue")
    p.add_argument("--workers", type=int, default=4, help="N: workers for every system")
    p.add_argument("--batch", type=int, default=10,
                   help="claim/dequeue batch for waypost and pgqueuer (pgqueuer's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steady-seconds", type=float, default=5 if quick else 10)
    p.add_argument("--steady-grace", type=float, default=10 if quick else 30,
                   help="after the producer stops, wait this long for started jobs")
    p.add_argument("--rate", type=float, default=0,
                   help="offered rate of the steady state, runs/s (0: half of waypost's "
                        "median steady-state peak in this run)")
    p.add_argument("--max-inflight", type=int, default=64,
                   help="most enqueues in flight at once in the steady-state producer")
    p.add_argument("--peak-rate", type=float, default=20000,
                   help="offered rate of the steady-state peak run (more than any takes)")
    p.add_argument("--wakeups", type=int, default=30 if quick else 200)
    p.add_argument("--checkpoints", type=int, default=100 if quick else 1000,
                   help="checkpoint writes per size")
    p.add_argument("--limit-jobs", type=int, default=3000 if quick else 10_000,
                   help="runs per drain in the concurrency-limit comparison")
    p.add_argument("--limits-before", action="store_true",
                   help="limits: also drain with the claim of the release before migration "
                        "0024 (queues with a limit locked by row), in the same rotation")
    p.add_argument("--bloat-seconds", type=float, default=10 if quick else 300,
                   help="steady run before the bloat reading (the issue: 5 minutes)")
    p.add_argument("--bloat-runs", default="",
                   help="only these bloat runs, e.g. pgqueuer:long_txn (default: waypost:plain, "
                        "waypost:long_txn and pgqueuer:long_txn when pgqueuer is in --systems)")
    p.add_argument("--fsync-seconds", type=int, default=1 if quick else 2)
    p.add_argument("--systems", default="waypost,pgqueuer,procrastinate")
    p.add_argument("--skip", default="", help="comma-separated scenarios to skip")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--profile", action="store_true",
                   help="pyinstrument profile of waypost's drain (bench/results/*.html)")
    args = p.parse_args(argv)
    args.quick = quick
    return args


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results = Results()
        self.meta: dict[str, Any] = {}
        self.floors: dict[str, Any] = {}
        self.notes: list[str] = []
        self.systems = [s for s in args.systems.split(",") if s]
        self.skip = {s for s in args.skip.split(",") if s}

    # -- database plumbing --------------------------------------------------

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.pg.dsn)

    async def make_templates(self) -> None:
        conn = await self.admin()
        try:
            for name in self.systems:
                await conn.execute(f"DROP DATABASE IF EXISTS tpl_{name}")
                await conn.execute(f"CREATE DATABASE tpl_{name}")
        finally:
            await conn.close()
        for name in self.systems:
            await SYSTEMS[name]().install(self.pg.dsn_for(f"tpl_{name}"))

    @contextlib.asynccontextmanager
    async def database(self, name: str) -> AsyncIterator[str]:
        db = f"b_{name}_{os.urandom(4).hex()}"
        conn = await self.admin()
        try:
            await conn.execute(f"CREATE DATABASE {db} TEMPLATE tpl_{name}")
        finally:
            await conn.close()
        try:
            yield db
        finally:
            conn = await self.admin()
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            finally:
                await conn.close()

    async def counters(self, db: str) -> tuple[int, int, int]:
        """(transactions committed in db, cluster WAL position, WAL flushes). Call with
        the system's connections closed: a backend reports its counts when it exits.
        xact_commit counts read-only transactions too (asyncpg's pool runs its reset
        query in one on every release); wal_sync counts the flushes, after group
        commit."""
        conn = await self.admin()
        try:
            await asyncio.sleep(0.2)
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            commits = await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", db)
            lsn = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
            syncs = await conn.fetchval("SELECT wal_sync FROM pg_stat_wal")
        finally:
            await conn.close()
        return int(commits), int(lsn), int(syncs)

    async def reset_statements(self) -> None:
        conn = await self.admin()
        try:
            await conn.execute("SELECT pg_stat_statements_reset()")
        finally:
            await conn.close()

    async def exec_time_ms(self, db: str) -> float:
        conn = await self.admin()
        try:
            total = await conn.fetchval(
                """SELECT coalesce(sum(s.total_exec_time), 0) FROM pg_stat_statements s
                   JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1""", db)
        finally:
            await conn.close()
        return float(total)

    async def top_statements(self, db: str, n: int = 6) -> list[dict[str, Any]]:
        conn = await self.admin()
        try:
            rows = await conn.fetch(
                """SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160) AS query,
                          s.calls, round(s.total_exec_time::numeric, 1) AS total_ms,
                          round(s.mean_exec_time::numeric, 3) AS mean_ms, s.rows
                   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                   WHERE d.datname = $1 ORDER BY s.total_exec_time DESC LIMIT $2""", db, n)
        finally:
            await conn.close()
        return [{k: (float(v) if k.endswith("_ms") else v) for k, v in dict(r).items()}
                for r in rows]

    # -- scenarios ----------------------------------------------------------

    def order(self, rep: int) -> list[str]:
        k = rep % len(self.systems)
        return self.systems[k:] + self.systems[:k]

    async def scenario_enqueue_drain(self, rep: int) -> None:
        a = self.args
        for name in self.order(rep):
            sys_ = SYSTEMS[name]()
            jobs = a.slow_jobs if name == "procrastinate" else a.jobs
            async with self.database(name) as db:
                # single enqueues: C concurrent clients, one job per call
                dsn = self.pg.dsn_for(db)
                c0 = await self.counters(db)
                await sys_.open(dsn, a.enqueue_concurrency)
                per_client = a.single // a.enqueue_concurrency

                async def client(sys_: System = sys_, per_client: int = per_client) -> None:
                    for _ in range(per_client):
                        await sys_.enqueue_one(now())

                t = now()
                await asyncio.gather(*(client() for _ in range(a.enqueue_concurrency)))
                elapsed = now() - t
                await sys_.close()
                c1 = await self.counters(db)
                n = per_client * a.enqueue_concurrency
                self.results.add("enqueue_single", name, "runs_per_s", n / elapsed)
                self.results.add("enqueue_single", name, "commits_per_run", (c1[0] - c0[0]) / n)
                self.results.add("enqueue_single", name, "wal_bytes_per_run", (c1[1] - c0[1]) / n)
                self.results.add("enqueue_single", name, "wal_flushes_per_run",
                                 (c1[2] - c0[2]) / n)
            sys_ = SYSTEMS[name]()
            async with self.database(name) as db:
                dsn = self.pg.dsn_for(db)
                # batched enqueue = the drain's pre-load
                c2 = await self.counters(db)
                await sys_.open(dsn, a.workers)
                t = now()
                left = jobs
                while left > 0:
                    k = min(a.bulk_size, left)
                    await sys_.enqueue_many(k)
                    left -= k
                elapsed = now() - t
                await sys_.close()
                c3 = await self.counters(db)
                self.results.add("enqueue_batch", name, "runs_per_s", jobs / elapsed)
                self.results.add("enqueue_batch", name, "commits_per_run",
                                 (c3[0] - c2[0]) / jobs)
                self.results.add("enqueue_batch", name, "wal_bytes_per_run",
                                 (c3[1] - c2[1]) / jobs)

                # drain
                conn = await asyncpg.connect(dsn)
                done_before = await sys_.done_count(conn)
                await conn.close()
                await self.reset_statements()
                c3 = await self.counters(db)
                await sys_.open(dsn, a.workers)
                seen = 0

                def count(_t0: float) -> None:
                    nonlocal seen
                    seen += 1

                profiler = None
                if a.profile and name == "waypost" and rep == 0:
                    from pyinstrument import Profiler
                    profiler = Profiler(async_mode="enabled")
                    profiler.start()
                t = now()
                await sys_.start_workers(a.workers, a.batch, count, drain_count=jobs)
                await asyncio.wait_for(sys_.wait_workers(), 3600)
                elapsed = now() - t
                if profiler is not None:
                    profiler.stop()
                    out = Path(a.out) / "profile-drain-waypost.html"
                    out.write_text(profiler.output_html())
                    out.with_suffix(".txt").write_text(profiler.output_text(show_all=False))
                    self.notes.append(f"pyinstrument profile of waypost's drain: {out.name}")
                await sys_.close()
                c4 = await self.counters(db)
                conn = await asyncpg.connect(dsn)
                done = await sys_.done_count(conn) - done_before
                await conn.close()
                if done != jobs or seen < jobs:
                    self.notes.append(f"drain {name} rep {rep}: {done} acknowledged, "
                                      f"{seen} started, expected {jobs}")
                self.results.add("drain", name, "runs_per_s", jobs / elapsed)
                self.results.add("drain", name, "seconds", elapsed)
                self.results.add("drain", name, "commits_per_run", (c4[0] - c3[0]) / jobs)
                self.results.add("drain", name, "wal_bytes_per_run", (c4[1] - c3[1]) / jobs)
                self.results.add("drain", name, "wal_flushes_per_run", (c4[2] - c3[2]) / jobs)
                self.results.add("drain", name, "db_exec_us_per_run",
                                 await self.exec_time_ms(db) * 1000 / jobs)
                if rep == 0:
                    self.meta.setdefault("top_statements", {})[f"drain.{name}"] = (
                        await self.top_statements(db))
                print(f"  rep {rep} {name}: single {n / 1:.0f} jobs, drain "
                      f"{jobs / elapsed:,.0f} runs/s", flush=True)

    async def steady(self, name: str, db: str, rate: float, seconds: float,
                     lat: list[float], sys_: System | None = None,
                     wait: bool = True) -> tuple[float, float, int]:
        """Open-loop producer (single enqueues, each its own task, so a slow enqueue
        does not hold the next back) at `rate` runs/s for `seconds`, N workers running.
        Latency runs from a job's scheduled enqueue time to its start. Returns (offered
        rate achieved, runs started per second during the window, runs sent)."""
        a = self.args
        own = sys_ is None
        if sys_ is None:
            sys_ = SYSTEMS[name]()
            await sys_.open(self.pg.dsn_for(db), a.workers)
        # the producer has its own client (pool), as a separate service would
        prod = await self.producer(name, db, sys_)
        started = 0
        last_start = 0.0

        def on_start(t0: float) -> None:
            nonlocal started, last_start
            last_start = now()
            lat.append((last_start - t0) * 1000)
            started += 1

        await sys_.start_workers(a.workers, a.batch, on_start)
        await asyncio.sleep(0.5)
        inflight: set[asyncio.Task[None]] = set()
        sent = 0
        t_begin = now()
        interval = 1.0 / rate
        while True:
            target = t_begin + sent * interval
            elapsed = now() - t_begin
            if elapsed >= seconds:
                break
            delay = target - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(inflight) >= a.max_inflight:
                # the producer cannot keep up: wait for a slot (the latency of the
                # jobs it sends later still counts from their scheduled time)
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(prod.enqueue_one(target))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            sent += 1
        window = now() - t_begin
        offered = sent / window
        started_in_window = started
        if inflight:
            await asyncio.gather(*inflight)
        deadline = now() + (self.args.steady_grace if wait else 0)
        while started < sent and now() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        throughput = started_in_window / window
        await sys_.stop_workers()
        await prod.close()
        if own:
            await sys_.close()
        self.last_started_fraction = started / sent if sent else 1.0
        return offered, throughput, sent

    async def producer(self, name: str, db: str, workers: System) -> System:
        prod = SYSTEMS[name]()
        await prod.open(self.pg.dsn_for(db), self.args.enqueue_concurrency)
        if hasattr(workers, "t0"):
            prod.t0 = workers.t0  # type: ignore[attr-defined]
        return prod

    async def scenario_peak(self, rep: int) -> None:
        """Enqueue and dequeue together, offered more than anyone can take: the
        steady-state peak throughput."""
        a = self.args
        for name in self.order(rep):
            async with self.database(name) as db:
                lat: list[float] = []
                offered, thr, _sent = await self.steady(name, db, a.peak_rate,
                                                        a.steady_seconds, lat, wait=False)
                self.results.add("steady_peak", name, "offered_per_s", offered)
                self.results.add("steady_peak", name, "runs_per_s", thr)
                print(f"  rep {rep} {name}: peak {thr:,.0f}/s (offered {offered:,.0f}/s)",
                      flush=True)

    async def scenario_steady(self, rep: int) -> None:
        a = self.args
        for name in self.order(rep):
            async with self.database(name) as db:
                lat: list[float] = []
                offered, thr, _sent = await self.steady(name, db, self.rate, a.steady_seconds,
                                                       lat)
                self.results.add("steady", name, "offered_per_s", offered)
                self.results.add("steady", name, "runs_per_s", thr)
                self.results.add("steady", name, "p50_ms", pct(lat, 50))
                self.results.add("steady", name, "p99_ms", pct(lat, 99))
                self.results.add("steady", name, "started_fraction", self.last_started_fraction)
                print(f"  rep {rep} {name}: steady {thr:,.0f}/s of {offered:,.0f} offered, "
                      f"p50 {pct(lat, 50):.1f} ms p99 {pct(lat, 99):.1f} ms", flush=True)

    async def scenario_wakeup(self, rep: int) -> None:
        a = self.args
        for name in self.order(rep):
            async with self.database(name) as db:
                sys_ = SYSTEMS[name]()
                await sys_.open(self.pg.dsn_for(db), a.workers)
                got = asyncio.Event()
                lat: list[float] = []

                def on_start(t0: float, lat: list[float] = lat, got: asyncio.Event = got) -> None:
                    lat.append((now() - t0) * 1000)
                    got.set()

                await sys_.start_workers(a.workers, a.batch, on_start)
                prod = await self.producer(name, db, sys_)
                await asyncio.sleep(1.0)
                missed = 0
                for _ in range(a.wakeups):
                    got.clear()
                    await prod.enqueue_one(now())
                    try:
                        await asyncio.wait_for(got.wait(), 10)
                    except TimeoutError:
                        missed += 1
                    await asyncio.sleep(0.02)
                await sys_.stop_workers()
                await prod.close()
                await sys_.close()
                if missed:
                    self.notes.append(f"wakeup {name} rep {rep}: {missed} not started in 10 s")
                self.results.add("wakeup", name, "p50_ms", pct(lat, 50))
                self.results.add("wakeup", name, "p99_ms", pct(lat, 99))
                print(f"  rep {rep} {name}: wake-up p50 {pct(lat, 50):.1f} ms "
                      f"p99 {pct(lat, 99):.1f} ms", flush=True)

    # -- the whole run --------------------------------------------------------

    async def run(self) -> None:
        a = self.args
        from waypost.store.embedded import EmbeddedPostgres, find_bin_dir

        base = Path(tempfile.mkdtemp(prefix="waypost-bench-", dir="/var/tmp"))
        os.chmod(base, 0o755)
        self.pg = EmbeddedPostgres(base / "data", durable=True, settings={
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all",
            "max_connections": "300",
        })
        print(f"Starting a durable Postgres in {self.pg.data_dir} …", flush=True)
        self.pg.start()
        try:
            conn = await self.admin()
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                settings = {r["name"]: r["setting"] for r in await conn.fetch(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY($1)",
                    ["fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
                     "shared_buffers", "max_wal_size", "autovacuum", "server_version"])}
            finally:
                await conn.close()
            assert settings["fsync"] == "on" and settings["synchronous_commit"] == "on" and \
                settings["full_page_writes"] == "on", settings
            self.meta["postgres_settings"] = settings
            print("Floors …", flush=True)
            self.floors["flush"] = floors.fsync_floor(find_bin_dir(), a.fsync_seconds,
                                                      self.pg.data_dir.parent)
            self.floors["select1"] = await floors.rtt_floor(self.pg.dsn, 2000)
            self.floors["commit"] = await floors.commit_floor(self.pg.dsn,
                                                              500 if a.quick else 2000)
            print(f"  {self.floors}", flush=True)
            await self.make_templates()
            for rep in range(a.repeats):
                if "drain" not in self.skip:
                    print(f"Enqueue and drain, repeat {rep + 1}/{a.repeats} …", flush=True)
                    await self.scenario_enqueue_drain(rep)
            for rep in range(a.repeats):
                if "steady" not in self.skip:
                    print(f"Steady-state peak, repeat {rep + 1}/{a.repeats} …", flush=True)
                    await self.scenario_peak(rep)
            peak = self.results.median("steady_peak", "waypost", "runs_per_s")
            self.rate = a.rate or (peak / 2 if peak else 200.0)
            self.meta["steady_rate_per_s"] = self.rate
            for rep in range(a.repeats):
                if "steady" not in self.skip:
                    print(f"Steady state at {self.rate:,.0f} runs/s, repeat {rep + 1} …",
                          flush=True)
                    await self.scenario_steady(rep)
                if "wakeup" not in self.skip:
                    print(f"Wake-up, repeat {rep + 1} …", flush=True)
                    await self.scenario_wakeup(rep)
            if "waypost" in self.systems:
                await extras.run_all(self)
        finally:
            self.pg.destroy()
            shutil.rmtree(base, ignore_errors=True)
        self.report()

    def report(self) -> None:
        a = self.args
        summary = self.results.summarised()
        fl = self.floors
        flush_ms = (fl["flush"].get("flush_us") or 0) / 1000
        rtt_ms = fl["select1"]["p50_us"] / 1000
        commit_ms = fl["commit"]["p50_us"] / 1000
        commit_rate = 1000 / commit_ms if commit_ms else None
        # ratios to the floors
        for systems in summary.values():
            for figs in systems.values():
                for fig, s in figs.items():
                    med = s["median"]
                    if med is None:
                        continue
                    r: dict[str, float] = {}
                    if fig.endswith("_ms"):
                        r["x_commit_p50"] = med / commit_ms
                        r["x_select1_p50"] = med / rtt_ms
                        if flush_ms:
                            r["x_flush"] = med / flush_ms
                    elif fig.endswith("per_s") and commit_rate:
                        r["x_serial_commit_rate"] = med / commit_rate
                    if r:
                        s["ratio_to_floor"] = {k: round(v, 2) for k, v in r.items()}
        doc = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": a.quick,
            "settings": {k: v for k, v in vars(a).items()},
            "machine": machine(),
            "versions": versions(),
            "git_commit": git_commit(),
            "floors": self.floors,
            "results": summary,
            "meta": self.meta,
            "notes": self.notes,
        }
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
        path = out / f"{stamp}{'-quick' if a.quick else ''}.json"
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(table(doc))
        print(f"\nWritten {path}")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().split()[1]
        info["memory_gb"] = round(int(mem) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return info


def git_commit() -> str | None:
    import subprocess
    proc = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("waypost", "pgqueuer", "procrastinate", "asyncpg", "psycopg", "aiohttp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def table(doc: dict[str, Any]) -> str:
    """scenario.figure rows, one column per system: median (±spread %)."""
    res = doc["results"]
    systems: list[str] = []
    for scen in res.values():
        for s in scen:
            if s not in systems:
                systems.append(s)
    rows = []
    for scenario, by_sys in res.items():
        figures: list[str] = []
        for figs in by_sys.values():
            figures += [f for f in figs if f not in figures]
        for fig in figures:
            cells = []
            for s in systems:
                v = by_sys.get(s, {}).get(fig)
                if v is None or v["median"] is None:
                    cells.append("")
                else:
                    cells.append(f"{fmt(v['median'])} (±{v['spread_pct']:.0f}%)"
                                 if len(v["repeats"]) > 1 else fmt(v["median"]))
            rows.append([f"{scenario}.{fig}", *cells])
    head = ["figure", *systems]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     + " |")
    fl = doc["floors"]
    lines.append("")
    lines.append(f"Floors: flush (pg_test_fsync fdatasync, 8 kB) "
                 f"{fmt(fl['flush'].get('flush_us'))} µs; SELECT 1 p50 "
                 f"{fmt(fl['select1']['p50_us'])} µs p99 {fmt(fl['select1']['p99_us'])} µs; "
                 f"one-row INSERT+commit p50 {fmt(fl['commit']['p50_us'])} µs "
                 f"p99 {fmt(fl['commit']['p99_us'])} µs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t = time.monotonic()
    asyncio.run(Bench(args).run())
    print(f"Total {time.monotonic() - t:.0f} s", file=sys.stderr)


