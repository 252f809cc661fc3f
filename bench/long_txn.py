"""Claims while a REPEATABLE READ transaction holds its snapshot: the routes of issue 15.

    python -m bench.long_txn [--runs 40000] [--step 2000] [--repeats 3]

One durable Postgres (the bench's settings), waypost's schema, one queue. A second
connection opens a REPEATABLE READ transaction and takes its snapshot; then runs
are pushed through the hot table in steps of --step (bulk enqueue, claim in
batches of 50, complete), and after each step the script times:

* ``claim``: one real claim of 10 runs (``claim_runs``) from a queue holding 100
  ready runs, then their completion (so the step leaves the table as it was);
* ``head``: the ready probe every claim starts with (the head of
  ``run_queue_ready``), as ``EXPLAIN ANALYZE`` buffers and time;
* ``cursor``: the same probe starting after the highest ``seq`` claimed so far,
  the "claims that never walk dead index entries" route, as a prototype: the
  buffers it reads.

under three cleanings: ``none`` (what a leader's vacuum achieves under a long
transaction: nothing, since no dead row version may be removed), ``vacuum`` (the
leader's vacuum after each step, to show that), and ``rotate`` (migration 0019's
rotation after each step). The advisory-lock route is not timed: a claim taken
with an advisory lock still walks the same index entries to find a candidate, so
it changes nothing about what grows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

HERE = Path(__file__).parent


async def _probe(conn: asyncpg.Connection, sql: str, *args: Any) -> tuple[int, float]:
    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]  # the pool decodes json
    node = top["Plan"]
    return int(node["Shared Hit Blocks"]) + int(node["Shared Read Blocks"]), float(
        top["Execution Time"])


HEAD = ("SELECT run_id FROM waypost.run_queue r WHERE r.queue_id = $1 AND r.state = 'ready' "
        "AND r.available_at <= now() ORDER BY r.priority DESC, r.seq LIMIT 10")
CURSOR = ("SELECT run_id FROM waypost.run_queue r WHERE r.queue_id = $1 AND r.state = 'ready' "
          "AND r.priority = 0 AND r.seq > $2 AND r.available_at <= now() "
          "ORDER BY r.priority DESC, r.seq LIMIT 10")


async def one(dsn: str, cleaning: str, total: int, step: int) -> list[dict[str, Any]]:
    from bench.systems import Waypost
    from waypost.store import maintenance, runs
    from waypost.store.pool import RawJson

    sys_ = Waypost()
    await sys_.install(dsn)
    await sys_.open(dsn, 2)
    pool = sys_.engine.pool
    queue_id = await pool.fetchval(
        "SELECT q.id FROM waypost.queues q JOIN waypost.tasks t ON t.namespace = q.namespace "
        "AND t.queue = q.name WHERE t.name = 'noop'")

    async def enqueue(n: int) -> None:
        if n:
            await sys_.enqueue_many(n)

    async def push(n: int) -> int:
        """n runs through the hot table (claimed oldest first); the highest seq claimed."""
        await enqueue(n)
        done = 0
        while done < n:
            got = await runs.claim(pool, limit=50, lease_seconds=600, worker="bench")
            await runs.complete_many(pool, [(c.run_id, c.claim_token, RawJson("1"))
                                            for c in got])
            done += len(got)
        top: int = await pool.fetchval("SELECT max(seq) FROM waypost.runs "
                                       "WHERE status = 'succeeded'")
        return top

    holder = await asyncpg.connect(dsn)
    await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    await holder.fetchval("SELECT count(*) FROM waypost.runs")
    out: list[dict[str, Any]] = []
    try:
        await enqueue(100)  # the ready backlog each claim sees
        pushed = 0
        cursor = 0
        async with pool.acquire() as probe:
            while pushed <= total:
                claim_ms = []
                for _ in range(20):
                    t = time.perf_counter()
                    got = await runs.claim(pool, limit=10, lease_seconds=600, worker="bench")
                    claim_ms.append((time.perf_counter() - t) * 1000)
                    await runs.complete_many(pool, [(c.run_id, c.claim_token, RawJson("1"))
                                                    for c in got])
                    await enqueue(len(got))
                head_buf, head_ms = await _probe(probe, HEAD, queue_id)
                cur_buf, cur_ms = await _probe(probe, CURSOR, queue_id, cursor)
                dead = (await maintenance.hot_table_tuples(pool)).dead
                size = await pool.fetchval(
                    "SELECT sum(pg_total_relation_size(relid)) FROM "
                    "pg_partition_tree('waypost.run_queue')")
                row = {"cleaning": cleaning, "runs": pushed,
                       "claim_p50_ms": statistics.median(claim_ms), "claim_max_ms": max(claim_ms),
                       "head_buffers": head_buf, "head_ms": head_ms,
                       "cursor_buffers": cur_buf, "cursor_ms": cur_ms,
                       "dead_tuples": dead, "hot_table_kb": int(size) // 1024}
                out.append(row)
                print("  " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in row.items()), flush=True)
                if pushed == total:
                    break
                cursor = await push(step)
                pushed += step
                if cleaning == "vacuum":
                    await maintenance.vacuum_hot_table(pool)
                elif cleaning == "rotate":
                    assert await maintenance.rotate_hot_table(pool, lock_timeout_ms=1000) \
                        is not None
                await pool.execute("SELECT pg_stat_force_next_flush()")
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
        await sys_.close()
    return out


async def main_async(args: argparse.Namespace) -> None:
    from waypost.store.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="waypost-bench-long-txn-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "data", durable=True, settings={"max_connections": "100"})
    pg.start()
    results: list[dict[str, Any]] = []
    try:
        admin = await asyncpg.connect(pg.dsn)
        try:
            for rep in range(args.repeats):
                for cleaning in args.cleanings.split(","):
                    db = f"lt_{cleaning}_{rep}"
                    await admin.execute(f"CREATE DATABASE {db}")
                    print(f"{cleaning}, repeat {rep + 1}:", flush=True)
                    for row in await one(pg.dsn_for(db), cleaning, args.runs, args.step):
                        results.append({**row, "repeat": rep})
                    await admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        finally:
            await admin.close()
    finally:
        pg.destroy()
        shutil.rmtree(base, ignore_errors=True)
    out = HERE / "results" / f"long-txn-{time.strftime('%Y-%m-%dT%H%M%S', time.gmtime())}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": results}, indent=1) + "\n")
    print(f"Written {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=40_000)
    p.add_argument("--step", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cleanings", default="none,vacuum,rotate")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
