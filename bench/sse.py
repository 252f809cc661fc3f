"""`python -m bench.sse`: what live event subscribers cost a drain, and how soon they
hear of a change after it commits.

    .venv/bin/python -m bench.sse [--jobs 20000] [--subscribers 200] [--repeats 3]

Each repeat drains ``--jobs`` pre-loaded no-op runs twice, each time in a fresh
database on one durable Postgres, with the workers of ``make bench``'s drain
(``bench.systems.Waypost``: claim a batch, acknowledge it in the next claim's
transaction). A coordinator serves the API from a process of its own in both
drains. In one drain nobody listens; in the other, a third process holds
``--subscribers`` SSE connections, each following one of the drained runs
(``GET /v1/runs/{id}/events``; the runs are spread evenly over the drain's order,
so that subscribed runs complete from start to end). The order of the two drains
alternates between repeats.

Figures: drain runs/s with and without subscribers and the loss; and for every
subscribed run, the delivery delay of its ``succeeded`` status event: the wall time
it reached the subscriber minus the wall time the worker's acknowledging call
(the commit) returned. All three processes share the machine's two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
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
from bench.systems import Waypost

HERE = Path(__file__).resolve().parent


# --- the coordinator and subscriber processes --------------------------------

async def serve_coordinator(dsn: str, port: int) -> None:
    """A coordinator without a dispatcher (the bench's workers claim), until killed."""
    from waypost.model.settings import Settings
    from waypost.standalone import Standalone

    settings = Settings(database_url=dsn, coordinator_port=port)
    stack = await Standalone(settings, dispatch=False).start()
    try:
        await asyncio.Event().wait()
    finally:
        await stack.stop()


async def subscribe(url: str, run_ids: list[str], out: Path) -> None:
    """Follow each run's events until its ``succeeded`` status; write the wall time
    each arrived. Prints ``ready`` once every stream has delivered its first event
    (the hub covers it from then on)."""
    from waypost.sdk import sse

    arrived: dict[str, float] = {}
    first = asyncio.Semaphore(0)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def follow(run_id: str) -> None:
            started = False
            async with http.get(f"{url}/v1/runs/{run_id}/events?kinds=status") as resp:
                async for msg in sse.messages(resp):
                    if msg is None:
                        continue
                    if not started:
                        started = True
                        first.release()
                    if msg.data["data"].get("status") == "succeeded":
                        arrived[run_id] = time.time()
                        return

        tasks = [asyncio.create_task(follow(r)) for r in run_ids]
        for _ in run_ids:
            await first.acquire()
        print("ready", flush=True)
        await asyncio.gather(*tasks)
    out.write_text(json.dumps(arrived))  # noqa: ASYNC240 - after the measurement


# --- the driver --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SseBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.drains: dict[str, list[float]] = {"none": [], "subscribers": []}
        self.delays_ms: list[float] = []
        self.missing = 0

    async def run(self) -> None:
        from waypost.store.embedded import EmbeddedPostgres

        base = Path(tempfile.mkdtemp(prefix="waypost-bench-sse-", dir="/var/tmp"))
        os.chmod(base, 0o755)
        self.pg = EmbeddedPostgres(base / "data", durable=True,
                                   settings={"max_connections": "300"})
        print(f"Starting a durable Postgres in {self.pg.data_dir} …", flush=True)
        self.pg.start()
        try:
            admin = await asyncpg.connect(self.pg.dsn)
            try:
                await admin.execute("CREATE DATABASE tpl_sse")
            finally:
                await admin.close()
            await Waypost().install(self.pg.dsn_for("tpl_sse"))
            for rep in range(self.args.repeats):
                modes = ["none", "subscribers"] if rep % 2 == 0 else ["subscribers", "none"]
                for mode in modes:
                    await self.drain(rep, mode)
        finally:
            self.pg.destroy()
            shutil.rmtree(base, ignore_errors=True)

    async def drain(self, rep: int, mode: str) -> None:
        a = self.args
        db = f"b_sse_{os.urandom(4).hex()}"
        admin = await asyncpg.connect(self.pg.dsn)
        try:
            await admin.execute(f"CREATE DATABASE {db} TEMPLATE tpl_sse")
        finally:
            await admin.close()
        dsn = self.pg.dsn_for(db)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        coordinator = subprocess.Popen(  # noqa: ASYNC220 - before the measurement
            [sys.executable, "-m", "bench.sse", "--coordinator", dsn, str(port)],
            cwd=HERE.parent)
        subscriber: subprocess.Popen[str] | None = None
        out = Path(tempfile.mktemp(prefix="sse-arrivals-", suffix=".json"))
        system = Waypost()
        committed: dict[uuid.UUID, float] = {}
        try:
            await wait_ready(url)
            await system.open(dsn, a.workers)
            await system.enqueue_many(a.jobs)
            if mode == "subscribers":
                ids = await spread_run_ids(dsn, a.jobs, a.subscribers)
                ids_file = out.with_suffix(".ids")
                ids_file.write_text("\n".join(ids))
                subscriber = subprocess.Popen(  # noqa: ASYNC220 - before the measurement
                    [sys.executable, "-m", "bench.sse", "--subscribe", url, str(ids_file),
                     str(out)], cwd=HERE.parent, stdout=subprocess.PIPE, text=True)
                assert subscriber.stdout is not None
                line = await asyncio.to_thread(subscriber.stdout.readline)
                assert line.strip() == "ready", line
            with timed_acks(committed):
                started = time.perf_counter()
                await system.start_workers(a.workers, a.batch, lambda _t0: None,
                                           drain_count=a.jobs)
                await system.wait_workers()
                elapsed = time.perf_counter() - started
            rate = a.jobs / elapsed
            self.drains[mode].append(rate)
            line = f"  rep {rep} {mode}: drain {a.jobs} runs in {elapsed:.2f} s, {rate:,.0f}/s"
            if subscriber is not None:
                await asyncio.to_thread(subscriber.wait, 120)
                arrived = json.loads(out.read_text())  # noqa: ASYNC240 - after it
                for run_id, t in arrived.items():
                    self.delays_ms.append((t - committed[uuid.UUID(run_id)]) * 1000)
                self.missing += a.subscribers - len(arrived)
                delays = sorted(self.delays_ms[-len(arrived):])
                line += (f"; {len(arrived)} deliveries, p50 {pct(delays, 50):.1f} ms, "
                         f"p99 {pct(delays, 99):.1f} ms")
            print(line, flush=True)
        finally:
            with contextlib.suppress(Exception):
                await system.close()
            for proc in (subscriber, coordinator):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
            for path in (out, out.with_suffix(".ids")):
                path.unlink(missing_ok=True)
            admin = await asyncpg.connect(self.pg.dsn)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            finally:
                await admin.close()

    def report(self) -> dict[str, Any]:
        import statistics

        none = statistics.median(self.drains["none"])
        subs = statistics.median(self.drains["subscribers"])
        delays = sorted(self.delays_ms)
        doc = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "args": vars(self.args),
            "drain_runs_per_s": self.drains,
            "drain_median_none": none,
            "drain_median_subscribers": subs,
            "throughput_loss_percent": (none - subs) / none * 100,
            "deliveries": len(delays),
            "missing_deliveries": self.missing,
            "delivery_ms": {"p50": pct(delays, 50), "p90": pct(delays, 90),
                            "p99": pct(delays, 99), "max": delays[-1] if delays else None},
        }
        print(json.dumps({k: v for k, v in doc.items() if k != "args"}, indent=2))
        return doc


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the coordinator at {url} did not become ready")


async def spread_run_ids(dsn: str, jobs: int, n: int) -> list[str]:
    """``n`` run ids evenly spaced over the drain's order (priority, then seq)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id FROM waypost.runs ORDER BY seq")
    finally:
        await conn.close()
    step = max(1, jobs // n)
    return [str(rows[i]["id"]) for i in range(0, len(rows), step)][:n]


@contextlib.contextmanager
def timed_acks(committed: dict[uuid.UUID, float]) -> Any:
    """Record when each run's acknowledging call returned (its commit is done)."""
    from waypost.store import runs

    original = runs.ack_and_claim

    async def timed(pool: Any, **kwargs: Any) -> Any:
        acked, claimed = await original(pool, **kwargs)
        now = time.time()
        for run_id in acked:
            committed[run_id] = now
        return acked, claimed

    runs.ack_and_claim = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        runs.ack_and_claim = original  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--coordinator"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_coordinator(argv[1], int(argv[2])))
        return
    if argv[:1] == ["--subscribe"]:
        ids = Path(argv[2]).read_text().split()
        asyncio.run(subscribe(argv[1], ids, Path(argv[3])))
        return
    p = argparse.ArgumentParser(prog="python -m bench.sse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    bench = SseBench(args)
    asyncio.run(bench.run())
    doc = bench.report()
    out = Path(args.out) / f"sse-{doc['when'][:19].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
