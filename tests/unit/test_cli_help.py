"""Every command and option of `waypost` says what it does; completion answers."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from waypost.cli.app import app
from waypost.cli.main import main  # noqa: F401  (registers every command)


def _commands(command: object, path: str = "waypost") -> list[tuple[str, object]]:
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in _commands(typer.main.get_command(app)):
        if not (getattr(command, "help", None) or getattr(command, "short_help", None)):
            missing.append(path)
        for param in getattr(command, "params", []):
            if param.param_type_name == "option" and not getattr(param, "help", None):
                missing.append(f"{path} {param.opts[0]}")
            if param.param_type_name == "argument" and not getattr(param, "help", None):
                missing.append(f"{path} {param.name.upper()}")
    assert missing == []


def test_shell_completion_answers() -> None:
    env = {**os.environ, "_WAYPOST_COMPLETE": "complete_bash", "COMP_WORDS": "waypost ru",
           "COMP_CWORD": "1"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from waypost.cli.main import "
                           "main; sys.argv[0] = 'waypost'; sys.exit(main())"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "runs" in proc.stdout.split(), (proc.stdout, proc.stderr)
