"""`waypost dev`: the whole of waypost on one machine, with the example tasks.

Starts Postgres (embedded unless WAYPOST_DATABASE_URL is set), the engine, the
coordinator and dashboard, and the process backend; then triggers the examples
so a newcomer sees a success, a retry that resumes from a checkpoint, and a
dead-lettered run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import Run, TriggerRequest
from waypost.model.settings import Settings
from waypost.sdk.decorator import Task
from waypost.standalone import Standalone
from waypost.store.embedded import EmbeddedPostgres

EXAMPLE_MODULES = ("examples.hello", "examples.orders", "examples.flaky")


@dataclass(frozen=True)
class Example:
    title: str
    task: str
    payload: Any
    expect: RunStatus
    expect_attempts: int


EXAMPLES = (
    Example("a plain success", "hello", {"name": "waypost"}, RunStatus.SUCCEEDED, 1),
    Example("a retry that resumes after its checkpoint", "process-order",
            {"orderId": "ord-1001", "failPaymentOnAttempts": [1]}, RunStatus.SUCCEEDED, 2),
    Example("retries exhausted: dead-lettered", "always-fails", {"reason": "demo"},
            RunStatus.DEAD_LETTERED, 3),
)


def _import_examples() -> list[Task[..., Any]]:
    sys.path.insert(0, os.getcwd())
    found: list[Task[..., Any]] = []
    for name in EXAMPLE_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SystemExit(
                f"waypost dev: cannot import {name} ({exc}); run it from the repository root"
            ) from None
        found += [v for v in vars(module).values() if isinstance(v, Task)]
    return found


def _fetch_count(ledger_path: Path, run_id: str) -> int:
    from examples import ledger  # imported from the repository, like the tasks

    return Counter(e["effect"] for e in ledger.read(str(ledger_path))
                   if e["run"] == run_id)["fetch_order"]


def dev_settings(dsn: str, port: int | None) -> Settings:
    """Dev mode's settings: every WAYPOST_* variable is honoured (README, "Settings");
    dev mode only changes two defaults, so that the examples end quickly. ``port``,
    from the command line, wins over WAYPOST_COORDINATOR_PORT."""
    return Settings.from_env(
        defaults={"heartbeat_interval_seconds": 5.0, "poll_interval_seconds": 1.0,
                  "coordinator_port": 8080, "database_url": dsn},
        coordinator_port=port,
    )


def run_dev(*, once: bool, port: int | None, state_dir: Path, timeout: float = 120.0) -> int:
    """Start Postgres if needed, then the stack and the examples; returns the exit code."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ledger_path = state_dir / "ledger.jsonl"
    os.environ["WAYPOST_EXAMPLE_LEDGER"] = str(ledger_path)
    postgres: EmbeddedPostgres | None = None
    dsn = os.environ.get("WAYPOST_DATABASE_URL")
    if not dsn:
        print(f"Starting an embedded Postgres in {state_dir / 'postgres'} …", flush=True)
        postgres = EmbeddedPostgres(state_dir / "postgres", durable=False)
        postgres.start()
        dsn = postgres.dsn
    try:
        settings = dev_settings(dsn, port)
        return asyncio.run(_serve(settings, state_dir, ledger_path, once=once, timeout=timeout))
    finally:
        if postgres is not None:
            postgres.stop()


async def _serve(settings: Settings, state_dir: Path, ledger_path: Path, *, once: bool,
                 timeout: float) -> int:
    tasks = _import_examples()
    stack = Standalone(settings, ProcessBackend(max_parallel=4, log_dir=state_dir / "logs"))
    # A trigger before the tasks are stored would get 404 unknown_task.
    stack.readiness.hold("tasks", "the example tasks are not registered yet")
    await stack.start()
    try:
        await stack.register(*tasks)
        stack.readiness.release("tasks")
        print(f"waypost is up: dashboard and API at {stack.url}/ "
              f"(OpenAPI: {stack.url}/openapi.json)")
        print(f"Registered tasks: {', '.join(t.id for t in tasks)}")
        return await _run_examples(stack, ledger_path, once=once, timeout=timeout)
    finally:
        await stack.stop()


async def _run_examples(stack: Standalone, ledger_path: Path, *, once: bool,
                        timeout: float) -> int:
    triggered: list[tuple[Example, Run]] = []
    for example in EXAMPLES:
        run, _ = await control.trigger(stack.engine, "default", example.task,
                                       TriggerRequest(payload=example.payload), source="dev")
        triggered.append((example, run))
        print(f"  triggered {example.task:<14} run {run.id}  ({example.title})")
    final: dict[str, Run] = {}
    seen: dict[str, tuple[str, int]] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while len(final) < len(triggered) and asyncio.get_running_loop().time() < deadline:
        for example, run in triggered:
            if run.id in final:
                continue
            current = await control.get(stack.engine, control.parse_run_id(run.id))
            state = (current.status.value, current.attempt)
            if seen.get(run.id) != state:
                seen[run.id] = state
                print(f"  {example.task:<14} attempt {current.attempt}: {current.status.value}",
                      flush=True)
            if current.status.is_final:
                final[run.id] = current
        await asyncio.sleep(0.2)
    ok = _print_summary(triggered, final, ledger_path)
    if once:
        return 0 if ok else 1
    print(f"\nStill serving at {stack.url}/ — try: waypost trigger hello '{{\"name\": \"you\"}}' "
          "--wait   (Ctrl-C to stop)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    return 0


def _print_summary(triggered: list[tuple[Example, Run]], final: dict[str, Run],
                   ledger_path: Path) -> bool:
    print("\nExample                                      task            expected       "
          "got            attempts")
    all_ok = True
    for example, run in triggered:
        done = final.get(run.id)
        got = done.status.value if done else "not finished"
        attempts = done.attempt if done else 0
        ok = done is not None and done.status == example.expect and (
            attempts == example.expect_attempts)
        note = ""
        if ok and example.task == "process-order":
            fetches = _fetch_count(ledger_path, run.id)
            ok = fetches == 1
            note = f"  (order fetched {fetches}x: resumed after checkpoint 'order-fetched')"
        if done is not None and done.status == RunStatus.DEAD_LETTERED and done.error:
            note = f"  (last error: {done.error.message})"
        all_ok &= ok
        mark = "ok " if ok else "BAD"
        print(f"{mark} {example.title:<40} {example.task:<15} {example.expect.value:<14} "
              f"{got:<14} {attempts}{note}")
    print("\nAll examples ended as expected." if all_ok else "\nSome examples did NOT end as "
          "expected.")
    return all_ok
