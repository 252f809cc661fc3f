"""`waypost trigger`, `runs list|show`, `cancel`, `bump`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from waypost.cli import common, output, progress
from waypost.cli import waits as waits_cli
from waypost.cli.app import (
    All,
    Interval,
    Limit,
    Namespace,
    Output,
    OutputFormat,
    RunId,
    TaskFilter,
    Wait,
    WaitTimeout,
    Watch,
    app,
    runs_app,
)
from waypost.cli.errors import ExitCode
from waypost.cli.output import Column
from waypost.sdk.client import RunDocument, WaypostClient

RUN_COLUMNS = (
    Column("ID", lambda r: output.short_id(r.get("id"))),
    Column("ID", lambda r: r.get("id"), wide_only=True),
    Column("NAMESPACE", lambda r: r.get("namespace"), wide_only=True),
    Column("TASK", lambda r: r.get("task")),
    Column("STATUS", lambda r: r.get("status"), style=output.status_style),
    Column("ATTEMPT", lambda r: f"{r.get('attempt')}/{r.get('maxAttempts')}"),
    Column("PRIORITY", lambda r: r.get("priority"), wide_only=True),
    Column("QUEUE", lambda r: r.get("queue"), wide_only=True),
    Column("CONCURRENCY-KEY", lambda r: r.get("concurrencyKey"), wide_only=True),
    Column("SOURCE", lambda r: r.get("source"), wide_only=True),
    Column("DURATION", lambda r: output.duration(r.get("startedAt"), r.get("finishedAt"))),
    Column("AGE", lambda r: output.age(r.get("createdAt"))),
)


def run_table(runs: list[RunDocument], fmt: OutputFormat) -> RenderableType:
    wide = fmt is OutputFormat.WIDE
    columns = [c for c in RUN_COLUMNS if not (wide and c.header == "ID" and not c.wide_only)]
    return output.table(runs, columns, wide=wide, empty="No runs found.")


@app.command()
def trigger(
    task: Annotated[str, typer.Argument(help="The task id, as in @task(id=...).",
                                        show_default=False)],
    payload: Annotated[str, typer.Argument(
        help="JSON payload, or @file.json to read it from a file.")] = "null",
    namespace: Annotated[str, typer.Option(help="Namespace of the task.")] = "default",
    priority: Annotated[int | None, typer.Option(
        help="Higher runs first within its queue (-1000..1000).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Triggering again with the same key returns the existing run.")] = None,
    concurrency_key: Annotated[str | None, typer.Option(
        help="Runs with the same key share the task's per-key concurrency limit.")] = None,
    delay: Annotated[str | None, typer.Option(
        help="Start no earlier than this long from now: seconds or text like 10m, 1h30m; "
             "the run is delayed until then.")] = None,
    run_at: Annotated[str | None, typer.Option(
        help="Start no earlier than this ISO-8601 time (with a timezone, e.g. "
             "2030-01-01T09:00:00Z).")] = None,
    ttl: Annotated[str | None, typer.Option(
        help="Expire the run (it never runs) when it has not started this long after the "
             "trigger: seconds or text like 1h.")] = None,
    batch: Annotated[Path | None, typer.Option(
        "--batch", help="Trigger every line of this JSON-lines file as one run, in one "
        "request (up to 1,000; all or nothing). Each line is a payload object with its "
        "options: {\"payload\": ..., \"idempotencyKey\": ..., \"priority\": ..., "
        "\"concurrencyKey\": ..., \"delay\": ..., \"runAt\": ..., \"ttl\": ...}.",
        dir_okay=False)] = None,
    wait: Wait = False,
    timeout: WaitTimeout = 300.0,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Trigger a run of TASK with a JSON PAYLOAD (or many with --batch)."""
    if batch is not None:
        waits_cli.trigger_batch(task, batch, namespace, fmt)
        return
    body = common.payload(payload)
    structured = fmt in (OutputFormat.JSON, OutputFormat.YAML)
    when = waits_cli.parse_time_option("--run-at", run_at)
    delay_s = waits_cli.parse_duration_option("--delay", delay)
    ttl_s = waits_cli.parse_duration_option("--ttl", ttl)

    async def go(client: WaypostClient) -> int:
        handle = await client.trigger(task, body, namespace=namespace, priority=priority,
                                      idempotency_key=idempotency_key,
                                      concurrency_key=concurrency_key, delay=delay_s,
                                      run_at=when, ttl=ttl_s)
        if not wait:
            if structured:
                output.emit_document(handle.run, fmt)
            else:
                output.show(f"{'triggered' if handle.created else 'existing'} run "
                                   f"{handle.id}")
            return ExitCode.OK
        return await progress.follow_run(
            client, handle.id, timeout=timeout, fmt=fmt, details=run_details,
            headline=f"{'triggered' if handle.created else 'existing'} run {handle.id}")

    code = common.call(go)
    if code:
        raise typer.Exit(code)


@runs_app.command("list")
def runs_list(
    namespace: Namespace = None,
    task: TaskFilter = None,
    status: Annotated[str | None, typer.Option(
        help="Only these statuses, comma-separated (e.g. running,retrying).")] = None,
    limit: Limit = 20,
    every: All = False,
    watch: Watch = False,
    interval: Interval = 2.0,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Runs, newest first, with their age and duration."""

    async def fetch(client: WaypostClient) -> tuple[Any, RenderableType, str]:
        page = await common.fetch_runs(client, namespace=namespace, task=task, status=status,
                                       limit=limit, every=every)
        doc: dict[str, Any] = {"runs": page.runs, "total": page.total}
        remark = ""
        if page.total is not None and page.total > len(page.runs):
            remark = (f"showing {len(page.runs)} of {page.total} runs "
                      "(--limit N or --all for more)")
        return doc, run_table(page.runs, fmt), remark

    common.show_list(fetch, fmt, watch=watch, interval=interval)


def run_details(run: RunDocument) -> RenderableType:
    """A run as `runs show` prints it: fields, attempts, checkpoints, the last error."""
    fields = Text()
    rows: list[tuple[str, Any]] = [
        ("ID", run.get("id")), ("Task", f"{run.get('namespace')}/{run.get('task')}"),
        ("Status", run.get("status")), ("Attempt", f"{run.get('attempt')} of "
                                                   f"{run.get('maxAttempts')}"),
        ("Queue", run.get("queue")), ("Priority", run.get("priority")),
        ("Idempotency key", run.get("idempotencyKey")),
        ("Concurrency key", run.get("concurrencyKey")), ("Source", run.get("source")),
        ("TaskRun", run.get("taskrunName")), ("Replay of", run.get("replayOf")),
        ("Spec", f"{run.get('specChoice')} (Task generation {run.get('specGeneration')})"
         if run.get("specChoice") else None),
        ("Created", _when(run.get("createdAt"))), ("Started", _when(run.get("startedAt"))),
        ("Finished", _when(run.get("finishedAt"))),
        ("Duration", output.duration(run.get("startedAt"), run.get("finishedAt"))
         if run.get("startedAt") else None),
        ("Trace id", run.get("traceId")),
        ("Parent run", run.get("parentRunId")),
        ("Waiting for", waits_cli.describe_wait(run.get("waiting"))),
    ]
    for label, value in rows:
        if value is None:
            continue
        style = output.status_style(run) if label == "Status" else ""
        fields.append(f"{label + ':':<17}", style="bold")
        fields.append(str(value), style=style)
        fields.append("\n")
    if "result" in run and run.get("status") == "succeeded":
        fields.append(f"{'Result:':<17}", style="bold")
        fields.append(_clip(json.dumps(run.get("result"), ensure_ascii=False), 2000) + "\n")
    parts: list[RenderableType] = [fields]
    attempts = run.get("attempts") or []
    if attempts:
        parts += [Text("Attempts:", style="bold"), output.table(attempts, (
            Column("ATTEMPT", lambda a: a.get("attempt")),
            Column("STATUS", lambda a: a.get("status"), style=output.status_style),
            Column("DURATION", lambda a: output.duration(a.get("startedAt"),
                                                         a.get("finishedAt"))),
            Column("PEAK-MEMORY", lambda a: output.human_bytes(a.get("memoryBytes"))
                   if a.get("memoryBytes") else None),
            Column("WORKER", lambda a: a.get("worker")),
            Column("STARTED", lambda a: output.age(a.get("startedAt")) + " ago"),
            Column("ERROR", lambda a: _clip(_error_line(a.get("error")), 80)),
        ), wide=True), Text()]
    checkpoints = run.get("checkpoints") or []
    if checkpoints:
        parts += [Text("Checkpoints:", style="bold"), output.table(checkpoints, (
            Column("KEY", lambda c: c.get("key")),
            Column("ATTEMPT", lambda c: c.get("attempt")),
            Column("SIZE", lambda c: output.human_bytes(c.get("sizeBytes"))),
            Column("WRITTEN", lambda c: output.age(c.get("createdAt")) + " ago"),
        ), wide=True), Text()]
    record = run.get("replay")
    if record:
        text = (f"Replay of {record.get('replayOf')} from "
                f"{record.get('fromCheckpoint') or 'the start'} ({record.get('spec')} spec), "
                f"by {record.get('requestedBy')} {output.age(record.get('requestedAt'))} ago")
        if record.get("diff"):
            text += f"\n  changes: {json.dumps(record['diff'])}"
        parts += [Text(text), Text()]
    replays = run.get("replays") or []
    if replays:
        parts += [Text("Replays:", style="bold"), output.table(replays, (
            Column("RUN", lambda r: r.get("runId")),
            Column("FROM", lambda r: r.get("fromCheckpoint") or "the start"),
            Column("BY", lambda r: r.get("requestedBy")),
            Column("AGE", lambda r: output.age(r.get("requestedAt"))),
        ), wide=True), Text()]
    error = run.get("error")
    if error:
        parts += [Text("Last error:", style="bold red"), _error_block(error)]
    return Group(*parts)


def _when(value: Any) -> str | None:
    at = output.parse_time(value)
    if at is None:
        return None
    return f"{at.strftime('%Y-%m-%d %H:%M:%S')} UTC ({output.age(value)} ago)"


def _error_line(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    name = f"{error.get('name')}: " if error.get("name") else ""
    return f"[{error.get('type')}] {name}{error.get('message')}"


def _error_block(error: dict[str, Any]) -> Text:
    text = Text(f"  {_error_line(error)}\n")
    if error.get("exitCode") is not None:
        text.append(f"  exit code {error['exitCode']}\n")
    if error.get("retryable") is False:
        text.append("  not retryable\n")
    trace = str(error.get("traceback") or "").rstrip()
    if trace:
        lines = trace.splitlines()
        if len(lines) > 20:
            lines = ["  …", *lines[-20:]]
        text.append("\n".join(f"  {line}" for line in lines) + "\n", style="dim")
    return text


def _clip(value: str | None, width: int) -> str:
    if value is None:
        return "-"
    value = " ".join(value.split())
    return value if len(value) <= width else value[: width - 1] + "…"


@runs_app.command("show")
def runs_show(run_id: RunId, fmt: Output = OutputFormat.TABLE) -> None:
    """One run: its fields, attempts, checkpoints (keys and sizes) and last error."""

    async def go(client: WaypostClient) -> RunDocument:
        return await client.get_run(await common.resolve_run_id(client, run_id))

    run = common.call(go)
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document(run, fmt)
    else:
        output.show(run_details(run))


def show_changed(run: RunDocument, fmt: OutputFormat, line: str) -> None:
    """What a command that changed a run prints: a line, or the run document."""
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document(run, fmt)
    else:
        output.show(line)


@app.command()
def cancel(run_id: RunId, detach_children: Annotated[bool, typer.Option(
        "--detach-children", help="Let the run's active child runs go on (by default they "
        "are cancelled with it).")] = False, fmt: Output = OutputFormat.TABLE) -> None:
    """Cancel a run that has not ended (a running attempt is stopped), and its children."""

    async def go(client: WaypostClient) -> RunDocument:
        return await client.cancel(await common.resolve_run_id(client, run_id),
                                   detach_children=detach_children)

    run = common.call(go)
    show_changed(run, fmt, f"run {run['id']} is {run['status']}")


@app.command()
def bump(run_id: RunId, fmt: Output = OutputFormat.TABLE) -> None:
    """Move a queued run to the front of its queue."""

    async def go(client: WaypostClient) -> RunDocument:
        return await client.bump(await common.resolve_run_id(client, run_id))

    run = common.call(go)
    show_changed(run, fmt, f"run {run['id']} now has priority {run['priority']}")
