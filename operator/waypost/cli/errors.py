"""Exit codes and the errors commands raise to end with a one-line message."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes of `waypost` (README, "Exit codes")."""

    OK = 0
    ERROR = 1  # the API refused, the coordinator is unreachable, a timeout, ...
    USAGE = 2  # a bad flag or argument, missing configuration
    RUN_FAILED = 3  # `--wait` saw the run end in any state but succeeded
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
    # The reader went away (`| head`): nothing printed, 141 as shells report SIGPIPE.
    BROKEN_PIPE = 141


class CliError(Exception):
    """A failure the user can act on: printed as ``waypost: <message>``, no traceback."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(CliError):
    """Bad input on the command line (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)
