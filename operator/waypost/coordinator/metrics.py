"""Prometheus metrics, read from the store at scrape time (every replica agrees)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from waypost.coordinator import appkeys
from waypost.store import health, runs


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
    by_status = Gauge("waypost_runs", "Runs by status.", ["status"], registry=registry)
    for (namespace, queue), (n_ready, n_running) in (
        await runs.queue_depths(engine.pool)
    ).items():
        ready.labels(namespace, queue).set(n_ready)
        running.labels(namespace, queue).set(n_running)
    for status, count in (await runs.status_counts(engine.pool)).items():
        by_status.labels(status).set(count)
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
          "it stays open, vacuum cannot clean run_queue and claims slow down.",
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
    body = generate_latest(registry) + generate_latest(engine.warm.stats.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
