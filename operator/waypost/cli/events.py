"""`waypost logs`, `waypost replay`, `waypost bulk`: their arguments are parsed and run by
the argparse implementation in ``waypost.cli.classic`` (`waypost logs --help` shows them)."""

from __future__ import annotations

import typer

from waypost.cli import classic
from waypost.cli.app import app

_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True,
            "help_option_names": []}


def _run(name: str, ctx: typer.Context) -> None:
    args = classic.build_parser().parse_args([name, *ctx.args])
    code = int(args.fn(args))
    if code:
        raise typer.Exit(code)


@app.command(context_settings=_FORWARD, add_help_option=False)
def logs(ctx: typer.Context) -> None:
    """Log lines of a run (every attempt, oldest first); -f follows them."""
    _run("logs", ctx)


@app.command(context_settings=_FORWARD, add_help_option=False)
def replay(ctx: typer.Context) -> None:
    """Run a finished run again from one of its checkpoints, with edited input."""
    _run("replay", ctx)


@app.command(context_settings=_FORWARD, add_help_option=False)
def bulk(ctx: typer.Context) -> None:
    """Requeue, cancel or replay every run a filter matches, in batches."""
    _run("bulk", ctx)
