"""The `waypost` command: run it locally, trigger and inspect runs, manage dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from waypost.sdk.client import WaypostClient
from waypost.sdk.errors import CoordinatorUnavailable, WaypostAPIError

TABLE_COLUMNS = ("id", "task", "status", "attempt", "priority", "createdAt")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) > 19 and value[4:5] == "-" and "T" in value:
        return value[:19].replace("T", " ")  # timestamps to the second
    return str(value)


def print_run(run: dict[str, Any]) -> None:
    for key in ("id", "namespace", "task", "status", "attempt", "maxAttempts", "priority",
                "queue", "idempotencyKey", "concurrencyKey", "createdAt", "startedAt",
                "finishedAt", "traceId", "specChoice", "specGeneration"):
        if run.get(key) is not None:
            print(f"{key:>15}: {_cell(run[key])}")
    if run.get("result") is not None:
        print(f"{'result':>15}: {json.dumps(run['result'])}")
    if run.get("error"):
        err = run["error"]
        print(f"{'error':>15}: [{err.get('type')}] {err.get('name') or ''} {err.get('message')}")
    if run.get("attempts"):
        print("\nAttempts:")
        print_table(run["attempts"], ("attempt", "status", "memoryBytes", "startedAt",
                                      "finishedAt"))
        for a in run["attempts"]:
            if a.get("error"):
                print(f"  attempt {a['attempt']}: [{a['error']['type']}] {a['error']['message']}")
    if run.get("checkpoints"):
        print("\nCheckpoints:")
        print_table(run["checkpoints"], ("key", "attempt", "sizeBytes", "createdAt"))


def _payload(text: str) -> Any:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"waypost: PAYLOAD is not valid JSON ({exc}): {text[:80]!r}") from None


async def _with_client(fn: Callable[[WaypostClient], Awaitable[int]]) -> int:
    async with WaypostClient.from_env() as client:
        try:
            return await fn(client)
        except WaypostAPIError as exc:
            print(f"waypost: {exc.message} ({exc.status} {exc.code})", file=sys.stderr)
            return 1
        except CoordinatorUnavailable as exc:
            print(f"waypost: {exc} (is `waypost dev` running? set WAYPOST_URL)", file=sys.stderr)
            return 1


def cmd_trigger(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        handle = await client.trigger(
            args.task, _payload(args.payload), namespace=args.namespace, priority=args.priority,
            idempotency_key=args.idempotency_key, concurrency_key=args.concurrency_key,
        )
        print(f"{'triggered' if handle.created else 'existing'} run {handle.id}")
        if not args.wait:
            return 0

        def progress(run: dict[str, Any]) -> None:
            print(f"  attempt {run.get('attempt')}: {run.get('status')}", flush=True)

        run = await client.wait(handle.id, timeout=args.timeout, on_update=progress)
        print_run(run)
        return 0 if run["status"] == "succeeded" else 1

    return asyncio.run(_with_client(go))


def cmd_runs_list(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        print_table(await client.list_runs(namespace=args.namespace, task=args.task,
                                           status=args.status, limit=args.limit))
        return 0

    return asyncio.run(_with_client(go))


def cmd_runs_show(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        print_run(await client.get_run(args.run_id))
        return 0

    return asyncio.run(_with_client(go))


def cmd_cancel(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        run = await client.cancel(args.run_id)
        print(f"run {run['id']} is {run['status']}")
        return 0

    return asyncio.run(_with_client(go))


def cmd_bump(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        run = await client.bump(args.run_id)
        print(f"run {run['id']} now has priority {run['priority']}")
        return 0

    return asyncio.run(_with_client(go))


def cmd_dlq_list(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        runs = await client.list_dead_letters(namespace=args.namespace, task=args.task)
        rows = [{**r, "error": (r.get("error") or {}).get("message", "")[:60]} for r in runs]
        print_table(rows, ("id", "task", "attempt", "finishedAt", "error"))
        return 0

    return asyncio.run(_with_client(go))


def cmd_dlq_requeue(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        run = await client.requeue(args.run_id, spec=args.spec)
        print(f"run {run['id']} requeued ({run['status']}) with the {args.spec} spec "
              f"(Task generation {run.get('specGeneration')})")
        return 0

    return asyncio.run(_with_client(go))


def cmd_schedules_list(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        found = await client.list_schedules(namespace=args.namespace, task=args.task)
        rows = [{**s, "nextFireAt": "suspended" if s.get("suspended") else s.get("nextFireAt"),
                 "lastError": (s.get("lastError") or "")[:60] or None} for s in found]
        print_table(rows, ("task", "name", "cron", "timezone", "nextFireAt", "lastFireAt",
                           "lastError"))
        return 0

    return asyncio.run(_with_client(go))


def cmd_schedules_trigger(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        run = await client.trigger_schedule(args.task, args.name, namespace=args.namespace)
        print(f"triggered run {run['id']} ({run['idempotencyKey']})")
        return 0

    return asyncio.run(_with_client(go))


def cmd_dev(args: argparse.Namespace) -> int:
    from waypost import devmode  # the server side is only needed here

    return devmode.run_dev(once=args.once, port=args.port, state_dir=Path(args.state_dir))


def cmd_operator(args: argparse.Namespace) -> int:
    from waypost import logformat
    from waypost.controller import operator  # needs kopf and kubernetes: the operator extra
    from waypost.model.settings import Settings

    logformat.configure(os.environ.get("WAYPOST_LOG_LEVEL", "INFO"))
    settings = Settings.from_env(coordinator_host="0.0.0.0")
    return asyncio.run(operator.run_operator(settings, operator.OperatorOptions.from_env()))


def cmd_crds(args: argparse.Namespace) -> int:
    import yaml

    from waypost.model import crd

    print(yaml.safe_dump_all([crd.task_crd(), crd.taskrun_crd()], sort_keys=False), end="")
    return 0


def cmd_manifests(args: argparse.Namespace) -> int:
    import importlib

    import yaml

    from waypost.model import from_sdk
    from waypost.sdk.decorator import Task

    sys.path.insert(0, os.getcwd())  # modules of the project it is run in, as the runner does
    manifests = []
    for name in args.modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            print(f"waypost manifests: cannot import {name}: {exc}", file=sys.stderr)
            return 2
        for value in vars(module).values():
            if isinstance(value, Task) and value.__module__ == module.__name__:
                manifests.append(from_sdk.task_manifest(
                    value.definition, namespace=args.namespace, image=args.image))
    if not manifests:
        print("waypost manifests: no @task functions in " + ", ".join(args.modules),
              file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import os

    from waypost.store import migrate

    dsn = os.environ.get("WAYPOST_DATABASE_URL")
    if not dsn:
        print("waypost migrate: set WAYPOST_DATABASE_URL", file=sys.stderr)
        return 2
    applied = asyncio.run(migrate.apply_dsn(dsn))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waypost", description="Durable task execution for Kubernetes.",
        epilog="Client commands talk to WAYPOST_URL (default http://127.0.0.1:8080) with "
               "WAYPOST_API_TOKEN when set.")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run waypost locally with the example tasks")
    dev.add_argument("--once", action="store_true",
                     help="run the examples, print the summary and exit (non-zero if any "
                          "example did not end as expected)")
    dev.add_argument("--port", type=int, default=8080, help="coordinator port (default 8080)")
    dev.add_argument("--state-dir", default=".waypost", help="where dev keeps Postgres and logs")
    dev.set_defaults(fn=cmd_dev)

    trig = sub.add_parser("trigger", help="trigger a run of TASK with a JSON PAYLOAD")
    trig.add_argument("task")
    trig.add_argument("payload", nargs="?", default="null",
                      help="JSON text, or @file.json (default null)")
    trig.add_argument("--namespace", default="default")
    trig.add_argument("--priority", type=int)
    trig.add_argument("--idempotency-key")
    trig.add_argument("--concurrency-key")
    trig.add_argument("--wait", action="store_true", help="show progress until the run ends")
    trig.add_argument("--timeout", type=float, default=300.0)
    trig.set_defaults(fn=cmd_trigger)

    runs = sub.add_parser("runs", help="list or show runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    rl = runs_sub.add_parser("list", help="recent runs, newest first")
    rl.add_argument("--namespace")
    rl.add_argument("--task")
    rl.add_argument("--status", help="comma-separated, e.g. running,retrying")
    rl.add_argument("--limit", type=int, default=20)
    rl.set_defaults(fn=cmd_runs_list)
    rs = runs_sub.add_parser("show", help="one run with attempts and checkpoints")
    rs.add_argument("run_id")
    rs.set_defaults(fn=cmd_runs_show)

    cancel = sub.add_parser("cancel", help="cancel an active run")
    cancel.add_argument("run_id")
    cancel.set_defaults(fn=cmd_cancel)
    bump = sub.add_parser("bump", help="move a waiting run to the front of its queue")
    bump.add_argument("run_id")
    bump.set_defaults(fn=cmd_bump)

    dlq = sub.add_parser("dlq", help="the dead-letter queue")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dl = dlq_sub.add_parser("list", help="dead-lettered runs")
    dl.add_argument("--namespace")
    dl.add_argument("--task")
    dl.set_defaults(fn=cmd_dlq_list)
    dr = dlq_sub.add_parser("requeue", help="run a dead-lettered run again")
    dr.add_argument("run_id")
    dr.add_argument("--spec", choices=("current", "original"), default="current",
                    help="current (default): the Task's spec as it is now, e.g. a fixed "
                         "image or more memory; original: the spec stored at trigger time")
    dr.set_defaults(fn=cmd_dlq_requeue)

    sch = sub.add_parser("schedules", help="cron schedules of Tasks")
    sch_sub = sch.add_subparsers(dest="schedules_command", required=True)
    sl = sch_sub.add_parser("list", help="schedules with their next fire times (UTC)")
    sl.add_argument("--namespace")
    sl.add_argument("--task")
    sl.set_defaults(fn=cmd_schedules_list)
    st = sch_sub.add_parser("trigger", help="fire schedule NAME of TASK once, now")
    st.add_argument("task")
    st.add_argument("name")
    st.add_argument("--namespace", default="default")
    st.set_defaults(fn=cmd_schedules_trigger)

    op = sub.add_parser("operator", help="run the Kubernetes operator (every replica serves "
                        "the coordinator API; the Lease holder runs the controller)")
    op.set_defaults(fn=cmd_operator)
    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    crds.set_defaults(fn=cmd_crds)

    man = sub.add_parser("manifests", help="print the Task objects of the @task functions "
                         "in MODULE... as YAML, to kubectl apply or commit for GitOps")
    man.add_argument("modules", nargs="+", metavar="MODULE", help="e.g. examples.orders")
    man.add_argument("--image", help="container image holding the task code")
    man.add_argument("--namespace", help="metadata.namespace (omitted when not given)")
    man.set_defaults(fn=cmd_manifests)

    mig = sub.add_parser("migrate", help="apply schema migrations to WAYPOST_DATABASE_URL")
    mig.set_defaults(fn=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
