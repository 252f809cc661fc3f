"""What client commands share: a client for --url/--token, run ids given by their
first characters, paged lists and ``--watch``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import RenderableType
from rich.live import Live

from waypost.cli import output
from waypost.cli.app import OutputFormat, state
from waypost.cli.errors import CliError, ExitCode, UsageError
from waypost.sdk.client import RunDocument, RunPage, WaypostClient
from waypost.sdk.errors import CoordinatorUnavailable, WaypostAPIError

T = TypeVar("T")

#: Page size when --all walks every page.
ALL_PAGE = 500
#: Candidates listed when a short id matches several runs.
AMBIGUOUS_SHOWN = 10


def call(fn: Callable[[WaypostClient], Awaitable[T]]) -> T:
    """Run ``fn`` with a client for the global options; API failures become one line."""

    async def go() -> T:
        async with WaypostClient(state.url, state.token) as client:
            try:
                return await fn(client)
            except WaypostAPIError as exc:
                raise CliError(f"{exc.message} ({exc.status} {exc.code})") from exc
            except CoordinatorUnavailable as exc:
                raise CliError(
                    f"cannot reach the API at {state.url}: is `waypost dev` or the operator "
                    f"running there? (--url or WAYPOST_URL) [{exc}]") from exc

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        raise CliError("interrupted", ExitCode.INTERRUPTED) from None


def payload(text: str) -> Any:
    """A JSON payload given inline or as ``@file.json``."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read PAYLOAD file {text[1:]!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"PAYLOAD is not valid JSON ({exc}): {text[:80]!r}") from None


async def resolve_run_id(client: WaypostClient, given: str) -> str:
    """The full id of the one run whose id starts with ``given``.

    A full id is taken as it is. A prefix matching several runs is refused with
    the candidates, so a command never acts on a run the user did not mean.
    """
    text = given.strip().lower()
    with contextlib.suppress(ValueError):
        return str(uuid.UUID(text))
    digits = text.replace("-", "")
    if not digits or len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
        raise UsageError(f"{given!r} is not a run id (a UUID, or its first hex digits)")
    page = await client.runs_page(id_prefix=text, limit=AMBIGUOUS_SHOWN, count=True)
    if not page.runs:
        raise CliError(f"no run id starts with {given!r}")
    if len(page.runs) == 1:
        return str(page.runs[0]["id"])
    total = page.total if page.total is not None else len(page.runs)
    lines = [f"  {r['id']}  {r.get('task')}  {r.get('status')}  {output.age(r.get('createdAt'))}"
             for r in page.runs]
    more = f"\n  … and {total - len(page.runs)} more" if total > len(page.runs) else ""
    raise UsageError(f"{given!r} is ambiguous: {total} run ids start with it; give more "
                     "characters:\n" + "\n".join(lines) + more)


async def fetch_runs(client: WaypostClient, *, namespace: str | None, task: str | None,
                     status: str | None, limit: int, every: bool) -> RunPage:
    """The newest ``limit`` runs with their total, or all of them."""
    if not every:
        return await client.runs_page(namespace=namespace, task=task, status=status,
                                      limit=limit, count=True)
    found: list[RunDocument] = []
    cursor: int | None = None
    while True:
        page = await client.runs_page(namespace=namespace, task=task, status=status,
                                      limit=ALL_PAGE, cursor=cursor)
        found += page.runs
        cursor = page.next_cursor
        if cursor is None or not page.runs:
            return RunPage(runs=found, next_cursor=None, total=len(found))


def paging_note(shown: int, total: int | None, what: str = "runs") -> None:
    if total is not None and total > shown:
        output.note(f"showing {shown} of {total} {what} (--limit N or --all for more)")


def show_list(fetch: Callable[[WaypostClient], Awaitable[tuple[Any, RenderableType, str]]],
              fmt: OutputFormat, *, watch: bool, interval: float) -> None:
    """Print what ``fetch`` returns once, or keep it refreshed with ``--watch``.

    ``fetch`` returns (API document, table, remark for stderr).
    """

    def print_once(doc: Any, grid: RenderableType, remark: str) -> None:
        if fmt in (OutputFormat.JSON, OutputFormat.YAML):
            output.emit_document(doc, fmt)
        else:
            output.show(grid)
            if remark:
                output.note(remark)

    async def once(client: WaypostClient) -> None:
        print_once(*await fetch(client))

    async def watching(client: WaypostClient) -> None:
        console = output.out()
        if console.is_terminal and fmt in (OutputFormat.TABLE, OutputFormat.WIDE):
            with Live(console=console, auto_refresh=False) as live:
                while True:
                    _, grid, remark = await fetch(client)
                    live.update(grid, refresh=True)
                    await asyncio.sleep(interval)
        # Not a terminal: print again only what changed, as `kubectl get -w` does.
        last: Any = None
        while True:
            doc, grid, remark = await fetch(client)
            if doc != last:
                if last is not None and fmt in (OutputFormat.TABLE, OutputFormat.WIDE):
                    output.show()
                print_once(doc, grid, remark)
                last = doc
            await asyncio.sleep(interval)

    if not watch:
        call(once)
        return
    try:
        call(watching)
    except CliError as exc:
        if exc.code != ExitCode.INTERRUPTED:  # Ctrl-C is how a watch ends: exit 0
            raise
