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
(the commit) returned. All three processes share the machine's two cores, so the
drain rate moves with whatever else the machine runs; the CPU time each part used
during the drain (the workers' process, Postgres' processes, the coordinator, the
subscriber process; from /proc, in ms per 1,000 runs) is the steadier figure of
what subscribers cost.

``--modes`` adds ``no_event_log``: the drain without subscribers with the event
log's triggers disabled, i.e. what writing the event rows costs the drain; and
``notify_all``: the drain without subscribers where every transaction that writes
events sends its NOTIFY (one connection LISTENs), i.e. what a pump that always woke
on NOTIFY instead of reading every interval while busy would cost the writers.

In the subscribers drain the coordinator also records where each delivery's time
went (``Trace``): commit -> start of the pump's read that returned the event, the
read, the fan-out to the subscriber's queue, the queue to its stream, the stream to
the client; and how many reads began after the commit and still missed the event
(the commit horizon held it back).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
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

from bench.stats import pct, summary
from bench.systems import Waypost

HERE = Path(__file__).resolve().parent
MODES = ("none", "subscribers", "no_event_log", "notify_all")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process of ``pids``."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            # The command name (field 2) may hold spaces; fields after its ')' are fixed.
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster of ``data_dir`` and its children (backends, WAL writer, …)."""
    master = int((data_dir / "postmaster.pid").read_text().split()[0])
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == master:
                kids.append(int(stat.parent.name))
    return [master, *kids]


class CpuMeter:
    """CPU seconds that named groups of processes use between start() and stop()."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def start(self) -> None:
        self.before = {g: cpu_seconds(p) for g, p in self.groups.items()}

    def stop(self) -> dict[str, float]:
        used = {}
        for g, pids in self.groups.items():
            after = cpu_seconds(pids)
            # Processes that ended during the drain are left out (none should).
            used[g] = sum(after[p] - self.before[g][p] for p in after if p in self.before[g])
        return used


# --- the coordinator and subscriber processes --------------------------------

class Trace:
    """Where a delivery's time goes inside the coordinator (``$BENCH_SSE_TRACE``): for
    each followed run's ``succeeded`` event, when the pump's read that returned it
    started and ended, when it was handed to the subscriber's queue (the fan-out) and
    when its stream took it to write; and the start time of every pump read, so that
    reads that began after the commit and still missed the event (held back by the
    commit horizon) can be counted."""

    def __init__(self) -> None:
        self.reads: list[float] = []
        self.events: dict[str, dict[str, float]] = {}

    def install(self) -> None:
        from waypost.engine import events as hub_events
        from waypost.store import events as store_events

        original_read = store_events.read_everyone
        original_stream = hub_events.EventHub.stream
        original_deliver = hub_events.Subscription.deliver
        marks = self.events

        def succeeded(e: Any) -> str | None:
            if e.kind == "status" and e.data.get("status") == "succeeded":
                return str(e.run_id)
            return None

        async def read(*args: Any, **kwargs: Any) -> Any:
            t0 = time.time()
            self.reads.append(t0)
            result = await original_read(*args, **kwargs)
            t1 = time.time()
            for e in result.events:
                run = succeeded(e)
                if run is not None:
                    marks.setdefault(run, {}).update(read_start=t0, read_end=t1)
            return result

        def deliver(sub: Any, batch: list[Any]) -> None:
            now = time.time()
            for e in batch:
                run = succeeded(e)
                if run is not None:
                    marks.setdefault(run, {}).setdefault("fanned_out", now)
            original_deliver(sub, batch)

        async def stream(hub: Any, *args: Any, **kwargs: Any) -> Any:
            async for batch in original_stream(hub, *args, **kwargs):
                now = time.time()
                for e in batch:
                    run = succeeded(e)
                    if run is not None:
                        marks.setdefault(run, {}).setdefault("streamed", now)
                yield batch

        store_events.read_everyone = read  # type: ignore[assignment]
        hub_events.Subscription.deliver = deliver  # type: ignore[method-assign]
        hub_events.EventHub.stream = stream  # type: ignore[assignment,method-assign]

    def dump(self, path: str) -> None:
        Path(path).write_text(json.dumps({"reads": self.reads, "events": self.events}))


async def serve_coordinator(dsn: str, port: int) -> None:
    """A coordinator without a dispatcher (the bench's workers claim), until killed."""
    from waypost.model.settings import Settings
    from waypost.standalone import Standalone

    # WAYPOST_EVENTS_POLL_INTERVAL (``--poll-interval``) reaches the hub from here.
    settings = Settings.from_env(database_url=dsn, coordinator_port=port)
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
        self.drains: dict[str, list[float]] = {m: [] for m in args.modes}
        # mode -> part -> CPU ms per 1,000 runs, one value per repeat
        self.cpu: dict[str, dict[str, list[float]]] = {m: {} for m in args.modes}
        self.delays_ms: list[float] = []
        self.missing = 0
        # piece of the delivery delay -> values over all deliveries (ms; see Trace)
        self.pieces: dict[str, list[float]] = {}
        self.per_repeat_delivery: list[dict[str, float]] = []
        # the pump's reads during each subscribers drain, and the coordinator's CPU
        # per read (us), per repeat
        self.reads_in_drain: list[int] = []
        self.coordinator_us_per_read: list[float] = []

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
                # Alternating the order spreads the machine's drift over all modes.
                modes = list(self.args.modes) if rep % 2 == 0 else list(self.args.modes)[::-1]
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
        out = Path(tempfile.mktemp(prefix="sse-arrivals-", suffix=".json"))
        trace_file = out.with_suffix(".trace")
        env = dict(os.environ)
        if mode == "subscribers":
            env["BENCH_SSE_TRACE"] = str(trace_file)
        coordinator = subprocess.Popen(  # noqa: ASYNC220 - before the measurement
            [sys.executable, "-m", "bench.sse", "--coordinator", dsn, str(port)],
            cwd=HERE.parent, env=env)
        subscriber: subprocess.Popen[str] | None = None
        system = Waypost()
        listener: asyncpg.Connection | None = None
        committed: dict[uuid.UUID, float] = {}
        try:
            await wait_ready(url)
            await system.open(dsn, a.workers)
            await system.enqueue_many(a.jobs)
            if mode == "no_event_log":
                await set_event_log(dsn, enabled=False)
            listener = await notify_all(dsn) if mode == "notify_all" else None
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
            groups = {"workers": [os.getpid()], "postgres": postgres_pids(self.pg.data_dir),
                      "coordinator": [coordinator.pid]}
            if subscriber is not None:
                groups["subscriber"] = [subscriber.pid]
            meter = CpuMeter(groups)
            profiled_pids = ([coordinator.pid] + ([] if subscriber is None else [subscriber.pid])
                             if a.profile else [])
            with timed_acks(committed):
                for pid in profiled_pids:
                    os.kill(pid, signal.SIGUSR1)  # see profiled(): the drain starts
                meter.start()
                started = time.perf_counter()
                wall_start = time.time()
                await system.start_workers(a.workers, a.batch, lambda _t0: None,
                                           drain_count=a.jobs)
                await system.wait_workers()
                elapsed = time.perf_counter() - started
                used = meter.stop()
                wall_end = time.time()
                for pid in profiled_pids:
                    os.kill(pid, signal.SIGUSR1)  # the drain ended
            rate = a.jobs / elapsed
            self.drains[mode].append(rate)
            for part, seconds in used.items():
                self.cpu[mode].setdefault(part, []).append(seconds * 1e6 / a.jobs)
            line = (f"  rep {rep} {mode}: drain {a.jobs} runs in {elapsed:.2f} s, {rate:,.0f}/s;"
                    " CPU ms/1k runs " + ", ".join(
                        f"{part} {seconds * 1e6 / a.jobs:.0f}" for part, seconds in used.items()))
            if subscriber is not None:
                await asyncio.to_thread(subscriber.wait, 120)
                arrived = json.loads(out.read_text())  # noqa: ASYNC240 - after it
                for run_id, t in arrived.items():
                    self.delays_ms.append((t - committed[uuid.UUID(run_id)]) * 1000)
                self.missing += a.subscribers - len(arrived)
                delays = sorted(self.delays_ms[-len(arrived):])
                self.per_repeat_delivery.append({"p50": pct(delays, 50), "p99": pct(delays, 99)})
                line += (f"; {len(arrived)} deliveries, p50 {pct(delays, 50):.1f} ms, "
                         f"p99 {pct(delays, 99):.1f} ms")
                coordinator.terminate()
                await asyncio.to_thread(coordinator.wait, 30)
                line += "\n    " + self.add_pieces(committed, arrived, trace_file,
                                                    (wall_start, wall_end), used)
            print(line, flush=True)
        finally:
            with contextlib.suppress(Exception):
                await system.close()
            with contextlib.suppress(Exception):
                if listener is not None:
                    await listener.close()
            for proc in (subscriber, coordinator):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
            for path in (out, out.with_suffix(".ids"), trace_file):
                path.unlink(missing_ok=True)
            admin = await asyncpg.connect(self.pg.dsn)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            finally:
                await admin.close()

    def add_pieces(self, committed: dict[uuid.UUID, float], arrived: dict[str, float],
                   trace_file: Path, window: tuple[float, float],
                   used: dict[str, float]) -> str:
        """Split each delivery delay into its pieces (see ``Trace``); a one-line summary.
        Also the pump's reads during the drain (``window``, wall time) and the
        coordinator's CPU per read: the drain's CPU per 1,000 runs grows with the
        drain's length on a loaded machine (more reads), this does not."""
        if not trace_file.exists():
            return "pieces: no trace written"
        trace = json.loads(trace_file.read_text())
        reads = sorted(trace["reads"])
        import bisect

        in_drain = bisect.bisect_left(reads, window[1]) - bisect.bisect_left(reads, window[0])
        self.reads_in_drain.append(in_drain)
        self.coordinator_us_per_read.append(
            used["coordinator"] * 1e6 / in_drain if in_drain else 0.0)

        for run_id, t in arrived.items():
            m = trace["events"].get(run_id)
            c = committed[uuid.UUID(run_id)]
            if not m or not {"read_start", "read_end", "fanned_out", "streamed"} <= set(m):
                continue
            pieces = {
                "commit_to_read_start": m["read_start"] - c,
                "read": m["read_end"] - m["read_start"],
                "fan_out": m["fanned_out"] - m["read_end"],
                "queue_to_stream": m["streamed"] - m["fanned_out"],
                "stream_to_client": t - m["streamed"],
            }
            for name, seconds in pieces.items():
                self.pieces.setdefault(name, []).append(seconds * 1000)
            # Reads that began after the commit and still missed it: the horizon.
            self.pieces.setdefault("missed_reads", []).append(
                bisect.bisect_left(reads, m["read_start"]) - bisect.bisect_right(reads, c))
        self.pieces.setdefault("reads_per_s", []).append(
            len(reads) / (reads[-1] - reads[0]) if len(reads) > 1 else 0.0)
        return (f"reads in the drain {in_drain}, coordinator CPU per read "
                f"{self.coordinator_us_per_read[-1]:.0f} us; pieces p50/p99 (ms): " + ", ".join(
                    f"{name} {pct(v, 50):.1f}/{pct(v, 99):.1f}" for name, v in self.pieces.items()))

    def report(self) -> dict[str, Any]:
        import statistics

        none = statistics.median(self.drains["none"])
        subs = statistics.median(self.drains["subscribers"])
        delays = sorted(self.delays_ms)
        cpu_total = {m: sum(statistics.median(v) for v in parts.values())
                     for m, parts in self.cpu.items()}
        doc = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "args": vars(self.args),
            "loadavg_1m_at_end": os.getloadavg()[0],
            "drain_runs_per_s": self.drains,
            "drain_summary": {m: summary(v) for m, v in self.drains.items()},
            "drain_median_none": none,
            "drain_median_subscribers": subs,
            "throughput_loss_percent": (none - subs) / none * 100,
            "per_repeat_loss_percent": [
                (n - s) / n * 100
                for n, s in zip(self.drains["none"], self.drains["subscribers"], strict=False)],
            "cpu_ms_per_1k_runs": {m: {part: summary(v) for part, v in parts.items()}
                                   for m, parts in self.cpu.items()},
            "cpu_ms_per_1k_runs_total_of_medians": cpu_total,
            "subscriber_cpu_share_percent": (
                (cpu_total["subscribers"] - cpu_total["none"]) / cpu_total["subscribers"] * 100),
            "deliveries": len(delays),
            "missing_deliveries": self.missing,
            "delivery_ms": {"p50": pct(delays, 50), "p90": pct(delays, 90),
                            "p99": pct(delays, 99), "max": delays[-1] if delays else None},
            "per_repeat_delivery_ms": self.per_repeat_delivery,
            "reads_in_drain": self.reads_in_drain,
            "coordinator_cpu_us_per_read": self.coordinator_us_per_read,
            "delivery_pieces": {name: {"p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
                                       "max": max(v)}
                                for name, v in self.pieces.items() if v},
        }
        if "no_event_log" in self.drains:
            off = statistics.median(self.drains["no_event_log"])
            doc["drain_median_no_event_log"] = off
            doc["event_log_cost_percent"] = (off - none) / off * 100
        if "notify_all" in self.drains:
            notifying = statistics.median(self.drains["notify_all"])
            doc["drain_median_notify_all"] = notifying
            doc["notify_all_loss_percent"] = (none - notifying) / none * 100
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


async def set_event_log(dsn: str, *, enabled: bool) -> None:
    """Turn the event log's triggers (migration 0012) on or off in one database."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE t.tgname LIKE 'run\\_events\\_%' AND NOT t.tgisinternal")
        verb = "ENABLE" if enabled else "DISABLE"
        for r in rows:
            await conn.execute(f'ALTER TABLE waypost.{r["relname"]} {verb} TRIGGER {r["tgname"]}')
    finally:
        await conn.close()


async def notify_all(dsn: str) -> asyncpg.Connection:
    """Make every transaction that writes events NOTIFY (migration 0015's trigger sends
    one only while a reader is armed); returns the connection that LISTENs."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE OR REPLACE FUNCTION waypost.run_events_wake_readers() RETURNS trigger"
        " LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$ BEGIN"
        " PERFORM pg_notify('waypost_events', pg_current_xact_id()::text); RETURN NULL;"
        " END $$")
    await conn.add_listener("waypost_events", lambda *_: None)
    return conn


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


@contextlib.contextmanager
def profiled(name: str) -> Any:
    """cProfile this process into $BENCH_SSE_PROFILE/<name>-<pid>.prof when that is set
    (``--profile DIR``), only while the drain runs: the driver sends SIGUSR1 when the
    drain starts and again when it ends (start-up, imports and the subscribers'
    connecting are left out). SIGTERM ends it cleanly so that the profile is written."""
    folder = os.environ.get("BENCH_SSE_PROFILE")
    if not folder:
        yield
        return
    import cProfile

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    prof = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
    running = False

    def toggle(*_: Any) -> None:
        nonlocal running
        if running:
            prof.disable()
        else:
            prof.enable()
        running = not running

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, toggle)
    try:
        yield
    finally:
        prof.disable()
        prof.dump_stats(str(Path(folder) / f"{name}-{os.getpid()}.prof"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--coordinator"]:
        trace_to = os.environ.get("BENCH_SSE_TRACE")
        trace = Trace()
        if trace_to:
            def stop(*_: Any) -> None:
                raise KeyboardInterrupt

            signal.signal(signal.SIGTERM, stop)
            trace.install()
        try:
            with contextlib.suppress(KeyboardInterrupt), profiled("coordinator"):
                asyncio.run(serve_coordinator(argv[1], int(argv[2])))
        finally:
            if trace_to:
                trace.dump(trace_to)
        return
    if argv[:1] == ["--subscribe"]:
        ids = Path(argv[2]).read_text().split()
        with contextlib.suppress(KeyboardInterrupt), profiled("subscriber"):
            asyncio.run(subscribe(argv[1], ids, Path(argv[3])))
        return
    p = argparse.ArgumentParser(prog="python -m bench.sse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", default="none,subscribers",
                   type=lambda text: text.split(","),
                   help=f"drains per repeat, of {', '.join(MODES)} (none and subscribers "
                        "are always needed)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--poll-interval", type=float,
                   help="the coordinator's WAYPOST_EVENTS_POLL_INTERVAL (default: its own)")
    p.add_argument("--profile", metavar="DIR",
                   help="cProfile the coordinator and subscriber processes into DIR")
    args = p.parse_args(argv)
    if args.poll_interval is not None:
        os.environ["WAYPOST_EVENTS_POLL_INTERVAL"] = str(args.poll_interval)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_SSE_PROFILE"] = str(Path(args.profile).resolve())
    if not {"none", "subscribers"} <= set(args.modes) <= set(MODES):
        p.error("--modes: use none,subscribers and optionally no_event_log,notify_all, "
                f"not {args.modes}")
    bench = SseBench(args)
    asyncio.run(bench.run())
    doc = bench.report()
    out = Path(args.out) / f"sse-{doc['when'][:19].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
