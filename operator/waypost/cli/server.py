"""Commands that run waypost itself: `dev`, `operator`, `migrate`, and `crds`."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from waypost.cli import output
from waypost.cli.app import app
from waypost.cli.errors import CliError, UsageError

DATABASE_URL_HELP = ("set WAYPOST_DATABASE_URL to a Postgres DSN, e.g. "
                     "postgresql://user:password@host:5432/waypost")


def _database_url() -> str:
    dsn = os.environ.get("WAYPOST_DATABASE_URL")
    if not dsn:
        raise UsageError(f"no database: {DATABASE_URL_HELP}")
    return dsn


def check_port_free(host: str, port: int) -> None:
    """Fail early, before Postgres starts, when another process holds the port."""
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(f"port {port} on {host} is already in use (another `waypost "
                               "dev`?); choose another with --port") from None
            raise


@app.command()
def dev(
    targets: Annotated[list[str] | None, typer.Argument(
        metavar="[MODULE_OR_PATH]...", show_default=False,
        help="Task modules to run: a module name (myapp.tasks) or a file (./tasks.py). "
             "Default: [tool.waypost] tasks in pyproject.toml.")] = None,
    examples: Annotated[bool, typer.Option(
        "--examples", help="Run the bundled examples and check how each ended (from a "
                           "checkout of waypost).")] = False,
    once: Annotated[bool, typer.Option(
        "--once", help="Fire each schedule of the tasks once (with --examples: run the "
                       "examples), print a summary and exit: 0 if every run succeeded.")] = False,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, show_default=False,
        help="Port of the API and dashboard (0: any free port; default "
             "WAYPOST_COORDINATOR_PORT, else 8080).")] = None,
    state_dir: Annotated[Path, typer.Option(
        help="Where dev mode keeps its Postgres data and the runs' output.")] = Path(".waypost"),
    reload: Annotated[bool, typer.Option(
        "--reload/--no-reload", help="Load the tasks again when a .py file under their "
                                     "folders changes.")] = True,
) -> None:
    """Run waypost on this machine with your tasks: Postgres (embedded unless
    WAYPOST_DATABASE_URL is set), the engine, scheduler, API and dashboard; each run's
    status and logs are printed as they happen."""
    try:
        from waypost import devmode  # the server side: needs the dev extra
    except ImportError as exc:
        raise CliError(f"`waypost dev` needs the dev extra ({exc.name} is missing): "
                       "pip install 'waypost[dev]'") from None

    check_port_free("127.0.0.1", port if port is not None
                    else int(os.environ.get("WAYPOST_COORDINATOR_PORT") or 8080))
    try:
        code = devmode.run_dev(targets=targets or (), examples=examples, once=once, port=port,
                               state_dir=state_dir, reload=reload)
    except devmode.DevUsageError as exc:
        raise UsageError(str(exc)) from None
    except devmode.DiscoveryError as exc:
        details = f"\n{exc.details.rstrip()}" if exc.details else ""
        raise CliError(f"{exc}{details}") from None
    if code:
        raise typer.Exit(code)


@app.command()
def operator() -> None:
    """Run the Kubernetes operator: every replica serves the coordinator API; the Lease
    holder runs the controller, dispatcher and scheduler. Configured by WAYPOST_* variables."""
    _database_url()
    from waypost import logformat
    from waypost.controller import operator as controller  # needs the operator extra
    from waypost.model.settings import Settings

    logformat.configure(os.environ.get("WAYPOST_LOG_LEVEL", "INFO"))
    settings = Settings.from_env(coordinator_host="0.0.0.0")
    code = asyncio.run(controller.run_operator(settings, controller.OperatorOptions.from_env()))
    if code:
        raise typer.Exit(code)


@app.command()
def crds() -> None:
    """Print the CustomResourceDefinitions (Task, TaskRun) as YAML."""
    import yaml

    from waypost.model import crd

    output.out().file.write(
        yaml.safe_dump_all([crd.task_crd(), crd.taskrun_crd()], sort_keys=False))


@app.command()
def migrate() -> None:
    """Apply the schema migrations to the database at WAYPOST_DATABASE_URL (through
    WAYPOST_DATABASE_SESSION_URL when set: the migration lock needs a session)."""
    from waypost.store import migrate as store_migrate

    dsn = os.environ.get("WAYPOST_DATABASE_SESSION_URL") or _database_url()
    applied = asyncio.run(store_migrate.apply_dsn(dsn))
    output.show(f"applied migrations: {applied or 'none (up to date)'}")
