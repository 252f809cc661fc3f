"""`waypost insights`: failure patterns per task, and memory sizing hints."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType

from waypost.cli import common, output
from waypost.cli.app import Interval, Namespace, Output, OutputFormat, TaskFilter, Watch, app
from waypost.cli.output import Column
from waypost.sdk.client import WaypostClient

MIB = 1024 * 1024


def _mib(n: Any) -> str | None:
    return f"{int(n) // MIB}Mi" if isinstance(n, int) else None


INSIGHT_COLUMNS = (
    Column("NAMESPACE", lambda i: i.get("namespace"), wide_only=True),
    Column("TASK", lambda i: i.get("task")),
    Column("PATTERN", lambda i: i.get("reason")),
    Column("SINCE", lambda i: output.age(i.get("since"))),
    Column("SUMMARY", lambda i: i.get("summary")),
    Column("EVIDENCE", lambda i: ", ".join(i.get("evidence") or []), wide_only=True),
)

SIZING_COLUMNS = (
    Column("NAMESPACE", lambda s: s.get("namespace"), wide_only=True),
    Column("TASK", lambda s: s.get("task")),
    Column("ATTEMPTS", lambda s: s.get("attempts")),
    Column("LIMIT", lambda s: _mib(s.get("limitBytes"))),
    Column("P99", lambda s: _mib(s.get("p99Bytes"))),
    Column("MAX", lambda s: _mib(s.get("maxBytes"))),
    Column("SUGGESTED", lambda s: _mib(s.get("suggestedLimitBytes"))),
    Column("STEPS (P99)", lambda s: ", ".join(
        f"{st['step']} {_mib(st['p99Bytes'])}" for st in s.get("steps") or []),
        wide_only=True),
)


@app.command()
def insights(
    namespace: Namespace = None,
    task: TaskFilter = None,
    watch: Watch = False,
    interval: Interval = 5.0,
    fmt: Output = OutputFormat.TABLE,
) -> None:
    """Failure patterns that hold per task (timeout loops, retry storms, checkpoint
    gaps, memory growth) and each task's memory sizing. Nothing is done about them:
    they are for you to decide."""

    async def fetch(client: WaypostClient) -> tuple[Any, RenderableType, str]:
        found = await client.insights(namespace=namespace, task=task)
        wide = fmt is OutputFormat.WIDE
        items = output.table(found["items"], INSIGHT_COLUMNS, wide=wide,
                             empty="No failure pattern holds.")
        sizing = output.table(found.get("sizing") or [], SIZING_COLUMNS, wide=wide,
                              empty="No memory measured yet.")
        return found, Group(items, "", "Memory (peaks in the window):", sizing), ""

    common.show_list(fetch, fmt, watch=watch, interval=interval)
