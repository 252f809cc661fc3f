"""The Typer tree of `waypost` and its global options.

Command modules add their commands to ``app`` or to one of the groups here;
``waypost.cli.main`` imports them all and runs the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from typing import Annotated

import typer

DEFAULT_URL = "http://127.0.0.1:8080"

HELP = """Durable task execution for Kubernetes.

Client commands talk to the coordinator API at --url (WAYPOST_URL, default
http://127.0.0.1:8080) with --token (WAYPOST_API_TOKEN) when it asks for one.

Exit codes: 0 ok, 1 error, 2 usage, 3 the run did not succeed (--wait),
130 interrupted (Ctrl-C), 141 the reader of a pipe went away (| head)."""

app = typer.Typer(
    name="waypost", help=HELP, no_args_is_help=True, rich_markup_mode=None,
    pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue: runs whose retries ran out.",
                      no_args_is_help=True)
schedules_app = typer.Typer(help="Cron schedules of tasks.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(dlq_app, name="dlq")
bulk_app = typer.Typer(
    help="Requeue, cancel or replay every run a filter matches, in batches (running it again "
         "changes nothing more).", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
app.add_typer(bulk_app, name="bulk")


class OutputFormat(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


class SpecChoice(StrEnum):
    """Which Task spec a requeued or replayed run gets."""

    CURRENT = "current"
    ORIGINAL = "original"


@dataclass
class State:
    """The global options, shared by every command of one invocation."""

    url: str = DEFAULT_URL
    token: str | None = None
    debug: bool = False


state = State()


def version() -> str:
    try:
        return metadata.version("waypost")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"waypost {version()}")
        raise typer.Exit()


@app.callback()
def root(
    url: Annotated[str, typer.Option(
        "--url", envvar="WAYPOST_URL", show_envvar=True,
        help="Coordinator API of `waypost dev` or of the operator.")] = DEFAULT_URL,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="WAYPOST_API_TOKEN", show_envvar=True,
        help="Bearer token for the API, when the coordinator has one set.")] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="WAYPOST_DEBUG",
        help="Show tracebacks of errors (they are one-line messages otherwise).")] = False,
    _version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    state.url, state.token, state.debug = url, token or None, debug


# Options several commands share, declared once so their help reads the same.
Output = Annotated[OutputFormat, typer.Option(
    "--output", "-o", case_sensitive=False,
    help="table, wide (more columns, full ids), json or yaml (the API's documents).")]
Namespace = Annotated[str | None, typer.Option(help="Only this namespace.")]
TaskFilter = Annotated[str | None, typer.Option("--task", help="Only this task id.")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=1000,
                                    help="Show at most this many (newest first).")]
All = Annotated[bool, typer.Option("--all", help="Show every match, page by page.")]
Watch = Annotated[bool, typer.Option("--watch", "-w",
                                     help="Keep the list on screen and refresh it (Ctrl-C ends).")]
Interval = Annotated[float, typer.Option("--interval", min=0.2,
                                         help="Seconds between refreshes with --watch.")]
Wait = Annotated[bool, typer.Option(
    "--wait", help="Follow the run until it ends; exit code 3 unless it succeeded.")]
WaitTimeout = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="With --wait: give up waiting after this many seconds (the run "
                               "goes on; exit code 1).")]
RunId = Annotated[str, typer.Argument(
    help="A run id, or enough of its first characters to be unique.", show_default=False)]
