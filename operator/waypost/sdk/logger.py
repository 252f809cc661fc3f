"""``ctx.log``: structured task logs, buffered for shipping to the coordinator.

Each entry is written at once to stderr as one line of JSON (so ``kubectl
logs`` shows it even if the coordinator is unreachable) and kept in a bounded
buffer that the runner drains in batches to the coordinator's logs endpoint.
The logger is thread-safe because sync tasks log from a worker thread.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from waypost.sdk import protocol

# Enough for minutes of chatty logging while the coordinator is unreachable,
# small enough that a runaway loop cannot exhaust the Pod's memory.
DEFAULT_BUFFER_LIMIT = 10_000

# The coordinator refuses longer messages; cut here rather than lose a batch.
MAX_MESSAGE_CHARS = protocol.MAX_LOG_MESSAGE_CHARS
_TRUNCATED = " ... (truncated)"


#: The key of the ``ctx.step`` running in this context, so that its log lines say so.
current_step: ContextVar[str | None] = ContextVar("waypost_current_step", default=None)


def _utcnow() -> datetime:
    return datetime.now(UTC)


LogEntry = protocol.LogLine
"""One log entry, as sent to ``POST /v1/runner/logs``."""


def _jsonable_fields(fields: dict[str, Any]) -> dict[str, Any]:
    # A log call must never fail the task: values JSON cannot carry are
    # logged as their repr instead.
    out: dict[str, Any] = {}
    for key, value in fields.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            out[str(key)] = repr(value)
        else:
            out[str(key)] = value
    return out


class TaskLogger:
    """A logger with ``debug/info/warning/error(message, **fields)``.

    Entries carry the run id and attempt among their fields, so they stay
    correlated wherever they end up.
    """

    def __init__(
        self,
        run_id: str,
        attempt: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], datetime] = _utcnow,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
    ) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self._stream = stream
        self._clock = clock
        self._lock = threading.Lock()
        self._buffer: deque[LogEntry] = deque()
        self._buffer_limit = buffer_limit
        self._dropped = 0

    def debug(self, message: str, **fields: Any) -> None:
        """Log at debug level."""
        self._emit("debug", message, fields)

    def info(self, message: str, **fields: Any) -> None:
        """Log at info level."""
        self._emit("info", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        """Log at warning level."""
        self._emit("warning", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        """Log at error level."""
        self._emit("error", message, fields)

    def exception(self, message: str, **fields: Any) -> None:
        """Log at error level with the exception being handled."""
        self._emit("error", message, {**fields, "exception": traceback.format_exc()})

    def _emit(self, level: protocol.LogLevel, message: str, fields: dict[str, Any]) -> None:
        text = str(message)
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - len(_TRUNCATED)] + _TRUNCATED
        entry = LogEntry(
            ts=self._clock(),
            level=level,
            message=text,
            fields={**_jsonable_fields(fields), "run_id": self.run_id, "attempt": self.attempt},
            step=current_step.get(),
        )
        stream = self._stream if self._stream is not None else sys.stderr
        line = json.dumps(
            {"ts": entry.ts.isoformat(), "level": level, "message": entry.message,
             **({"step": entry.step} if entry.step else {}), **entry.fields},
            ensure_ascii=False,
            default=repr,
        )
        with self._lock:
            if len(self._buffer) >= self._buffer_limit:
                self._buffer.popleft()
                self._dropped += 1
            self._buffer.append(entry)
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not fail the task

    def drain(self, max_entries: int) -> list[LogEntry]:
        """Remove and return up to ``max_entries`` buffered entries, oldest first.

        When entries were dropped because the buffer was full, a warning
        entry saying how many is returned first.
        """
        with self._lock:
            batch: list[LogEntry] = []
            if self._dropped and max_entries > 0:
                batch.append(
                    LogEntry(
                        ts=self._clock(),
                        level="warning",
                        message="log entries dropped: buffer full while the coordinator lagged",
                        fields={
                            "dropped": self._dropped,
                            "run_id": self.run_id,
                            "attempt": self.attempt,
                        },
                    )
                )
                self._dropped = 0
            while self._buffer and len(batch) < max_entries:
                batch.append(self._buffer.popleft())
            return batch

    def requeue(self, entries: list[LogEntry]) -> None:
        """Put entries that could not be shipped back at the front of the buffer."""
        with self._lock:
            for entry in reversed(entries):
                if len(self._buffer) >= self._buffer_limit:
                    self._dropped += 1
                    continue
                self._buffer.appendleft(entry)

    @property
    def pending(self) -> int:
        """How many entries wait to be shipped."""
        with self._lock:
            return len(self._buffer)
