"""`waypost trigger --batch`, `runs reschedule|children`, `tokens create|complete|list|show`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from waypost.cli import common, output
from waypost.cli.app import Interval, Output, OutputFormat, RunId, Watch, app, runs_app
from waypost.cli.errors import UsageError
from waypost.cli.output import Column
from waypost.sdk import durations
from waypost.sdk.client import BatchRun, RunDocument, WaypostClient

tokens_app = typer.Typer(help="Wait tokens: runs wait for them, people and webhooks "
                              "complete them.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")

MAX_BATCH = 1000


def parse_time_option(flag: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag}: {value!r} is not an ISO-8601 time") from None
    if at.tzinfo is None:
        raise UsageError(f"{flag}: {value!r} needs a timezone (e.g. Z or +02:00)")
    return at


def parse_duration_option(flag: str, value: str | None) -> float | None:
    """Seconds of a duration flag (``90``, ``10m``, ``1h30m``), or a usage error."""
    if value is None:
        return None
    try:
        return durations.parse_duration(value, flag)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def describe_wait(waiting: Any) -> str | None:
    """One line for a run's ``waiting`` document."""
    if not isinstance(waiting, dict):
        return None
    kind = waiting.get("kind")
    parts = [str(kind)]
    if waiting.get("stepKey"):
        parts.append(f"at {waiting['stepKey']!r}")
    if waiting.get("tokenId"):
        parts.append(f"token {waiting['tokenId']}")
    if waiting.get("children") is not None:
        parts.append(f"{waiting.get('childrenActive')} of {len(waiting['children'])} "
                     "children active")
    if waiting.get("until"):
        parts.append(f"until {waiting['until']} ({output.until(waiting['until'])})")
    return ", ".join(parts)


def read_items(path: Path) -> list[dict[str, Any]]:
    """The items of a JSON-lines file: one object per line, blank lines skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read --batch file {str(path)!r}: {exc.strerror}") from None
    items: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise UsageError(f"{path}:{number}: expected an object like "
                             '{"payload": ..., "idempotencyKey": ...}')
        items.append(item)
    if not items:
        raise UsageError(f"{path}: no items")
    if len(items) > MAX_BATCH:
        raise UsageError(f"{path}: {len(items)} items, over the limit of {MAX_BATCH} per batch")
    return items


def trigger_batch(task: str, path: Path, namespace: str, fmt: OutputFormat) -> None:
    items = read_items(path)

    async def go(client: WaypostClient) -> list[BatchRun]:
        return await client.batch_trigger(task, items, namespace=namespace)

    made = common.call(go)
    rows = [{"index": i, "id": r.id, "new": r.new, "status": r.status}
            for i, r in enumerate(made)]
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document({"runs": rows, "created": sum(r.new for r in made)}, fmt)
        return
    if fmt is OutputFormat.WIDE:
        output.show(output.table(rows, (
            Column("ITEM", lambda r: r["index"]), Column("ID", lambda r: r["id"]),
            Column("NEW", lambda r: "yes" if r["new"] else "no"),
            Column("STATUS", lambda r: r["status"]),
        ), wide=True))
    created = sum(r.new for r in made)
    output.show(f"triggered {created} new runs of {task} ({len(made) - created} existing "
                "for their idempotency keys)")


@runs_app.command("reschedule")
def runs_reschedule(
    run_id: RunId,
    delay: Annotated[str | None, typer.Option(
        help="Start this long from now: seconds or text like 10m (0: now).")] = None,
    run_at: Annotated[str | None, typer.Option(
        help="Start at this ISO-8601 time (with a timezone).")] = None,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Give a delayed run another start time."""
    if (delay is None) == (run_at is None):
        raise UsageError("give exactly one of --delay and --run-at")
    when = parse_time_option("--run-at", run_at)
    seconds = parse_duration_option("--delay", delay)

    async def go(client: WaypostClient) -> RunDocument:
        return await client.reschedule(await common.resolve_run_id(client, run_id),
                                       delay=seconds, run_at=when)

    run = common.call(go)
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document(run, fmt)
    else:
        output.show(f"run {run['id']} is {run['status']}: "
                    f"{describe_wait(run.get('waiting')) or 'starting now'}")


@runs_app.command("children")
def runs_children(run_id: RunId, fmt: Output = OutputFormat.TABLE) -> None:
    """The child runs a run started (ctx.trigger_and_wait), oldest first."""
    from waypost.cli import runs as runs_cli

    async def go(client: WaypostClient) -> list[RunDocument]:
        return await client.children(await common.resolve_run_id(client, run_id))

    found = common.call(go)
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document({"runs": found}, fmt)
    else:
        output.show(runs_cli.run_table(found, fmt))


TOKEN_COLUMNS = (
    Column("ID", lambda t: t.get("id")),
    Column("NAMESPACE", lambda t: t.get("namespace")),
    Column("STATUS", lambda t: t.get("status")),
    Column("RUN", lambda t: output.short_id(t.get("runId")) if t.get("runId") else "-"),
    Column("WAITING", lambda t: len(t.get("waitingRuns") or [])),
    Column("TIMEOUT", lambda t: output.until(t.get("timeoutAt")) if t.get("timeoutAt") else "-"),
    Column("AGE", lambda t: output.age(t.get("createdAt"))),
)


def _data(text: str | None) -> Any:
    return None if text is None else common.payload(text)


@tokens_app.command("complete")
def tokens_complete(
    token_id: Annotated[str, typer.Argument(help="The token's id.", show_default=False)],
    data: Annotated[str | None, typer.Argument(
        help="JSON the waiting runs receive, or @file.json.")] = None,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Complete a wait token; the runs waiting on it resume with DATA. A second
    completion is refused (exit code 1) and changes nothing."""
    value = _data(data)

    async def go(client: WaypostClient) -> dict[str, Any]:
        return await client.complete_token(token_id, value)

    token = common.call(go)
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document(token, fmt)
    else:
        output.show(f"token {token['id']} completed; "
                    f"{len(token.get('waitingRuns') or [])} runs resume")


@tokens_app.command("create")
def tokens_create(
    namespace: Annotated[str, typer.Option(help="Namespace of the token.")] = "default",
    timeout: Annotated[str | None, typer.Option(
        help="Time out after this long: seconds or text like 1h (default: never).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Creating again with the same key returns the same token.")] = None,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Create a wait token; prints its id and its webhook callback URL."""
    seconds = parse_duration_option("--timeout", timeout)

    async def go(client: WaypostClient) -> dict[str, Any]:
        return await client.create_token(namespace=namespace, timeout=seconds,
                                         idempotency_key=idempotency_key)

    token = common.call(go)
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document(token, fmt)
    else:
        output.show(f"token {token['id']}\ncallback {token.get('url')}")


@tokens_app.command("list")
def tokens_list(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only tokens this run created.")]
    = None,
    status: Annotated[str | None, typer.Option(
        help="Only pending, completed or timed_out tokens.")] = None,
    watch: Watch = False,
    interval: Interval = 2.0,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Wait tokens, newest first."""

    async def fetch(client: WaypostClient) -> tuple[Any, RenderableType, str]:
        run_id = None if run is None else await common.resolve_run_id(client, run)
        found = await client.list_tokens(namespace=namespace, run_id=run_id, status=status)
        grid = output.table(found, TOKEN_COLUMNS, wide=fmt is OutputFormat.WIDE,
                            empty="No tokens found.")
        return {"tokens": found}, grid, ""

    common.show_list(fetch, fmt, watch=watch, interval=interval)


@tokens_app.command("show")
def tokens_show(
    token_id: Annotated[str, typer.Argument(help="The token's id.", show_default=False)],
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """One wait token: status, data, timeout, the runs waiting on it."""

    async def go(client: WaypostClient) -> dict[str, Any]:
        return await client.get_token(token_id)

    token = common.call(go)
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document(token, fmt)
    else:
        output.emit_document(token, OutputFormat.YAML)
