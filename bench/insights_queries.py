"""How long the failure-pattern queries take on a large history (issue 11).

    .venv/bin/python -m bench.insights_queries [--runs 1000000] [--recent 5000] [--repeats 5]

Fills a fresh durable Postgres with ``--runs`` finished runs of 20 tasks, one attempt
each, ended over the last 30 days, of which ``--recent`` ended within the detection
window (the last hour); a third of those failed, and each recent attempt has two
checkpoints and a memory report. Then times each detection query (engine.insights:
timeout loops, retry storms, checkpoint gaps, attempt memory, step memory) and a
whole detection pass, ``--repeats`` times, and prints the medians. Not part of
make test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from waypost.engine import insights
from waypost.engine.core import Engine
from waypost.model.settings import Settings
from waypost.store import embedded, migrate
from waypost.store import insights as store

FILL = """
INSERT INTO waypost.tasks (namespace, name, spec, queue, memory_bytes)
SELECT 'bench', 't' || i, '{{"entrypoint": "m:f"}}', 't' || i, 268435456
FROM generate_series(0, 19) i;
INSERT INTO waypost.queues (namespace, name)
SELECT 'bench', 't' || i FROM generate_series(0, 19) i;
INSERT INTO waypost.runs (id, namespace, task, queue, status, spec, memory_bytes, trace_id,
                          attempt, created_at, started_at, finished_at, updated_at)
SELECT gen_random_uuid(), 'bench', 't' || (n % 20), 't' || (n % 20),
       CASE WHEN n % 3 = 0 AND n < {recent} THEN 'dead_lettered' ELSE 'succeeded' END,
       '{{}}', 268435456, md5(n::text), 1, f - interval '2 s', f - interval '1 s', f, f
FROM (SELECT n, CASE WHEN n < {recent} THEN now() - ((n * 1.7) % 3300) * interval '1 s'
                     ELSE now() - interval '1 hour' - (n * interval '2.6 s') END AS f
      FROM generate_series(0, {runs} - 1) n) s;
INSERT INTO waypost.attempts (run_id, attempt, claim_token, status, memory_bytes, error,
                              started_at, finished_at, peak_memory_bytes, step_peaks,
                              task_seconds)
SELECT r.id, 1, nextval('waypost.claim_tokens'), CASE WHEN r.status = 'succeeded'
       THEN 'succeeded' ELSE 'failed' END, r.memory_bytes,
       CASE WHEN r.status = 'succeeded' THEN NULL ELSE '{{"type": "error"}}'::jsonb END,
       r.started_at, r.finished_at, 50000000 + (hashtext(r.id::text) & 65535) * 100,
       '{{"fetch": 40000000, "charge": 45000000}}', 0.9
FROM waypost.runs r;
INSERT INTO waypost.checkpoints (run_id, key, seq, attempt, data, size_bytes, created_at)
SELECT r.id, k, nextval('waypost.checkpoints_seq_seq'), 1, '{{}}', 2,
       r.finished_at - interval '0.5 s'
FROM waypost.runs r CROSS JOIN (VALUES ('fetch'), ('charge')) AS c(k)
WHERE r.finished_at > now() - interval '1 hour';
ANALYZE;
"""


async def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.insights_queries", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--recent", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="waypost-bench-insights-"))
    pg = embedded.EmbeddedPostgres(folder / "data").start()
    try:
        await migrate.apply_dsn(pg.dsn)
        conn = await asyncpg.connect(pg.dsn)
        t0 = time.monotonic()
        await conn.execute(FILL.format(runs=a.runs, recent=a.recent))
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM waypost.runs) AS runs, "
            "(SELECT count(*) FROM waypost.attempts WHERE finished_at > now() - interval "
            "'1 hour') AS recent, pg_size_pretty(pg_total_relation_size('waypost.attempts')) "
            "AS attempts_size")
        print(f"filled {counts['runs']:,} finished runs ({counts['recent']:,} attempts in the "
              f"window, attempts table {counts['attempts_size']}) in "
              f"{time.monotonic() - t0:.0f} s")
        await conn.close()
        engine = await Engine.open(Settings(database_url=pg.dsn), migrate_schema=False)
        try:
            t = engine.settings.insights
            since = datetime.now(UTC) - timedelta(seconds=t.window_seconds)
            queries = {
                "timeout_loops": lambda: store.timeout_loops(
                    engine.pool, since, t.timeout_loop_attempts, t.timeout_loop_runs),
                "retry_storms": lambda: store.retry_storms(
                    engine.pool, since, t.retry_storm_failure_ratio, t.retry_storm_runs),
                "checkpoint_gaps": lambda: store.checkpoint_gaps(
                    engine.pool, since, t.checkpoint_gap_seconds),
                "attempt_memory": lambda: store.attempt_memory(engine.pool, since),
                "step_memory": lambda: store.step_memory(engine.pool, since),
                "whole pass (detect + store)": lambda: insights.run_once(engine),
            }
            for name, run in queries.items():
                times = []
                for _ in range(a.repeats):
                    start = time.perf_counter()
                    await run()
                    times.append((time.perf_counter() - start) * 1000)
                print(f"{name:28s} median {statistics.median(times):8.1f} ms  "
                      f"(min {min(times):.1f}, max {max(times):.1f}, {a.repeats} runs)")
            found, _ = await insights.run_once(engine)
            print("patterns found:", sorted((f.task, str(f.pattern)) for f in found)[:6], "...")
        finally:
            await engine.close()
    finally:
        pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())
