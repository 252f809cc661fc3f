"""Hot workers against one process per attempt, locally, through the public API.

    .venv/bin/python -m bench.warm_local [--latency-runs 200] [--burst-runs 2000]
                                         [--cold-latency-runs 50] [--cold-burst-runs 100]
                                         [--repeats 3] [--json bench/results/warm_local.json]

For each mode (``warm``: the process backend's hot workers, 4 of them;
``cold``: ``warmPool.enabled: false``, one runner process per attempt) a fresh
database and a fresh waypost process (engine, coordinator, dispatcher and
process backend with ``max_parallel=4``, as ``waypost dev`` runs them) are
started, and this process acts as a user over HTTP:

- **latency**: one run at a time, ``POST /v1/tasks/default/<task>/trigger``;
  the task (``examples.warm:noop``) returns ``time.time()`` taken on entry;
  the figure is that minus the client's ``time.time()`` just before the
  trigger call (same machine, same clock). The run's completion is then
  awaited by reading its row every 2 ms (a one-row select, not the API's
  six-statement run answer, which competed with the dispatch it measures)
  before the next trigger.
- **burst**: ``--burst-runs`` no-op runs triggered by 32 concurrent HTTP
  clients; the figure is runs divided by the time from the first trigger call
  to the moment all of them are seen succeeded.

Postgres is the embedded one, non-durable like ``waypost dev``'s
(``--durable`` for fsync on). The burst also reports the CPU time per run of
the waypost process, its runner processes and Postgres, which the machine's
other load disturbs far less than wall-clock figures. With
``WAYPOST_BENCH_PROFILE=<file>`` the waypost process of the warm mode runs
under cProfile and writes its statistics there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.stats import pct

TASK = "noop"


def serve(dsn: str, port: int, warm: bool, parallel: int) -> None:
    """The waypost side: one process, as ``waypost dev`` runs it."""
    from waypost.backends.process import ProcessBackend
    from waypost.engine import control
    from waypost.model.settings import Settings
    from waypost.model.task import TaskDefinition, TaskSpec
    from waypost.standalone import Standalone

    async def main() -> None:
        settings = Settings.from_env(database_url=dsn, coordinator_port=port,
                                     heartbeat_interval_seconds=5.0, poll_interval_seconds=1.0)
        backend = ProcessBackend(max_parallel=parallel, warm=warm, warm_max_total=parallel)
        stack = await Standalone(settings, backend).start()
        spec = TaskSpec.model_validate({
            "entrypoint": "examples.warm:noop", "resources": {"memory": "256Mi"},
            "warmPool": {"enabled": warm, "maxWarm": min(parallel, 5)},
        })
        await control.register_task(stack.engine,
                                    TaskDefinition(namespace="default", name=TASK, spec=spec))
        print("ready", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await stack.stop()

    profile = os.environ.get("WAYPOST_BENCH_PROFILE")
    if profile and warm:
        # Where the waypost process spends its CPU in warm mode (pstats file).
        import cProfile

        # CPU time, not wall time: the machine's other load is not this process's.
        with cProfile.Profile(time.process_time) as profiler:
            asyncio.run(main())
        profiler.dump_stats(profile)
        return
    asyncio.run(main())


async def trigger(http: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    started = time.time()
    async with http.post(f"{url}/v1/tasks/default/{TASK}/trigger", json={"payload": {}}) as r:
        body = await r.json()
        if r.status not in (200, 201):
            raise RuntimeError(f"trigger failed: {r.status} {body}")
    return started, str(body["id"])


async def wait_run(db: asyncpg.Connection, run_id: str, timeout: float = 120.0) -> Any:
    """The run's result once it succeeded, read from the database every 2 ms.

    Not through ``GET /v1/runs/{id}``: that answer takes six statements and a
    request of the waypost process, and polling it every 2 ms while the next
    run is being dispatched made the benchmark compete with what it measures."""
    deadline = time.monotonic() + timeout
    while True:
        row = await db.fetchrow("SELECT status, result, error FROM waypost.runs WHERE id = $1",
                                uuid.UUID(run_id))
        if row is not None and row["status"] in ("succeeded", "failed", "dead_lettered",
                                                  "cancelled"):
            if row["status"] != "succeeded":
                raise RuntimeError(f"run {run_id} ended {row['status']}: {row['error']}")
            return json.loads(row["result"])
        if time.monotonic() > deadline:
            raise TimeoutError(run_id)
        await asyncio.sleep(0.002)


async def latency(url: str, dsn: str, runs: int) -> dict[str, Any]:
    samples: list[float] = []
    db = await asyncpg.connect(dsn)
    try:
        async with aiohttp.ClientSession() as http:
            # Two warm-up runs: the first starts the first runner process in either mode.
            for _ in range(2):
                _, rid = await trigger(http, url)
                await wait_run(db, rid)
            for _ in range(runs):
                started, rid = await trigger(http, url)
                result = await wait_run(db, rid)
                samples.append((float(result["startedAt"]) - started) * 1000)
    finally:
        await db.close()
    return {"runs": runs, "p50_ms": round(pct(samples, 50), 2),
            "p90_ms": round(pct(samples, 90), 2), "p99_ms": round(pct(samples, 99), 2),
            "mean_ms": round(statistics.fmean(samples), 2)}


def cpu_seconds(pid: int, part: str = "all") -> float:
    """CPU time (user + system) of a process (``own``), of its children reaped and
    alive (``children``), or of both (``all``)."""
    import psutil

    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        own, total = times.user + times.system, times.children_user + times.children_system
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
    except psutil.Error:
        return 0.0
    return {"own": own, "children": total, "all": own + total}[part]


async def _commits(db: asyncpg.Connection) -> int:
    await db.execute("SELECT pg_stat_clear_snapshot()")
    value: int = await db.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return value


async def burst(url: str, dsn: str, runs: int, clients: int = 32,
                pids: dict[str, tuple[int, str]] | None = None) -> dict[str, Any]:
    ids: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(runs):
        queue.put_nowait(i)
    db = await asyncpg.connect(dsn)
    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=clients)) as http:

            async def client() -> None:
                while True:
                    try:
                        queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    ids.append((await trigger(http, url))[1])

            cpu_before = {name: cpu_seconds(*where) for name, where in (pids or {}).items()}
            client_before = time.process_time()
            commits_before = await _commits(db)
            own_queries = 0
            started = time.time()
            await asyncio.gather(*(client() for _ in range(clients)))
            triggered = time.time()
            uuids = [uuid.UUID(i) for i in ids]
            while True:
                done = await db.fetchval(
                    "SELECT count(*) FROM waypost.runs WHERE id = ANY($1::uuid[]) "
                    "AND status = 'succeeded'", uuids)
                own_queries += 1
                if done == runs:
                    break
                failed = await db.fetchval(
                    "SELECT count(*) FROM waypost.runs WHERE id = ANY($1::uuid[]) "
                    "AND status IN ('failed', 'dead_lettered')", uuids)
                own_queries += 1
                if failed:
                    raise RuntimeError(f"{failed} runs of the burst failed")
                await asyncio.sleep(0.02)
            finished = time.time()
            client_cpu = time.process_time() - client_before
            cpu = {name: round((cpu_seconds(*where) - cpu_before[name]) * 1000 / runs, 2)
                   for name, where in (pids or {}).items()}
            # Postgres publishes a session's counts within a second of its commits.
            await asyncio.sleep(1.5)
            commits = await _commits(db) - commits_before - own_queries - 2
    finally:
        await db.close()
    result: dict[str, Any] = {"runs": runs, "seconds": round(finished - started, 3),
                              "runs_per_second": round(runs / (finished - started), 1),
                              "trigger_seconds": round(triggered - started, 3),
                              # Transactions of the waypost process per run (the
                              # benchmark's own polling left out): each is a round
                              # trip and a commit.
                              "commits_per_run": round(commits / runs, 2)}
    if cpu:
        # CPU per run, whatever the machine's load: the waypost process (engine,
        # coordinator, dispatcher), its runner processes, and Postgres. On two idle
        # cores the burst could go no faster than 2 s / (their sum) per second.
        result["cpu_ms_per_run"] = cpu
        result["cpu_bound_runs_per_second_on_2_cores"] = round(
            2000.0 / max(sum(cpu.values()), 0.001), 1)
        # The user's side: this process's aiohttp client triggering the runs (and
        # its completion polling, one query per 20 ms). Not in the bound above,
        # which is waypost's own cost, as in earlier results.
        result["client_cpu_ms_per_run"] = round(client_cpu * 1000 / runs, 2)
    return result


async def one_mode(pg: Any, mode: str, latency_runs: int, burst_runs: int,
                   parallel: int) -> dict[str, Any]:
    from waypost.store.embedded import free_port

    database = f"bench_warm_{mode}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = pg.dsn_for(database)
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before any measurement)
        [sys.executable, "-m", "bench.warm_local", "--serve", dsn, str(port),
         "1" if mode == "warm" else "0", str(parallel)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert server.stdout is not None
        line = await asyncio.to_thread(server.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"the waypost process did not start ({line!r})")
        url = f"http://127.0.0.1:{port}"
        pids = {"waypost": (server.pid, "own"), "runners": (server.pid, "children"),
                "postgres": (int((pg.data_dir / "postmaster.pid").read_text().split()[0]),
                             "all")}
        result = {"mode": mode, "latency": await latency(url, dsn, latency_runs),
                  "burst": await burst(url, dsn, burst_runs, pids=pids)}
    finally:
        server.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(30)
        if server.poll() is None:
            server.kill()
    print(json.dumps(result), flush=True)
    return result


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "repeats": results,
        "latency_p50_ms": _spread([r["latency"]["p50_ms"] for r in results]),
        "latency_p99_ms": _spread([r["latency"]["p99_ms"] for r in results]),
        "runs_per_second": _spread([r["burst"]["runs_per_second"] for r in results]),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from waypost.store.embedded import EmbeddedPostgres

    warm: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="waypost-bench-warm-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=args.durable)
        pg.start()
        try:
            # Side by side: the modes alternate, so a change in the machine's load
            # falls on both.
            for _ in range(args.repeats):
                loads.append(os.getloadavg()[0])
                warm.append(await one_mode(pg, "warm", args.latency_runs, args.burst_runs,
                                           args.parallel))
                cold.append(await one_mode(pg, "cold", args.cold_latency_runs,
                                           args.cold_burst_runs, args.parallel))
        finally:
            pg.stop()
    w, c = _summary(warm), _summary(cold)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_1m": _spread(loads)},
        "durable_postgres": args.durable, "workers": args.parallel,
        "warm": w, "cold": c,
        "ratios": {
            "latency_p50_cold_over_warm": round(
                c["latency_p50_ms"]["median"] / w["latency_p50_ms"]["median"], 1),
            "throughput_warm_over_cold": round(
                w["runs_per_second"]["median"] / c["runs_per_second"]["median"], 1),
        },
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":
        serve(argv[1], int(argv[2]), argv[3] == "1", int(argv[4]))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.warm_local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--burst-runs", type=int, default=2000)
    parser.add_argument("--cold-latency-runs", type=int, default=50)
    parser.add_argument("--cold-burst-runs", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3,
                        help="measurements of each mode, alternating (spread reported)")
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
