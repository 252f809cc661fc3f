"""Prometheus metrics: gauges read from the store at scrape time (every replica
agrees), and the leader's counters and histograms (engine.metrics)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from waypost.coordinator import appkeys
from waypost.store import health, insights, runs, telemetry


async def handler(request: web.Request) -> web.Response:
    engine = request.app[appkeys.ENGINE]
    registry = CollectorRegistry()
    # A queue is named within its namespace: two namespaces may each have a queue
    # "hello" with limits of their own, so both labels identify it. Not `namespace`:
    # Prometheus sets that one to the scraped operator Pod's namespace.
    ready = Gauge("waypost_queue_ready_runs", "Runs waiting in a queue (incl. backoff).",
                  ["queue_namespace", "queue"], registry=registry)
    running = Gauge("waypost_queue_running_runs", "Runs with a running attempt.",
                    ["queue_namespace", "queue"], registry=registry)
    by_status = Gauge(
        "waypost_runs", "Runs by status: active ones (queued, running, retrying) counted "
        "exactly, finished ones estimated from the planner's statistics once the runs table "
        "is large (see waypost_runs_estimated).", ["status"], registry=registry)
    for (namespace, queue), (n_ready, n_running) in (
        await runs.queue_depths(engine.pool)
    ).items():
        ready.labels(namespace, queue).set(n_ready)
        running.labels(namespace, queue).set(n_running)
    counts = await telemetry.status_counts(engine.pool)
    for status, count in counts.counts.items():
        by_status.labels(status).set(count)
    Gauge("waypost_runs_estimated",
          "1 when waypost_runs' finished statuses are estimates (a large runs table), "
          "0 when they were counted.", registry=registry).set(int(counts.estimated))
    store = await health.read(engine.pool)
    Gauge("waypost_hot_table_dead_tuples",
          "Dead tuples in run_queue, the table of active runs (pg_stat_user_tables).",
          registry=registry).set(store.hot_dead_tuples)
    Gauge("waypost_hot_table_live_tuples", "Live tuples in run_queue (active runs).",
          registry=registry).set(store.hot_live_tuples)
    Gauge("waypost_hot_table_bytes", "Size of run_queue with its indexes and TOAST.",
          registry=registry).set(store.hot_table_bytes)
    Gauge("waypost_db_oldest_snapshot_seconds",
          "Age of the oldest transaction holding a snapshot in waypost's database: while "
          "it stays open, vacuum cannot clean any table (run_queue is rotated instead).",
          registry=registry).set(store.oldest_snapshot_seconds)
    pool = Gauge("waypost_warm_pool_runners",
                 "Warm runners in the pool (processes or Pods), by task and state.",
                 ["namespace", "task", "state"], registry=registry)
    sizes: dict[tuple[str, str, str], int] = {}
    for member in await engine.warm.members():
        key = (member.namespace, member.task, member.state)
        sizes[key] = sizes.get(key, 0) + 1
    for key, count in sizes.items():
        pool.labels(*key).set(count)
    # Hits, misses, evictions and dispatch latencies are counted where they
    # happen: in the leader's dispatcher (another replica reports zeros).
    patterns = Gauge(
        "waypost_task_pattern", "1 while a failure pattern holds for a task (GET /v1/insights): "
        "pattern is timeout_loop, retry_storm, checkpoint_gap or memory_growth.",
        ["task_namespace", "task", "pattern"], registry=registry)
    for insight in await insights.active(engine.pool):
        patterns.labels(insight.namespace, insight.task, insight.pattern).set(1)
    body = (generate_latest(registry) + generate_latest(engine.warm.stats.registry)
            + generate_latest(engine.metrics.registry))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
