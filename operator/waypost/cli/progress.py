"""How a run's events and log lines read on a terminal: one line each, as they arrive.

Shared by every command that follows a run (`trigger --wait`, `replay --wait`,
`logs`); ``follow_run`` is the whole "wait, show progress, print the outcome, pick
the exit code" sequence, for any new command that starts runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from waypost.cli import output
from waypost.cli.app import OutputFormat
from waypost.cli.errors import CliError, ExitCode
from waypost.sdk.client import RunDocument, WaypostClient

LEVEL_STYLES = {"debug": "dim", "info": "", "warning": "yellow", "error": "red bold"}
#: Log fields a line shows as its own columns (or that are the same on every line).
_SHOWN_FIELDS = ("run_id", "attempt")


def describe_event(event: dict[str, Any]) -> str | None:
    """One line for a run event (status, attempt, checkpoint, replay), or None for
    kinds that progress does not show."""
    kind, data, attempt = event.get("kind"), event.get("data") or {}, event.get("attempt")
    if kind == "status":
        error = data.get("error") or {}
        why = f" ({error.get('type')}: {error.get('message')})" if error else ""
        return f"  status {data.get('status')}{why}"
    if kind == "attempt_started":
        return f"  attempt {attempt} started (memory {output.human_bytes(data.get('memoryBytes'))})"
    if kind == "attempt_finished":
        if data.get("status") == "succeeded":
            return f"  attempt {attempt} succeeded in {data.get('durationMs')} ms"
        parts = [f"  attempt {attempt} {data.get('status')}: {data.get('failureType')}"]
        if data.get("exitCode") is not None:
            parts.append(f"exit code {data['exitCode']}")
        if data.get("oomKilled"):
            parts.append(f"OOM-killed at {output.human_bytes(data.get('memoryBytes'))}")
        if data.get("message"):
            parts.append(str(data["message"])[:200])
        return ", ".join(parts)
    if kind == "checkpoint":
        size = output.human_bytes(data.get("sizeBytes"))
        copied = ", copied by the replay" if attempt == 0 else ""
        return f"  checkpoint {data.get('key')} ({size}{copied})"
    if kind == "replay":
        return f"  replay of {data.get('replayOf')} from {data.get('fromCheckpoint')}"
    return None


def log_line(entry: dict[str, Any], *, wide: bool = False) -> Text:
    """A log entry as ``<time> #<attempt> [<step>] LEVEL message {fields}``.

    ``wide`` keeps the timestamp to the millisecond and every field, including the
    run id and attempt that the short form shows as columns.
    """
    fields = {k: v for k, v in (entry.get("fields") or {}).items()
              if wide or k not in _SHOWN_FIELDS}
    at = output.parse_time(entry.get("ts"))
    if at is None:
        when = "-"
    elif wide:
        when = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    else:
        when = at.strftime("%Y-%m-%d %H:%M:%S")
    level = str(entry.get("level", ""))
    step = f" [{entry['step']}]" if entry.get("step") else ""
    text = Text(f"{when} #{entry.get('attempt')}{step} ")
    text.append(f"{level.upper():<7}", style=LEVEL_STYLES.get(level, ""))
    text.append(f" {entry.get('message')}")
    if fields:
        text.append(f" {json.dumps(fields, separators=(',', ':'), ensure_ascii=False)}",
                    style="dim")
    return text


async def follow_run(
    client: WaypostClient,
    run_id: str,
    *,
    headline: str,
    timeout: float,
    fmt: OutputFormat,
    details: Callable[[RunDocument], RenderableType],
) -> int:
    """Print ``headline``, then each event of the run until it ends, then the run
    (``details`` for tables, the document for JSON/YAML); the exit code is 0 when it
    succeeded, 3 otherwise. Progress goes to stderr when stdout carries a document, so
    ``-o json`` output stays one parseable document."""
    structured = fmt in (OutputFormat.JSON, OutputFormat.YAML)
    say = output.Lines(stderr=structured)
    say(headline)

    def progress(event: Any) -> None:
        line = describe_event(event)
        if line is not None:
            say(line)

    try:
        run = await client.wait(run_id, timeout=timeout, on_event=progress)
    except TimeoutError:
        raise CliError(f"run {run_id} did not finish within {timeout:g} s; it goes on "
                       f"(waypost runs show {output.short_id(run_id)})") from None
    if structured:
        output.emit_document(run, fmt)
    else:
        output.show(details(run))
    return ExitCode.OK if run.get("status") == "succeeded" else ExitCode.RUN_FAILED
