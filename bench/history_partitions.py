"""`python -m bench.history_partitions`: what history partitioned by expiry time would
cost, measured on copies of waypost's own tables before the schema is changed.

    .venv/bin/python -m bench.history_partitions [--runs 10000] [--expire 1000000]

The design measured (issue 15, "History with retention"): history partitioned by
**expiry time** (`expires_at`, set when a run finishes to its end time plus its Task's
`retainFor`; `infinity` while a run is active or dead-lettered), so that every
partition expires whole whatever each Task's retention, and retention is `DETACH
PARTITION … CONCURRENTLY` + `DROP TABLE` instead of row deletes. Finishing a run then
moves its row from the active partition into an expiry partition: a delete plus an
insert instead of an update. Three layouts, on tables made with `CREATE TABLE …
(LIKE waypost.<table> …)` from a freshly migrated waypost schema (same columns, same
secondary indexes):

- ``flat``: today's layout (runs, attempts, run_events; foreign keys with ON DELETE
  CASCADE; the run and attempt rows updated at the finish).
- ``part``: runs, attempts and events all partitioned by expiry; the finish moves the
  run, its attempt and its earlier events.
- ``hyb``: runs and attempts partitioned by expiry (moved at the finish, where they
  are updated anyway); events, which are only ever inserted, partitioned by the day
  they are written and never moved.

Partitioned copies carry the expiry column in their keys (Postgres requires a
partitioned table's unique indexes to hold the partition key, so the idempotency
index cannot stay unique) and have no foreign keys (see ``schema_sql``).

One durable Postgres (the settings of ``make bench``), four measurements:

1. **Write path** (``--runs``, batches of ``--batch`` per transaction, as the
   dispatcher's claims and batched acknowledgements): enqueue (run row + ``queued``
   event), claim (run row to running + attempt row + two events), finish (run row to
   succeeded + attempt closed + two events). WAL bytes per run (after a CHECKPOINT,
   so each layout pays its first-touch page images), of which full-page images
   (``pg_walinspect``), and µs per run, for each layout.
2. **Lookups by id** (every hot-path statement reads a run by id): a prepared
   generic-plan ``SELECT … WHERE id = $1`` over the active runs, µs per lookup,
   flat vs ``--partitions`` expiry partitions without the partition key (every
   partition's index probed) and with ``expires_at = 'infinity'`` (pruned to the
   active partition, as the partitioned write path above does).
3. **Expiry** of ``--expire`` runs (each with an attempt and five events) that sit in
   one expiry partition, beside a live load (one connection enqueues, claims and
   finishes batches of 10 runs in the partitioned tables without pause, each claim
   and finish transaction timed): detach (``CONCURRENTLY``) and drop the events,
   attempts and runs partitions, each statement timed. The strongest lock a
   concurrent detach takes on the parent is SHARE UPDATE EXCLUSIVE, which no insert,
   update or select waits for; the drop locks only the detached table.
4. **Today's retention** on the flat copy holding the same ``--expire`` runs: the
   first ``--delete-batches`` batches of 1,000 row deletes (the shape of
   ``expire_finished_runs``), timed, beside the same live load on the flat tables,
   and the whole pass extrapolated from them.

Results go to ``bench/results/history-partitions-<UTC time>.json`` and are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.stats import pct
from bench.systems import NAMESPACE, Waypost

HERE = Path(__file__).resolve().parent
DAY = dt.timedelta(days=1)


def schema_sql(days: int, today: dt.date) -> list[str]:
    """The flat copies (today's layout) and the expiry-partitioned copies."""
    stmts = [
        "CREATE SCHEMA proto",
        "CREATE TABLE proto.flat_runs (LIKE waypost.runs INCLUDING ALL)",
        "CREATE TABLE proto.flat_attempts (LIKE waypost.attempts INCLUDING ALL,"
        " FOREIGN KEY (run_id) REFERENCES proto.flat_runs (id) ON DELETE CASCADE)",
        "CREATE TABLE proto.flat_events (LIKE waypost.run_events INCLUDING ALL,"
        " FOREIGN KEY (run_id) REFERENCES proto.flat_runs (id) ON DELETE CASCADE)",
    ]
    for pre in ("part", "hyb"):
        # Partitioned: every unique index must hold the partition key, so the primary
        # keys carry expires_at. No foreign keys: a detached child partition that still
        # references runs cannot be dropped without locking runs (measured: the drop
        # waited 1 s behind the live load and deadlocked with it), so the finish moves
        # a run's attempts (and in "part" its events) itself, and expiry drops whole
        # partitions. "hyb" keeps events (insert-only) in partitions by creation day.
        events_key = "expires_at" if pre == "part" else "ts"
        stmts += [
            f"CREATE TABLE proto.{pre}_runs (LIKE waypost.runs INCLUDING DEFAULTS"
            " INCLUDING CONSTRAINTS, expires_at timestamptz NOT NULL DEFAULT 'infinity',"
            " PRIMARY KEY (id, expires_at)) PARTITION BY RANGE (expires_at)",
            f"CREATE TABLE proto.{pre}_attempts (LIKE waypost.attempts INCLUDING DEFAULTS"
            " INCLUDING CONSTRAINTS, expires_at timestamptz NOT NULL DEFAULT 'infinity',"
            " PRIMARY KEY (run_id, attempt, expires_at)) PARTITION BY RANGE (expires_at)",
            f"CREATE SEQUENCE proto.{pre}_events_id",
            f"CREATE TABLE proto.{pre}_events (LIKE waypost.run_events INCLUDING CONSTRAINTS"
            + (", expires_at timestamptz NOT NULL DEFAULT 'infinity'" if pre == "part" else "")
            + f") PARTITION BY RANGE ({events_key})",
            f"ALTER TABLE proto.{pre}_events ALTER COLUMN id SET DEFAULT"
            f" nextval('proto.{pre}_events_id'), ALTER COLUMN tx SET DEFAULT"
            " pg_current_xact_id(), ALTER COLUMN ts SET DEFAULT now(),"
            " ALTER COLUMN data SET DEFAULT '{}'",
        ]
        for table in ("runs", "attempts", "events"):
            if pre == "part" or table != "events":
                stmts.append(f"CREATE TABLE proto.{pre}_{table}_active PARTITION OF"
                             f" proto.{pre}_{table} FOR VALUES FROM ('infinity') TO (MAXVALUE)")
            for d in range(-2, days):
                lo, hi = today + d * DAY, today + (d + 1) * DAY
                stmts.append(
                    f"CREATE TABLE proto.{pre}_{table}_{lo:%Y%m%d} PARTITION OF"
                    f" proto.{pre}_{table} FOR VALUES FROM ('{lo}') TO ('{hi}')")
    return stmts


async def copy_indexes(conn: asyncpg.Connection) -> list[str]:
    """The secondary indexes of runs, attempts and run_events on the partitioned copies
    (unique ones without uniqueness: it cannot hold across partitions without the
    expiry column; the retention index is not needed: partitions are the retention)."""
    made = []
    for table, part in [(t, f"{pre}_{name}") for pre in ("part", "hyb")
                        for t, name in (("runs", "runs"), ("attempts", "attempts"),
                                        ("run_events", "events"))]:
        rows = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'waypost'"
            " AND tablename = $1 AND indexname NOT LIKE '%pkey'", table)
        for r in rows:
            if r["indexname"] == "runs_expirable":
                continue
            ddl = (r["indexdef"].replace("CREATE UNIQUE INDEX", "CREATE INDEX")
                   .replace(f" ON waypost.{table} ", f" ON proto.{part} ")
                   .replace(f"INDEX {r['indexname']} ", f"INDEX {part[:4]}_{r['indexname']} "))
            await conn.execute(ddl)
            made.append(ddl)
    return made


FINISH_EVENTS = (
    "(VALUES ('attempt_finished', '{\"status\": \"succeeded\", \"durationMs\": 1}'),"
    " ('status', '{\"status\": \"succeeded\", \"previous\": \"running\"}')) k(kind, data)")


class Layout:
    """The statements of one layout; ``part`` sets the expiry at finish."""

    def __init__(self, name: str, retain: str) -> None:
        self.name = name
        self.part = name != "flat"
        p = f"proto.{name}"
        self.enqueue = (
            f"WITH r AS (INSERT INTO {p}_runs (id, seq, namespace, task, queue, status, spec,"
            " memory_bytes, trace_id, source)"
            " SELECT i, nextval('waypost.runs_seq_seq'), $2, 'noop', 'noop', 'queued', $3,"
            " 536870912, md5(i::text), 'bench' FROM unnest($1::uuid[]) i RETURNING id)"
            f" INSERT INTO {p}_events (run_id, kind, data)"
            " SELECT id, 'status', '{\"status\": \"queued\"}' FROM r")
        self.claim = (
            f"WITH s AS (UPDATE {p}_runs SET status = 'running', attempt = 1,"
            " started_at = now(), updated_at = now() WHERE id = ANY($1::uuid[])"
            + (" AND expires_at = 'infinity'" if self.part else "") +
            " RETURNING id), a AS ("
            f"INSERT INTO {p}_attempts (run_id, attempt, claim_token, status, memory_bytes,"
            " worker) SELECT id, 1, nextval('waypost.claim_tokens'), 'running', 536870912,"
            " 'bench' FROM s)"
            f" INSERT INTO {p}_events (run_id, kind, attempt, data)"
            " SELECT s.id, k.kind, 1, k.data::jsonb FROM s CROSS JOIN (VALUES"
            " ('attempt_started', '{\"worker\": \"bench\"}'),"
            " ('status', '{\"status\": \"running\", \"previous\": \"queued\"}')) k(kind, data)")
        expiry = f"date_trunc('hour', now()) + interval '{retain}'"
        if not self.part:
            self.finish = [
                f"UPDATE {p}_runs SET status = 'succeeded', result = 'null',"
                " finished_at = now(), updated_at = now() WHERE id = ANY($1::uuid[])",
                f"UPDATE {p}_attempts SET status = 'succeeded', finished_at = now()"
                " WHERE run_id = ANY($1::uuid[]) AND attempt = 1",
                f"INSERT INTO {p}_events (run_id, kind, attempt, data)"
                " SELECT i, k.kind, 1, k.data::jsonb FROM unnest($1::uuid[]) i"
                f" CROSS JOIN {FINISH_EVENTS}",
            ]
        else:
            # The run, its attempt and its earlier events move to the expiry partition;
            # the finish's own events are written there directly.
            self.finish = [
                f"UPDATE {p}_runs SET status = 'succeeded', result = 'null',"
                f" finished_at = now(), updated_at = now(), expires_at = {expiry}"
                " WHERE id = ANY($1::uuid[]) AND expires_at = 'infinity'",
                f"UPDATE {p}_attempts SET status = 'succeeded', finished_at = now(),"
                f" expires_at = {expiry}"
                " WHERE run_id = ANY($1::uuid[]) AND attempt = 1 AND expires_at = 'infinity'",
            ]
            if name == "part":
                self.finish += [
                    f"UPDATE {p}_events SET expires_at = {expiry}"
                    " WHERE run_id = ANY($1::uuid[]) AND expires_at = 'infinity'",
                    f"INSERT INTO {p}_events (run_id, kind, attempt, data, expires_at)"
                    f" SELECT i, k.kind, 1, k.data::jsonb, {expiry} FROM unnest($1::uuid[]) i"
                    f" CROSS JOIN {FINISH_EVENTS}"]
            else:  # hyb: events stay where they were written (by creation day)
                self.finish.append(
                    f"INSERT INTO {p}_events (run_id, kind, attempt, data)"
                    " SELECT i, k.kind, 1, k.data::jsonb FROM unnest($1::uuid[]) i"
                    f" CROSS JOIN {FINISH_EVENTS}")

    async def enqueue_batch(self, conn: asyncpg.Connection, ids: list[uuid.UUID],
                            spec: str) -> None:
        await conn.execute(self.enqueue, ids, NAMESPACE, spec)

    async def claim_batch(self, conn: asyncpg.Connection, ids: list[uuid.UUID]) -> None:
        async with conn.transaction():
            await conn.execute(self.claim, ids)

    async def finish_batch(self, conn: asyncpg.Connection, ids: list[uuid.UUID]) -> None:
        async with conn.transaction():
            for sql in self.finish:
                await conn.execute(sql, ids)


async def wal_lsn(conn: asyncpg.Connection) -> int:
    v: int = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    return int(v)


class PartitionBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.doc: dict[str, Any] = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "args": vars(args),
            "load": [], "write_path": {}, "lookups": {}, "expiry": {}, "deletes": {}}

    def uptime(self) -> None:
        with open("/proc/loadavg") as f:
            self.doc["load"].append([time.strftime("%H:%M:%S", time.gmtime()),
                                     f.read().split()[:3]])

    async def run(self) -> None:
        from waypost.store.embedded import EmbeddedPostgres

        base = Path(tempfile.mkdtemp(prefix="waypost-bench-hpart-", dir="/var/tmp"))
        os.chmod(base, 0o755)
        self.pg = EmbeddedPostgres(base / "data", durable=True,
                                   settings={"max_connections": "100",
                                             "max_wal_size": "4GB"})
        print(f"Starting a durable Postgres in {self.pg.data_dir} …", flush=True)
        self.pg.start()
        try:
            admin = await asyncpg.connect(self.pg.dsn)
            await admin.execute("CREATE DATABASE hpart")
            await admin.close()
            dsn = self.pg.dsn_for("hpart")
            await Waypost().install(dsn)
            self.conn = await asyncpg.connect(dsn)
            self.dsn = dsn
            self.spec = await self.conn.fetchval(
                "SELECT spec::text FROM waypost.tasks WHERE namespace = $1 AND name = 'noop'",
                NAMESPACE)
            today = (await self.conn.fetchval("SELECT now()")).date()
            await self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            for sql in schema_sql(self.args.partitions, today):
                await self.conn.execute(sql)
            self.doc["indexes"] = await copy_indexes(self.conn)
            self.uptime()
            await self.write_path()
            self.uptime()
            await self.lookups()
            self.uptime()
            if self.args.expire:
                await self.expiry()
                self.uptime()
            await self.conn.close()
        finally:
            self.pg.destroy()
            shutil.rmtree(base, ignore_errors=True)

    # --- 1. write path ----------------------------------------------------------

    async def write_path(self) -> None:
        a = self.args
        out: dict[str, dict[str, list[float]]] = {}
        for rep in range(a.repeats):
            order = ["flat", "part", "hyb"] if rep % 2 == 0 else ["hyb", "part", "flat"]
            for name in order:
                layout = Layout(name, a.retain)
                ids = [uuid.uuid4() for _ in range(a.runs)]
                batches = [ids[i:i + a.batch] for i in range(0, len(ids), a.batch)]
                figures = out.setdefault(name, {})
                for phase in ("enqueue", "claim", "finish"):
                    await self.conn.execute("CHECKPOINT")
                    before = await wal_lsn(self.conn)
                    t = time.perf_counter()
                    for b in batches:
                        if phase == "enqueue":
                            await layout.enqueue_batch(self.conn, b, self.spec)
                        elif phase == "claim":
                            await layout.claim_batch(self.conn, b)
                        else:
                            await layout.finish_batch(self.conn, b)
                    us = (time.perf_counter() - t) * 1e6 / a.runs
                    after = await wal_lsn(self.conn)
                    wal = (after - before) / a.runs
                    # Full-page images depend on which pages a phase happens to touch
                    # first after the checkpoint; the records alone compare layouts.
                    fpi = float(await self.conn.fetchval(
                        "SELECT coalesce(sum(fpi_size), 0) FROM pg_get_wal_stats("
                        "'0/0'::pg_lsn + $1::numeric, '0/0'::pg_lsn + $2::numeric)",
                        before, after)) / a.runs
                    figures.setdefault(f"{phase}_wal_bytes_per_run", []).append(wal)
                    figures.setdefault(f"{phase}_fpi_bytes_per_run", []).append(fpi)
                    figures.setdefault(f"{phase}_us_per_run", []).append(us)
                print(f"  rep {rep} {name}: " + ", ".join(
                    f"{k} {v[-1]:,.0f}" for k, v in figures.items()), flush=True)
        self.doc["write_path"] = out
        self.doc["write_path_medians"] = {
            name: {k: statistics.median(v) for k, v in f.items()} for name, f in out.items()}
        where = await self.conn.fetch(
            "SELECT tableoid::regclass::text AS part, count(*) AS n FROM proto.part_runs"
            " GROUP BY 1 ORDER BY 1")
        self.doc["write_path_partitions"] = {r["part"]: r["n"] for r in where}
        print(json.dumps(self.doc["write_path_medians"], indent=2), flush=True)

    # --- 2. lookups by id -------------------------------------------------------

    async def lookups(self) -> None:
        a = self.args
        out: dict[str, list[float]] = {}
        # Active runs to look up: enqueued and left queued in both layouts.
        ids = [uuid.uuid4() for _ in range(a.lookups)]
        for name in ("flat", "part"):
            layout = Layout(name, a.retain)
            for i in range(0, len(ids), 1000):
                await layout.enqueue_batch(self.conn, ids[i:i + 1000], self.spec)
        await self.conn.execute("ANALYZE proto.flat_runs")
        await self.conn.execute("ANALYZE proto.part_runs")
        await self.conn.execute("SET plan_cache_mode = force_generic_plan")
        variants = {
            "flat": "SELECT status FROM proto.flat_runs WHERE id = $1",
            "part": "SELECT status FROM proto.part_runs WHERE id = $1",
            "part_active": "SELECT status FROM proto.part_runs WHERE id = $1"
                           " AND expires_at = 'infinity'"}
        for rep in range(a.repeats):
            names = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in names:
                stmt = await self.conn.prepare(variants[name])
                t = time.perf_counter()
                for i in ids:
                    await stmt.fetchval(i)
                out.setdefault(name, []).append(
                    (time.perf_counter() - t) * 1e6 / len(ids))
        plan = await self.conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)"
            " SELECT status FROM proto.part_runs WHERE id = $1", ids[0])
        await self.conn.execute("RESET plan_cache_mode")
        self.doc["lookups"] = {"us_per_lookup": out,
                               "medians": {k: statistics.median(v) for k, v in out.items()},
                               "partitions": a.partitions + 3,
                               "part_plan": [r[0] for r in plan]}
        print(json.dumps(self.doc["lookups"]["medians"]), flush=True)

    # --- 3./4. expiry -----------------------------------------------------------

    async def load_expired(self, name: str, n: int, ends: str) -> float:
        """``n`` finished runs (attempt + 5 events each) expiring at ``ends``."""
        p = f"proto.{name}"
        ex_col, ex_val = (", expires_at", f", '{ends}'::timestamptz") if name == "part" \
            else ("", "")
        t = time.perf_counter()
        done = 0
        while done < n:
            k = min(100_000, n - done)
            async with self.conn.transaction():
                await self.conn.execute(
                    f"CREATE TEMP TABLE ids ON COMMIT DROP AS SELECT gen_random_uuid() AS id"
                    f" FROM generate_series(1, {k})")
                await self.conn.execute(
                    f"INSERT INTO {p}_runs (id, seq, namespace, task, queue, status, spec,"
                    " memory_bytes, attempt, result, trace_id, source, started_at, finished_at"
                    f"{ex_col}) SELECT id, nextval('waypost.runs_seq_seq'), $1, 'noop', 'noop',"
                    " 'succeeded', $2, 536870912, 1, 'null', md5(id::text), 'bench',"
                    f" now() - interval '8 days', now() - interval '8 days'{ex_val} FROM ids",
                    NAMESPACE, self.spec)
                await self.conn.execute(
                    f"INSERT INTO {p}_attempts (run_id, attempt, claim_token, status,"
                    f" memory_bytes, worker, finished_at{ex_col}) SELECT id, 1,"
                    " nextval('waypost.claim_tokens'), 'succeeded', 536870912, 'bench',"
                    f" now() - interval '8 days'{ex_val} FROM ids")
                await self.conn.execute(
                    f"INSERT INTO {p}_events (run_id, kind, attempt, data{ex_col})"
                    f" SELECT id, k.kind, 1, k.data::jsonb{ex_val} FROM ids CROSS JOIN (VALUES"
                    " ('status', '{\"status\": \"queued\"}'),"
                    " ('attempt_started', '{\"worker\": \"bench\"}'),"
                    " ('status', '{\"status\": \"running\", \"previous\": \"queued\"}'),"
                    " ('attempt_finished', '{\"status\": \"succeeded\", \"durationMs\": 1}'),"
                    " ('status', '{\"status\": \"succeeded\", \"previous\": \"running\"}'))"
                    " k(kind, data)")
            done += k
        await self.conn.execute(f"VACUUM ANALYZE {p}_runs, {p}_attempts, {p}_events")
        return time.perf_counter() - t

    async def live_load(self, name: str, stop: asyncio.Event, ms: list[float]) -> None:
        """Enqueue, claim and finish batches of 10 runs without pause, timing each
        transaction (the claim and the finish: what a retention pass must not block)."""
        layout = Layout(name, self.args.retain)
        conn = await asyncpg.connect(self.dsn)
        try:
            while not stop.is_set():
                ids = [uuid.uuid4() for _ in range(10)]
                await layout.enqueue_batch(conn, ids, self.spec)
                t = time.perf_counter()
                await layout.claim_batch(conn, ids)
                ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                await layout.finish_batch(conn, ids)
                ms.append((time.perf_counter() - t) * 1000)
        finally:
            await conn.close()

    async def expiry(self) -> None:
        a = self.args
        today = (await self.conn.fetchval("SELECT now()")).date()
        victim = today - 2 * DAY  # an expiry partition in the past
        ends = f"{victim} 12:00:00+00"
        print(f"Loading {a.expire:,} expired runs into each layout …", flush=True)
        self.doc["expiry"]["load_seconds"] = {
            "part": await self.load_expired("part", a.expire, ends),
            "flat": await self.load_expired("flat", a.expire, ends)}
        sizes = await self.conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'proto'"
            " AND c.relkind = 'r' AND (c.relname LIKE 'flat_%' OR c.relname LIKE $1)",
            f"%_{victim:%Y%m%d}")
        self.doc["expiry"]["bytes"] = {r["relname"]: r["bytes"] for r in sizes}
        self.uptime()

        # 3. the partitioned layout: detach + drop, beside a live load.
        statements: list[dict[str, Any]] = []

        async def detach_and_drop() -> None:
            for table in ("events", "attempts", "runs"):
                part = f"proto.part_{table}_{victim:%Y%m%d}"
                for sql in (f"ALTER TABLE proto.part_{table} DETACH PARTITION {part}"
                            " CONCURRENTLY", f"DROP TABLE {part}"):
                    t = time.perf_counter()
                    await self.conn.execute(sql)
                    statements.append({"sql": sql, "ms": (time.perf_counter() - t) * 1000})
                    print(f"    {statements[-1]['ms']:9.1f} ms  {sql}", flush=True)

        t0 = time.perf_counter()
        phases = await self.beside_live_load("part", detach_and_drop)
        left = await self.conn.fetchval(
            "SELECT count(*) FROM proto.part_runs WHERE expires_at < now()")
        self.doc["expiry"]["part"] = {
            "statements": statements, "total_ms": sum(x["ms"] for x in statements),
            "with_settle_s": time.perf_counter() - t0, "runs_left_expired": left,
            "live_txn_ms": phases}
        print(json.dumps(self.doc["expiry"]["part"], indent=2), flush=True)
        self.uptime()

        # 4. today's layout: row deletes in batches of 1,000, beside the same load.
        batches: list[float] = []

        async def delete_batches() -> None:
            for _ in range(a.delete_batches):
                t = time.perf_counter()
                n = await self.conn.fetchval(
                    # One Task's range of the retention index, as expire_finished_runs
                    # reads it (without namespace and task the index cannot give the
                    # order, and each batch sorted the whole table: 4 s a batch).
                    "WITH d AS (DELETE FROM proto.flat_runs r WHERE r.id = ANY (ARRAY("
                    " SELECT id FROM proto.flat_runs WHERE namespace = $1 AND task = 'noop'"
                    " AND finished_at IS NOT NULL AND status <> 'dead_lettered'"
                    " AND finished_at < now() - interval '7 days' ORDER BY finished_at"
                    " LIMIT 1000 FOR UPDATE SKIP LOCKED)) RETURNING 1) SELECT count(*) FROM d",
                    NAMESPACE)
                batches.append((time.perf_counter() - t) * 1000)
                if n < 1000:
                    break

        phases = await self.beside_live_load("flat", delete_batches)
        self.doc["expiry"]["flat"] = {
            "batches": len(batches), "batch_ms": {
                "p50": pct(batches, 50), "p99": pct(batches, 99), "max": max(batches),
                "sum": sum(batches)},
            "extrapolated_pass_s": sum(batches) / len(batches) * a.expire / 1000 / 1000,
            "live_txn_ms": phases}
        print(json.dumps(self.doc["expiry"]["flat"], indent=2), flush=True)

    async def beside_live_load(self, name: str,
                               work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        """Runs ``work`` between ``--settle`` seconds of live load before and after it;
        returns the live transactions' latencies before, during and after."""
        stop = asyncio.Event()
        ms: list[float] = []
        live = asyncio.create_task(self.live_load(name, stop, ms))
        await asyncio.sleep(self.args.settle)
        marks = [len(ms)]
        await work()
        marks.append(len(ms))
        await asyncio.sleep(self.args.settle)
        stop.set()
        await live
        return self._phases({"before": ms[:marks[0]], "during": ms[marks[0]:marks[1]],
                             "after": ms[marks[1]:]})

    @staticmethod
    def _phases(phases: dict[str, list[float]]) -> dict[str, Any]:
        return {k: {"n": len(v), "p50": pct(v, 50) if v else None,
                    "p99": pct(v, 99) if v else None, "max": max(v) if v else None}
                for k, v in phases.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.history_partitions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20_000, help="runs per write-path measurement")
    p.add_argument("--batch", type=int, default=10, help="runs per claim/finish transaction")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--partitions", type=int, default=8,
                   help="daily expiry partitions from today on (plus active and 2 past)")
    p.add_argument("--retain", default="7 days", help="retention of the finished runs")
    p.add_argument("--lookups", type=int, default=20_000)
    p.add_argument("--expire", type=int, default=1_000_000,
                   help="expired runs in one partition (0: skip the expiry measurements)")
    p.add_argument("--delete-batches", type=int, default=50,
                   help="batches of today's row deletes to time (then extrapolated)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds of live load before and after each expiry")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    bench = PartitionBench(args)
    asyncio.run(bench.run())
    doc = bench.doc
    out = Path(args.out) / f"history-partitions-{doc['when'][:19].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
