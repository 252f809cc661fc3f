"""Structured logging for the runner process: one JSON object per line on stderr.

Only what is passed in ``extra`` is added to a line; the runner never passes
payloads, results, checkpoint data or the attempt token.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JSONFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "logger", "message", **extra}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=repr)


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send the runner's own logs (``waypost.*``) to stderr as JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("waypost")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
