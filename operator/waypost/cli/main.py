"""Entry point of `waypost`: runs the Typer tree and turns every failure into a one-line
message and a documented exit code (``--debug`` shows the traceback)."""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Sequence

import typer

# Each module adds its commands to the tree when imported.
from waypost.cli import (  # noqa: F401
    dlq,
    events,
    insights,
    manifests,
    runs,
    schedules,
    server,
    waits,
)
from waypost.cli.app import app, state
from waypost.cli.errors import CliError, ExitCode

_DEBUG_VALUES = ("1", "true", "yes")


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"waypost: {message}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    # The reader is gone: later writes (and the interpreter's final flush) must not fail.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _pipe_closed() -> bool:
    """Whether Typer met a closed stdout: it swaps in click's PacifyFlushWrapper and exits
    with 1; we end it as a closed pipe everywhere else (141, like SIGPIPE in a shell)."""
    return type(sys.stdout).__name__ == "PacifyFlushWrapper"


def _usage_error(exc: Exception) -> int | None:
    """The exit code of a command-line parsing error, shown the way click shows it.

    Matched by shape: Typer vendors click in newer releases, so the class is not
    the same object across the versions we accept.
    """
    show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
    if callable(show) and isinstance(code, int):
        show()
        return code
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run `waypost` with ``argv`` (default: the process arguments); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("WAYPOST_DEBUG", "").lower() in _DEBUG_VALUES
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="waypost", standalone_mode=False)
    except typer.Abort:
        return _fail("interrupted", ExitCode.INTERRUPTED, debug)
    except CliError as exc:
        return _fail(exc.message, exc.code, debug or state.debug)
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED, debug or state.debug)
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _fail(f"address already in use: {exc.strerror}", ExitCode.ERROR, debug)
        return _fail(f"{type(exc).__name__}: {exc}", ExitCode.ERROR, debug or state.debug)
    except SystemExit as exc:
        if _pipe_closed():
            return ExitCode.BROKEN_PIPE
        if isinstance(exc.code, str):
            return _fail(exc.code.removeprefix("waypost: "), ExitCode.ERROR, debug)
        return int(exc.code or 0)
    except Exception as exc:
        code = _usage_error(exc)
        if code is not None:
            return code
        return _fail(f"unexpected error: {type(exc).__name__}: {exc} (--debug shows where)",
                     ExitCode.ERROR, debug or state.debug)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    return result if isinstance(result, int) else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
