"""`waypost schedules list|trigger`: cron schedules of tasks."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import RenderableType

from waypost.cli import common, output
from waypost.cli.app import (
    Interval,
    Namespace,
    Output,
    OutputFormat,
    TaskFilter,
    Watch,
    schedules_app,
)
from waypost.cli.output import Column
from waypost.sdk.client import RunDocument, WaypostClient

SCHEDULE_COLUMNS = (
    Column("NAMESPACE", lambda s: s.get("namespace"), wide_only=True),
    Column("TASK", lambda s: s.get("task")),
    Column("NAME", lambda s: s.get("name")),
    Column("CRON", lambda s: s.get("cron")),
    Column("TIMEZONE", lambda s: s.get("timezone")),
    Column("NEXT", lambda s: "suspended" if s.get("suspended") else output.until(
        s.get("nextFireAt"))),
    Column("NEXT-AT", lambda s: s.get("nextFireAt"), wide_only=True),
    Column("LAST", lambda s: output.until(s.get("lastFireAt"))),
    Column("ERROR", lambda s: (s.get("lastError") or "")[:60] or None),
)


@schedules_app.command("list")
def schedules_list(
    namespace: Namespace = None,
    task: TaskFilter = None,
    watch: Watch = False,
    interval: Interval = 2.0,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Schedules with when they fire next and last fired."""

    async def fetch(client: WaypostClient) -> tuple[Any, RenderableType, str]:
        found = await client.list_schedules(namespace=namespace, task=task)
        table = output.table(found, SCHEDULE_COLUMNS, wide=fmt is OutputFormat.WIDE,
                             empty="No schedules.")
        return {"schedules": found}, table, ""

    common.show_list(fetch, fmt, watch=watch, interval=interval)


@schedules_app.command("trigger")
def schedules_trigger(
    task: Annotated[str, typer.Argument(help="The task id.", show_default=False)],
    name: Annotated[str, typer.Argument(help="The schedule's name.", show_default=False)],
    namespace: Annotated[str, typer.Option(help="Namespace of the task.")] = "default",
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Fire schedule NAME of TASK once, now (its next tick is kept)."""

    async def go(client: WaypostClient) -> RunDocument:
        return await client.trigger_schedule(task, name, namespace=namespace)

    run = common.call(go)
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        output.emit_document(run, fmt)
    else:
        output.show(f"triggered run {run['id']} ({run.get('idempotencyKey')})")
