"""The argparse implementations of `waypost logs`, `replay` and `bulk` (issue 10), which
the Typer commands in `waypost.cli.events` hand their arguments to."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from waypost.sdk.client import UNSET, WaypostClient
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
    if run.get("replay"):
        rec = run["replay"]
        print(f"\nReplay of {rec['replayOf']} from {rec.get('fromCheckpoint') or 'the start'}"
              f" ({rec['spec']} spec), by {rec['requestedBy']} at {_cell(rec['requestedAt'])}")
        if rec.get("diff"):
            print(f"  changes: {json.dumps(rec['diff'])}")
    if run.get("replays"):
        print("\nReplays:")
        print_table(run["replays"], ("runId", "fromCheckpoint", "requestedBy", "requestedAt"))
    if run.get("checkpoints"):
        print("\nCheckpoints:")
        print_table(run["checkpoints"], ("key", "attempt", "sizeBytes", "createdAt"))


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "?"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def describe_event(event: dict[str, Any]) -> str | None:
    """One line for a run event, as ``trigger --wait`` shows progress."""
    kind, data, attempt = event.get("kind"), event.get("data") or {}, event.get("attempt")
    if kind == "status":
        error = data.get("error") or {}
        why = f" ({error.get('type')}: {error.get('message')})" if error else ""
        return f"  status {data.get('status')}{why}"
    if kind == "attempt_started":
        return f"  attempt {attempt} started (memory {_size(data.get('memoryBytes'))})"
    if kind == "attempt_finished":
        if data.get("status") == "succeeded":
            return f"  attempt {attempt} succeeded in {data.get('durationMs')} ms"
        parts = [f"  attempt {attempt} {data.get('status')}: {data.get('failureType')}"]
        if data.get("exitCode") is not None:
            parts.append(f"exit code {data['exitCode']}")
        if data.get("oomKilled"):
            parts.append(f"OOM-killed at {_size(data.get('memoryBytes'))}")
        if data.get("message"):
            parts.append(str(data["message"])[:200])
        return ", ".join(parts)
    if kind == "checkpoint":
        copied = ", copied by the replay" if attempt == 0 else ""
        return f"  checkpoint {data.get('key')} ({_size(data.get('sizeBytes'))}{copied})"
    if kind == "replay":
        return f"  replay of {data.get('replayOf')} from {data.get('fromCheckpoint')}"
    return None


def print_event(event: dict[str, Any]) -> None:
    line = describe_event(event)
    if line is not None:
        print(line, flush=True)


def print_log_line(line: dict[str, Any]) -> None:
    fields = {k: v for k, v in (line.get("fields") or {}).items()
              if k not in ("run_id", "attempt")}
    step = f" [{line['step']}]" if line.get("step") else ""
    extra = f" {json.dumps(fields, separators=(',', ':'))}" if fields else ""
    print(f"{_cell(line.get('ts'))} #{line.get('attempt')}{step} "
          f"{str(line.get('level', '')).upper():<7} {line.get('message')}{extra}", flush=True)


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

        try:
            run = await client.wait(handle.id, timeout=args.timeout, on_event=print_event)
        except TimeoutError as exc:
            print(f"waypost: {exc}; it keeps running (waypost runs show {handle.id})",
                  file=sys.stderr)
            return 2
        print_run(run)
        return 0 if run["status"] == "succeeded" else 1

    return asyncio.run(_with_client(go))


def cmd_logs(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        if args.follow:
            async for line in client.follow_logs(args.run_id, attempt=args.attempt,
                                                 level=args.level):
                print_log_line(line)
            return 0
        cursor: str | None = None
        while True:
            lines, cursor = await client.logs(args.run_id, attempt=args.attempt,
                                              level=args.level, cursor=cursor, limit=1000)
            for line in lines:
                print_log_line(line)
            if len(lines) < 1000:
                return 0

    return asyncio.run(_with_client(go))


def _checkpoint_edit(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"waypost: --set-checkpoint wants KEY=JSON or KEY=@file.json, "
                         f"got {text!r}")
    return key, _payload(value)


def cmd_replay(args: argparse.Namespace) -> int:
    edits = dict(_checkpoint_edit(t) for t in args.set_checkpoint)
    payload = UNSET if args.payload is None else _payload(args.payload)

    async def go(client: WaypostClient) -> int:
        run = await client.replay(args.run_id, from_checkpoint=args.from_checkpoint,
                                  payload=payload, checkpoints=edits, spec=args.spec)
        where = f"after checkpoint {args.from_checkpoint}" if args.from_checkpoint else (
            "from the start")
        print(f"replay run {run['id']} of {args.run_id} ({where})")
        if not args.wait:
            return 0
        try:
            run = await client.wait(run["id"], timeout=args.timeout, on_event=print_event)
        except TimeoutError as exc:
            print(f"waypost: {exc}", file=sys.stderr)
            return 2
        print_run(run)
        return 0 if run["status"] == "succeeded" else 1

    return asyncio.run(_with_client(go))


def cmd_bulk(args: argparse.Namespace) -> int:
    async def go(client: WaypostClient) -> int:
        done = skipped = 0
        total: int | None = None
        async for batch in client.bulk(
            args.action, namespace=args.namespace, task=args.task,
            status=args.status.split(",") if args.status else None, since=args.since,
            until=args.until, error_type=args.error_type, dead_lettered=args.dead_lettered,
            dry_run=args.dry_run, batch_size=args.batch_size,
            from_checkpoint=getattr(args, "from_checkpoint", None),
            spec=getattr(args, "spec", "current"),
        ):
            if args.dry_run:
                print(f"would {args.action} {batch['matched']} runs (dry run, nothing changed)")
                return 0
            total = batch["matched"] if total is None else total
            done += batch["changed"]
            skipped += batch["skipped"]
            print(f"{args.action}: {done}/{total} done, {skipped} skipped", flush=True)
        print(f"{args.action}: finished, {done} changed, {skipped} skipped")
        return 0

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
    dev.add_argument("--port", type=int, default=None,
                     help="coordinator port (default WAYPOST_COORDINATOR_PORT, else 8080)")
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
    trig.add_argument("--wait", action="store_true",
                      help="show each attempt and checkpoint until the run ends")
    trig.add_argument("--timeout", type=float, default=300.0,
                      help="seconds --wait waits (exit code 2 when it runs out)")
    trig.set_defaults(fn=cmd_trigger)

    logs = sub.add_parser("logs", help="log lines of a run (every attempt, oldest first)")
    logs.add_argument("run_id")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines until the run finishes")
    logs.add_argument("--attempt", type=int, help="only this attempt")
    logs.add_argument("--level", choices=("debug", "info", "warning", "error"),
                      help="minimum level")
    logs.set_defaults(fn=cmd_logs)

    rep = sub.add_parser("replay", help="run a finished run again from one of its "
                         "checkpoints, with edited input (a new run linked to it)")
    rep.add_argument("run_id")
    rep.add_argument("--from", dest="from_checkpoint", metavar="KEY",
                     help="resume right after this checkpoint (default: from the start)")
    rep.add_argument("--payload", help="JSON text or @file.json (default: the original's)")
    rep.add_argument("--set-checkpoint", action="append", default=[], metavar="KEY=JSON",
                     help="replace a copied checkpoint's data (JSON or @file.json); repeatable")
    rep.add_argument("--spec", choices=("current", "original"), default="current",
                     help="run the Task's current spec or the original run's")
    rep.add_argument("--wait", action="store_true", help="follow the replay until it ends")
    rep.add_argument("--timeout", type=float, default=300.0)
    rep.set_defaults(fn=cmd_replay)

    bulk = sub.add_parser("bulk", help="requeue, cancel or replay every run a filter "
                          "matches, in batches (repeating it changes nothing more)")
    bulk_sub = bulk.add_subparsers(dest="action", required=True)
    for action, text in (("requeue", "requeue dead-lettered and failed runs"),
                         ("cancel", "cancel queued, running and retrying runs"),
                         ("replay", "replay finished runs")):
        b = bulk_sub.add_parser(action, help=text)
        b.add_argument("--namespace")
        b.add_argument("--task")
        b.add_argument("--status", help="comma-separated statuses")
        b.add_argument("--since", help="created at or after (ISO 8601 with timezone)")
        b.add_argument("--until", help="created before (ISO 8601 with timezone)")
        b.add_argument("--error-type",
                       choices=("error", "oom", "timeout", "lost", "exit", "cancelled"))
        b.add_argument("--dead-lettered", action="store_true", help="only dead-lettered runs")
        b.add_argument("--dry-run", action="store_true", help="only print how many runs match")
        b.add_argument("--batch-size", type=int, default=100)
        if action == "replay":
            b.add_argument("--from", dest="from_checkpoint", metavar="KEY",
                           help="resume each replay right after this checkpoint")
        if action in ("requeue", "replay"):
            b.add_argument("--spec", choices=("current", "original"), default="current",
                           help="the Task's current spec, or the one each run was "
                                "triggered with")
        b.set_defaults(fn=cmd_bulk)

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
