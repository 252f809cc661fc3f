"""A side-effect ledger for the examples, so tests can count real effects.

When ``WAYPOST_EXAMPLE_LEDGER`` names a file, every side effect appends one
JSON line ``{"run": ..., "attempt": ..., "effect": ...}`` to it. Lines are
written with ``O_APPEND`` in a single ``write`` so concurrent runner
processes never interleave them.
"""

from __future__ import annotations

import json
import os
from typing import Any

LEDGER_ENV = "WAYPOST_EXAMPLE_LEDGER"


def record(run_id: str, attempt: int, effect: str, **extra: Any) -> None:
    """Append one side effect to the ledger, if a ledger is configured."""
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    line = json.dumps({"run": run_id, "attempt": attempt, "effect": effect, **extra}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(path: str) -> list[dict[str, Any]]:
    """All ledger entries in a file, oldest first (for tests and dev mode)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []
