"""One JSON object per log line, with the correlation fields a record carries.

Engine code logs with ``extra={"run_id": ..., "attempt": ..., "task": ...}``;
those fields become top-level keys here. Payloads and credentials are never
passed as extras, so they never reach a log line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# kopf's per-object loggers add its whole OperatorSettings (about 1.8 KB) and a
# posting flag to every record; the object they are about is kept, as "object".
_KOPF_EXTRAS = {"settings", "k8s_skip", "k8s_ref"}


def _said(value: object) -> object:
    """An exception whose text is empty is named by its type, so that no line reads
    "store unavailable: " (asyncio.TimeoutError and many OSErrors have no text)."""
    if isinstance(value, BaseException) and not str(value):
        return type(value).__name__
    return value


def _message(record: logging.LogRecord) -> str:
    if isinstance(record.args, tuple) and record.args:
        record.args = tuple(_said(a) for a in record.args)
    message = record.getMessage()
    if not message.strip():
        message = f"({record.name}: empty message)"
    return message


def _kopf_object(ref: object) -> str | None:
    if not isinstance(ref, dict):
        return None
    where = "/".join(str(ref[k]) for k in ("namespace", "name") if ref.get(k))
    return f"{ref.get('kind', 'object')} {where}".strip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _KOPF_EXTRAS and not key.startswith("_"):
                line[key] = value
        kopf_object = _kopf_object(getattr(record, "k8s_ref", None))
        if kopf_object:
            line["object"] = kopf_object
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
