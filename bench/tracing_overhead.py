"""What tracing costs (issue 11): a drain and checkpoint latency, tracing off and on.

    WAYPOST_JAEGER=$(tools/ensure jaeger) .venv/bin/python -m bench.tracing_overhead \\
        [--jobs 10000] [--steps 300] [--block 10] [--repeats 5] [--ratio 0.1]

On a fresh durable Postgres, with a real Jaeger receiving OTLP:

- **Drain**: ``--jobs`` runs enqueued in bulk, then drained by 4 workers claiming and
  acknowledging in batches of 10 (``runs.ack_and_claim``, as ``make bench``'s waypost
  drain does), while the leader's telemetry reader follows the event log: ``off``
  (no reader: the drain as ``make bench`` measures it), ``metrics`` (the reader,
  tracing off: what every leader runs) and ``traces`` (the reader also emitting run
  and queue-wait spans to Jaeger); with ``--ratio``, also ``traces-sampled`` (the
  same with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` at that ratio). Runs
  per second; the modes take turns in each repeat, in a rotating order. Also the
  CPU each run cost, in microseconds: of this process (the workers and the reader),
  of the leader's span exporter process (engine.span_process: it builds and exports
  the spans; counted once it ended, when the reader stops; the bench measures the
  CPU of its start and stop alone first and takes it off, since a leader starts it
  once, not once per drain, and the drain starts once it is ready) and of Postgres
  (the postmaster's processes), up to the reader's count of the drain's last
  attempt. CPU time,
  unlike throughput, hardly depends on what else the machine runs, so it shows a
  mode's cost on a shared machine.
- **Checkpoint latency**: ``ctx.step`` (its function is a no-op, so the figure is
  the checkpoint write through the coordinator's HTTP API), ``--steps`` times for an
  attempt with the runner's spans off and as many for one with them on (exported to
  Jaeger), alternating every ``--block`` steps, so a change in the machine's load
  falls on both. p50/p99 in ms.

The machine is shared: the summary gives each figure's median, minimum and maximum
over the repeats and the 1-minute load average seen between them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from tests import jaeger as jaeger_support
from waypost.engine import control, telemetry
from waypost.model.run import TriggerRequest
from waypost.model.settings import Settings
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.runner import api as runner_api
from waypost.runner import tracing as runner_tracing
from waypost.sdk.context import Context
from waypost.standalone import Standalone
from waypost.store import embedded, migrate, runs

OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER",
             "OTEL_TRACES_SAMPLER_ARG")


class Drained(NamedTuple):
    rate: float  # runs per second
    cpu_us: float  # this process's CPU per run
    pg_cpu_us: float  # Postgres's CPU per run
    child_cpu_us: float  # the span exporter process's CPU per run


def children_cpu() -> float:
    """CPU seconds of this process's children that ended and were waited for (the
    span exporter; Jaeger and Postgres run on)."""
    t = os.times()
    return t.children_user + t.children_system


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds the cluster's processes used so far: the postmaster's own and its
    reaped children's, plus its live children's."""
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    post = psutil.Process(pid)
    t = post.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in post.children():
        try:
            c = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += c.user + c.system
    return total


def exporter_startup_cpu(endpoint: str) -> float:
    """CPU seconds a span exporter process costs to start and stop (median of 3)."""
    from waypost.engine import span_process

    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    costs = []
    for _ in range(3):
        before = children_cpu()
        span_process.SpanProcess(os.environ).shutdown()
        costs.append(children_cpu() - before)
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
    return statistics.median(costs)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def drain(app: Standalone, jobs: int, mode: str, endpoint: str, data_dir: Path,
                ratio: float = 1.0, startup: float = 0.0) -> Drained:
    engine = app.engine
    for var in OTEL_VARS:
        os.environ.pop(var, None)
    if mode.startswith("traces"):
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    if mode == "traces-sampled":
        os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = str(ratio)
    await control.trigger_many(engine, "default", "noop", [None] * jobs)
    stop, ready = asyncio.Event(), asyncio.Event()
    reader = (asyncio.create_task(telemetry.run(engine, stop, ready))
              if mode != "off" else None)
    if reader is not None:
        # The drain starts once the reader reads the log (with tracing on, the span
        # exporter process has started: its start-up is not this drain's).
        await ready.wait()

    def counted() -> float:
        """Attempts the reader counted so far (the engine's series)."""
        return engine.metrics.registry.get_sample_value(
            "waypost_attempts_finished_total",
            {"task_namespace": "default", "task": "noop", "outcome": "succeeded"}) or 0.0

    before = counted()

    async def worker() -> int:
        acks: list[Any] = []
        done = 0
        while True:
            _, claimed = await runs.ack_and_claim(engine.pool, acks=acks, limit=10,
                                                  lease_seconds=60, worker="bench")
            done += len(acks)
            if not claimed:
                return done
            acks = [(c.run_id, c.claim_token, None) for c in claimed]

    t0, cpu0, pg0 = time.perf_counter(), time.process_time(), postgres_cpu(data_dir)
    child0 = children_cpu()
    total = sum(await asyncio.gather(*(worker() for _ in range(4))))
    seconds = time.perf_counter() - t0
    if reader is not None:
        # The reader's work for this drain counts as this mode's CPU: all of it, up to
        # the last acknowledged attempt, then the exporter's flush.
        deadline = time.monotonic() + 300
        while counted() - before < jobs:
            assert time.monotonic() < deadline, ("the reader did not catch up",
                                                 counted() - before, jobs)
            await asyncio.sleep(0.05)
    stop.set()
    if reader is not None:
        await reader
    cpu, pg = time.process_time() - cpu0, postgres_cpu(data_dir) - pg0
    child = max(0.0, children_cpu() - child0 - (startup if mode.startswith("traces") else 0))
    assert total == jobs, (total, jobs)
    return Drained(jobs / seconds, cpu / jobs * 1e6, pg / jobs * 1e6, child / jobs * 1e6)


class Stepper:
    """An attempt of its own (claimed, its runner's context made), stepping on demand."""

    def __init__(self, app: Standalone, traced: bool, endpoint: str) -> None:
        self.app, self.traced, self.endpoint = app, traced, endpoint
        self.count = 0

    async def __aenter__(self) -> Stepper:
        app = self.app
        run, _ = await control.trigger(app.engine, "default", "noop",
                                       TriggerRequest(payload=None))
        [claim] = await runs.claim(app.engine.pool, limit=1, lease_seconds=600,
                                   worker="bench")
        assert claim.run_id == uuid.UUID(run.id)
        token = app.engine.signer.issue(claim.run_id, claim.claim_token)
        self.client = runner_api.RunnerClient(app.url, token)
        doc = await self.client.get_attempt()
        if self.traced:
            # The runner's exporter reads the process environment (as in a runner Pod).
            os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.endpoint
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint} if self.traced else {}
        self.trace = runner_tracing.start(doc, env)
        self.ctx = Context(run_id=doc.run_id, attempt=doc.attempt, payload=None,
                           port=self.client, traceparent=doc.traceparent, limits=doc.limits,
                           tracer=self.trace.steps)
        return self

    async def steps(self, n: int) -> list[float]:
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            await self.ctx.step(f"s{self.count}", lambda: {"i": 1})
            lat.append((time.perf_counter() - t0) * 1000)
            self.count += 1
        return lat

    async def __aexit__(self, *exc: object) -> None:
        self.trace.end("succeeded", failed=False)
        await self.trace.flush()
        await self.client.close()


async def checkpoint_latency(app: Standalone, steps: int, block: int,
                             endpoint: str) -> dict[str, list[float]]:
    """``steps`` checkpoints each, untraced and traced, alternating in blocks of
    ``block``: a change of the machine's load falls on both alike."""
    lat: dict[str, list[float]] = {"untraced": [], "traced": []}
    async with Stepper(app, False, endpoint) as plain, Stepper(app, True, endpoint) as traced:
        for i in range(0, steps, block):
            n = min(block, steps - i)
            pair = [("untraced", plain), ("traced", traced)]
            for label, stepper in (pair if (i // block) % 2 == 0 else pair[::-1]):
                lat[label] += await stepper.steps(n)
    return lat


def spread(values: list[float], digits: int = 0) -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"median {med:8.{digits}f}  min {lo:8.{digits}f}  max {hi:8.{digits}f}"


async def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tracing_overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=10000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--block", type=int, default=10, help="checkpoints per mode in turn")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ratio", type=float, default=0.0,
                   help="also drain with OTEL_TRACES_SAMPLER=parentbased_traceidratio at "
                        "this ratio (mode traces-sampled); 0: not")
    a = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="waypost-bench-tracing-"))
    pg = embedded.EmbeddedPostgres(folder / "data").start()
    rates: dict[str, list[float]] = {"off": [], "metrics": [], "traces": []}
    if a.ratio:
        rates["traces-sampled"] = []
    cpus: dict[str, list[float]] = {mode: [] for mode in rates}
    pg_cpus: dict[str, list[float]] = {mode: [] for mode in rates}
    child_cpus: dict[str, list[float]] = {mode: [] for mode in rates}
    latency: dict[str, list[tuple[float, float]]] = {"untraced": [], "traced": []}
    loads = [os.getloadavg()[0]]
    try:
        await migrate.apply_dsn(pg.dsn)
        with jaeger_support.running(folder) as jaeger:
            endpoint = jaeger.otlp_endpoint
            startup = exporter_startup_cpu(endpoint)
            print(f"span exporter process start and stop: {startup:.2f} CPU s "
                  f"(taken off each traced drain's figure)", flush=True)
            for rep in range(a.repeats):
                app = await Standalone(Settings(database_url=pg.dsn, coordinator_port=0,
                                                telemetry_poll_seconds=1.0),
                                       dispatch=False).start()
                try:
                    await control.register_task(app.engine, TaskDefinition(
                        namespace="default", name="noop",
                        spec=TaskSpec.model_validate({"entrypoint": "m:f"})))
                    order = list(rates)
                    for mode in order[rep % len(order):] + order[:rep % len(order)]:
                        got = await drain(app, a.jobs, mode, endpoint, pg.data_dir,
                                          a.ratio, startup)
                        rates[mode].append(got.rate)
                        cpus[mode].append(got.cpu_us)
                        pg_cpus[mode].append(got.pg_cpu_us)
                        child_cpus[mode].append(got.child_cpu_us)
                        print(f"rep {rep} drain {mode:14s} {got.rate:8.0f} runs/s  CPU/run "
                              f"{got.cpu_us:6.0f} us + spans {got.child_cpu_us:6.0f} us + "
                              f"Postgres {got.pg_cpu_us:6.0f} us  "
                              f"load {os.getloadavg()[0]:.1f}", flush=True)
                    lat = await checkpoint_latency(app, a.steps, a.block, endpoint)
                    for label, values in lat.items():
                        latency[label].append((pct(values, 50), pct(values, 99)))
                        print(f"rep {rep} checkpoint {label:8s} p50 {pct(values, 50):6.2f} ms "
                              f"p99 {pct(values, 99):6.2f} ms", flush=True)
                finally:
                    await app.stop()
                loads.append(os.getloadavg()[0])
            spans = jaeger.get("/api/services")
            print("Jaeger services:", spans.get("data"))
    finally:
        pg.destroy()
    def total_cpu(mode: str) -> list[float]:
        return [x + y + z for x, y, z in zip(cpus[mode], pg_cpus[mode], child_cpus[mode],
                                              strict=True)]

    print(f"\nover {a.repeats} repeats (1-minute load average {min(loads):.1f} to "
          f"{max(loads):.1f}):")
    for mode, values in rates.items():
        print(f"  drain {mode:14s} runs/s  {spread(values)}")
    for mode in rates:
        print(f"  drain {mode:14s} CPU us/run: this process {spread(cpus[mode])}")
        print(f"  drain {mode:14s} CPU us/run: span exporter {spread(child_cpus[mode])}")
        print(f"  drain {mode:14s} CPU us/run: Postgres {spread(pg_cpus[mode])}")
        print(f"  drain {mode:14s} CPU us/run, all: {spread(total_cpu(mode))}")
    base = statistics.median(rates["off"])
    off = statistics.median(rates["metrics"])
    print(f"  metrics reader vs no reader: {100 * (off / base - 1):+.1f}%; "
          f"spans on vs off: {100 * (statistics.median(rates['traces']) / off - 1):+.1f}% "
          f"(medians)")
    def cpu(mode: str) -> float:
        return statistics.median(total_cpu(mode))

    own = statistics.median(cpus["traces"]) / statistics.median(cpus["metrics"])
    print(f"  CPU per run (all, medians): metrics reader vs no reader "
          f"{100 * (cpu('metrics') / cpu('off') - 1):+.1f}%; spans on vs off "
          f"{100 * (cpu('traces') / cpu('metrics') - 1):+.1f}%; this process alone: "
          f"{100 * (own - 1):+.1f}%")
    if a.ratio:
        print(f"  spans sampled at {a.ratio} vs off: "
              f"{100 * (statistics.median(rates['traces-sampled']) / off - 1):+.1f}% (medians)")
    for label, pairs in latency.items():
        print(f"  checkpoint {label:8s} p50 ms  {spread([x[0] for x in pairs], 2)}")
        print(f"  checkpoint {label:8s} p99 ms  {spread([x[1] for x in pairs], 2)}")
    p50_0 = statistics.median(x[0] for x in latency["untraced"])
    p50_1 = statistics.median(x[0] for x in latency["traced"])
    print(f"  checkpoint p50 traced vs untraced: {100 * (p50_1 / p50_0 - 1):+.1f}% (medians)")


if __name__ == "__main__":
    asyncio.run(main())
