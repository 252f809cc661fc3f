"""What tracing costs (issue 11): a drain and checkpoint latency, tracing off and on.

    WAYPOST_JAEGER=$(tools/ensure jaeger) .venv/bin/python -m bench.tracing_overhead \\
        [--jobs 20000] [--steps 300] [--repeats 3]

On a fresh durable Postgres, with a real Jaeger receiving OTLP:

- **Drain**: ``--jobs`` runs enqueued in bulk, then drained by 4 workers claiming and
  acknowledging in batches of 10 (``runs.ack_and_claim``, as ``make bench``'s waypost
  drain does), while the leader's telemetry reader follows the event log: ``off``
  (no reader: the drain as ``make bench`` measures it), ``metrics`` (the reader,
  tracing off: what every leader runs) and ``traces`` (the reader also emitting run
  and queue-wait spans to Jaeger). Runs per second.
- **Checkpoint latency**: ``ctx.step`` (its function is a no-op, so the figure is
  the checkpoint write through the coordinator's HTTP API) ``--steps`` times, with
  the runner's spans off and on (exported to Jaeger). p50/p99 in ms.

Modes alternate within each repeat; the medians over repeats are printed.
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
from typing import Any

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

OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def drain(app: Standalone, jobs: int, mode: str, endpoint: str) -> float:
    engine = app.engine
    for var in OTEL_VARS:
        os.environ.pop(var, None)
    if mode == "traces":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    await control.trigger_many(engine, "default", "noop", [None] * jobs)
    stop = asyncio.Event()
    reader = (asyncio.create_task(telemetry.run(engine, stop)) if mode != "off" else None)

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

    t0 = time.perf_counter()
    total = sum(await asyncio.gather(*(worker() for _ in range(4))))
    seconds = time.perf_counter() - t0
    stop.set()
    if reader is not None:
        await reader
    assert total == jobs, (total, jobs)
    return jobs / seconds


async def checkpoint_latency(app: Standalone, steps: int, traced: bool,
                             endpoint: str) -> list[float]:
    run, _ = await control.trigger(app.engine, "default", "noop", TriggerRequest(payload=None))
    [claim] = await runs.claim(app.engine.pool, limit=1, lease_seconds=600, worker="bench")
    assert claim.run_id == uuid.UUID(run.id)
    token = app.engine.signer.issue(claim.run_id, claim.claim_token)
    client = runner_api.RunnerClient(app.url, token)
    try:
        doc = await client.get_attempt()
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if traced else {}
        trace = runner_tracing.start(doc, env)
        ctx = Context(run_id=doc.run_id, attempt=doc.attempt, payload=None, port=client,
                      traceparent=doc.traceparent, limits=doc.limits, tracer=trace.steps)
        lat = []
        for i in range(steps):
            t0 = time.perf_counter()
            await ctx.step(f"s{i}", lambda: {"i": 1})
            lat.append((time.perf_counter() - t0) * 1000)
        trace.end("succeeded", failed=False)
        await trace.flush()
        return lat
    finally:
        await client.close()


async def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tracing_overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="waypost-bench-tracing-"))
    pg = embedded.EmbeddedPostgres(folder / "data").start()
    rates: dict[str, list[float]] = {"off": [], "metrics": [], "traces": []}
    latency: dict[str, list[tuple[float, float]]] = {"untraced": [], "traced": []}
    try:
        await migrate.apply_dsn(pg.dsn)
        with jaeger_support.running(folder) as jaeger:
            endpoint = jaeger.otlp_endpoint
            for rep in range(a.repeats):
                app = await Standalone(Settings(database_url=pg.dsn, coordinator_port=0,
                                                telemetry_poll_seconds=1.0),
                                       dispatch=False).start()
                try:
                    await control.register_task(app.engine, TaskDefinition(
                        namespace="default", name="noop",
                        spec=TaskSpec.model_validate({"entrypoint": "m:f"})))
                    order = ["off", "metrics", "traces"]
                    for mode in order[rep % 3:] + order[:rep % 3]:
                        rate = await drain(app, a.jobs, mode, endpoint)
                        rates[mode].append(rate)
                        print(f"rep {rep} drain {mode:8s} {rate:8.0f} runs/s", flush=True)
                    for traced in ([False, True] if rep % 2 == 0 else [True, False]):
                        lat = await checkpoint_latency(app, a.steps, traced, endpoint)
                        label = "traced" if traced else "untraced"
                        latency[label].append((pct(lat, 50), pct(lat, 99)))
                        print(f"rep {rep} checkpoint {label:8s} p50 {pct(lat, 50):6.2f} ms "
                              f"p99 {pct(lat, 99):6.2f} ms", flush=True)
                finally:
                    await app.stop()
            spans = jaeger.get("/api/services")
            print("Jaeger services:", spans.get("data"))
    finally:
        pg.destroy()
    print("\nmedians over", a.repeats, "repeats:")
    base = statistics.median(rates["off"])
    for mode, values in rates.items():
        med = statistics.median(values)
        print(f"  drain {mode:8s} {med:8.0f} runs/s  ({100 * (med / base - 1):+.1f}% vs off)")
    p50_0 = statistics.median(x[0] for x in latency["untraced"])
    for label, values in latency.items():
        p50 = statistics.median(x[0] for x in values)
        p99 = statistics.median(x[1] for x in values)
        print(f"  checkpoint {label:8s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
              f"(p50 {100 * (p50 / p50_0 - 1):+.1f}% vs untraced)")


if __name__ == "__main__":
    asyncio.run(main())
