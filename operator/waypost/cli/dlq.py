"""`waypost dlq list|requeue`: runs whose retries ran out."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import RenderableType

from waypost.cli import common, output, runs
from waypost.cli.app import (
    All,
    Interval,
    Limit,
    Namespace,
    Output,
    OutputFormat,
    RunId,
    SpecChoice,
    TaskFilter,
    Watch,
    dlq_app,
)
from waypost.cli.output import Column
from waypost.sdk.client import RunDocument, WaypostClient

DLQ_COLUMNS = (
    Column("ID", lambda r: output.short_id(r.get("id"))),
    Column("RUN", lambda r: r.get("id"), wide_only=True),
    Column("NAMESPACE", lambda r: r.get("namespace"), wide_only=True),
    Column("TASK", lambda r: r.get("task")),
    Column("ATTEMPTS", lambda r: r.get("attempt")),
    Column("DEAD-FOR", lambda r: output.age(r.get("finishedAt"))),
    Column("ERROR", lambda r: _error(r, 60)),
    Column("ERROR", lambda r: _error(r, 400), wide_only=True),
)


def _error(run: RunDocument, width: int) -> str:
    error = run.get("error") or {}
    text = " ".join(str(error.get("message", "")).split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dlq_app.command("list")
def dlq_list(
    namespace: Namespace = None,
    task: TaskFilter = None,
    limit: Limit = 20,
    every: All = False,
    watch: Watch = False,
    interval: Interval = 2.0,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Dead-lettered runs, newest first, with their last error."""
    wide = fmt is OutputFormat.WIDE
    columns = [c for c in DLQ_COLUMNS
               if not (wide and c.header in ("ID", "ERROR") and not c.wide_only)]

    async def fetch(client: WaypostClient) -> tuple[Any, RenderableType, str]:
        page = await common.fetch_runs(client, namespace=namespace, task=task,
                                       status="dead_lettered", limit=limit, every=every)
        remark = ""
        if page.total is not None and page.total > len(page.runs):
            remark = (f"showing {len(page.runs)} of {page.total} dead-lettered runs "
                      "(--limit N or --all for more)")
        table = output.table(page.runs, columns, wide=wide, empty="No dead-lettered runs.")
        return {"runs": page.runs, "total": page.total}, table, remark

    common.show_list(fetch, fmt, watch=watch, interval=interval)


@dlq_app.command("requeue")
def dlq_requeue(
    run_id: RunId,
    spec: Annotated[SpecChoice, typer.Option(
        case_sensitive=False,
        help="current: the Task's spec as it is now (a fixed image, more memory); "
             "original: the spec stored when the run was triggered.")] = SpecChoice.CURRENT,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Run a dead-lettered run again with a fresh retry budget; it resumes after its last
    checkpoint."""

    async def go(client: WaypostClient) -> RunDocument:
        return await client.requeue(await common.resolve_run_id(client, run_id),
                                    spec=spec.value)

    run = common.call(go)
    runs.show_changed(run, fmt, f"run {run['id']} requeued ({run['status']}) with the "
                      f"{spec.value} spec (Task generation {run.get('specGeneration')})")
