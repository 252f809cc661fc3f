"""`waypost logs`, `waypost replay` and `waypost bulk requeue|cancel|replay`."""

from __future__ import annotations

import inspect
from enum import StrEnum
from typing import Annotated, Any

import typer

from waypost.cli import common, output, progress, runs
from waypost.cli.app import (
    Namespace,
    Output,
    OutputFormat,
    RunId,
    SpecChoice,
    TaskFilter,
    Wait,
    WaitTimeout,
    app,
    bulk_app,
)
from waypost.cli.errors import ExitCode, UsageError
from waypost.sdk.client import UNSET, WaypostClient
from waypost.sdk.protocol import FailureType

#: Log lines asked for per request when printing a run's whole log.
LOG_PAGE = 1000


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


Spec = Annotated[SpecChoice, typer.Option(
    case_sensitive=False,
    help="current: the Task's spec as it is now; original: the spec the run was triggered "
         "with.")]


@app.command()
def logs(
    run_id: RunId,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines until the run ends (Ctrl-C stops).")
    ] = False,
    attempt: Annotated[int | None, typer.Option(min=1, help="Only this attempt.")] = None,
    level: Annotated[LogLevel | None, typer.Option(
        case_sensitive=False, help="Only lines at this level or above.")] = None,
    fmt: Annotated[OutputFormat, typer.Option(
        "--output", "-o", case_sensitive=False,
        help="table (one line each), wide (milliseconds and every field), json (one API "
             "entry per line: JSON Lines) or yaml (one document per entry).")
    ] = OutputFormat.TABLE,
) -> None:
    """Log lines of a run, every attempt, oldest first: ctx.log, prints and tracebacks."""
    wanted = level.value if level else None
    lines = output.Lines()

    def emit(entry: dict[str, Any]) -> None:
        if fmt is OutputFormat.JSON:
            lines(output.compact_json(entry))
        elif fmt is OutputFormat.YAML:
            lines("---\n" + output.document(entry, fmt))
        else:
            lines(progress.log_line(entry, wide=fmt is OutputFormat.WIDE))

    async def go(client: WaypostClient) -> None:
        full_id = await common.resolve_run_id(client, run_id)
        if follow:
            async for entry in client.follow_logs(full_id, attempt=attempt, level=wanted):
                emit(entry)
            return
        cursor: str | None = None
        while True:
            entries, cursor = await client.logs(full_id, attempt=attempt, level=wanted,
                                                cursor=cursor, limit=LOG_PAGE)
            for entry in entries:
                emit(entry)
            if len(entries) < LOG_PAGE:
                return

    common.call(go)


def _checkpoint_edit(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--set-checkpoint wants KEY=JSON or KEY=@file.json, got {text!r}")
    return key, common.payload(value)


@app.command()
def replay(
    run_id: RunId,
    from_checkpoint: Annotated[str | None, typer.Option(
        "--from", metavar="KEY",
        help="Resume right after this checkpoint (default: from the start).")] = None,
    payload: Annotated[str | None, typer.Option(
        help="New payload: JSON, or @file.json (default: the original run's).")] = None,
    set_checkpoint: Annotated[list[str] | None, typer.Option(
        "--set-checkpoint", metavar="KEY=JSON",
        help="Replace a copied checkpoint's data (JSON or @file.json); repeatable.")] = None,
    spec: Spec = SpecChoice.CURRENT,
    wait: Wait = False,
    timeout: WaitTimeout = 300.0,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Run a finished run again from one of its checkpoints, with edited input: a new run
    linked to the original (both show the replay record)."""
    edits = dict(_checkpoint_edit(t) for t in set_checkpoint or [])
    body = UNSET if payload is None else common.payload(payload)
    where = f"after checkpoint {from_checkpoint}" if from_checkpoint else "from the start"

    async def go(client: WaypostClient) -> int:
        original = await common.resolve_run_id(client, run_id)
        run = await client.replay(original, from_checkpoint=from_checkpoint, payload=body,
                                  checkpoints=edits, spec=spec.value)
        headline = f"replay run {run['id']} of {original} ({where})"
        if wait:
            return await progress.follow_run(client, str(run["id"]), headline=headline,
                                             timeout=timeout, fmt=fmt, details=runs.run_details)
        runs.show_changed(run, fmt, headline)
        return ExitCode.OK

    code = common.call(go)
    if code:
        raise typer.Exit(code)


Status = Annotated[str | None, typer.Option(
    help="Only these statuses, comma-separated (e.g. failed,dead_lettered).")]
Since = Annotated[str | None, typer.Option(
    help="Only runs created at or after this time (ISO 8601 with a timezone, e.g. "
         "2026-01-31T00:00:00Z).")]
Until = Annotated[str | None, typer.Option(
    help="Only runs created before this time (ISO 8601 with a timezone).")]
ErrorType = Annotated[FailureType | None, typer.Option(
    case_sensitive=False, help="Only runs whose last error is of this type.")]
DeadLettered = Annotated[bool, typer.Option("--dead-lettered", help="Only dead-lettered runs.")]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Only count the runs it would take; change nothing.")]
BatchSize = Annotated[int, typer.Option(min=1, max=1000, help="Runs per request.")]
FromCheckpoint = Annotated[str | None, typer.Option(
    "--from", metavar="KEY", help="Resume each replay right after this checkpoint.")]


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


# The options of every bulk action, in --help order; replay adds its own.
_FILTERS = [
    _option("namespace", Namespace, None), _option("task", TaskFilter, None),
    _option("status", Status, None), _option("since", Since, None),
    _option("until", Until, None), _option("error_type", ErrorType, None),
    _option("dead_lettered", DeadLettered, False), _option("dry_run", DryRun, False),
    _option("batch_size", BatchSize, 100),
]
_REPLAY_OPTIONS = [_option("from_checkpoint", FromCheckpoint, None),
                   _option("spec", Spec, SpecChoice.CURRENT)]


def _bulk(action: str, fmt: OutputFormat, *, namespace: str | None, task: str | None,
          status: str | None, since: str | None, until: str | None,
          error_type: FailureType | None, dead_lettered: bool, dry_run: bool,
          batch_size: int, from_checkpoint: str | None = None,
          spec: SpecChoice = SpecChoice.CURRENT) -> None:
    """Run ``action`` batch by batch, printing progress; JSON/YAML print one summary."""
    structured = fmt in (OutputFormat.JSON, OutputFormat.YAML)
    say = output.Lines(stderr=structured)
    summary: dict[str, Any] = {"action": action, "dryRun": dry_run, "matched": None,
                               "changed": 0, "skipped": 0, "runIds": []}
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None

    async def go(client: WaypostClient) -> None:
        async for batch in client.bulk(
            action, namespace=namespace, task=task, status=statuses, since=since, until=until,
            error_type=error_type.value if error_type else None, dead_lettered=dead_lettered,
            dry_run=dry_run, batch_size=batch_size, from_checkpoint=from_checkpoint,
            spec=spec.value,
        ):
            if summary["matched"] is None:
                summary["matched"] = batch["matched"]
            if dry_run:
                say(f"would {action} {batch['matched']} runs (dry run, nothing changed)")
                return
            summary["changed"] += batch["changed"]
            summary["skipped"] += batch["skipped"]
            summary["runIds"] += batch.get("runIds") or []
            if not batch["processed"]:  # the last call found nothing left
                continue
            say(f"{action}: {summary['changed']}/{summary['matched']} done, "
                f"{summary['skipped']} skipped")
            if fmt is OutputFormat.WIDE and batch.get("runIds"):
                say("  " + " ".join(batch["runIds"]))
        say(f"{action}: finished, {summary['changed']} changed, {summary['skipped']} skipped")

    common.call(go)
    if structured:
        output.emit_document(summary, fmt)


def _bulk_command(action: str, summary: str, extra: list[inspect.Parameter]) -> None:
    """Register `waypost bulk ACTION` with the shared filter options plus ``extra``.

    The options are declared once (``_FILTERS``) and given to Typer as the command's
    signature, so the three actions cannot drift apart.
    """

    def command(fmt: OutputFormat = OutputFormat.TABLE, **options: Any) -> None:
        _bulk(action, fmt, **options)

    params = [*_FILTERS, *extra, _option("fmt", Output, OutputFormat.TABLE)]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = summary
    bulk_app.command(action)(command)


_bulk_command("requeue", "Requeue the matching dead-lettered and failed runs; each resumes "
                         "after its last checkpoint.", [_option("spec", Spec, SpecChoice.CURRENT)])
_bulk_command("cancel", "Cancel the matching queued, running and retrying runs.", [])
_bulk_command("replay", "Replay the matching finished runs with their own payloads (new "
                        "runs; a run this action already replayed is skipped).",
              _REPLAY_OPTIONS)
