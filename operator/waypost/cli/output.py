"""How `waypost` prints: tables for people, JSON/YAML for programs.

Colours appear only on a terminal (rich decides; ``NO_COLOR`` is honoured).
Tables never wrap nor cut a cell when piped, so ``grep``/``awk`` see whole values.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from waypost.cli.app import OutputFormat

STATUS_STYLES = {
    "succeeded": "green", "failed": "red", "dead_lettered": "red bold", "cancelled": "magenta",
    "expired": "magenta", "running": "cyan", "retrying": "yellow", "queued": "blue",
    "delayed": "blue", "waiting": "blue",
}


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich exits with 1 here; `waypost.cli.main` ends every closed pipe the same
        # way (quiet, exit code 141), whichever writer met it first.
        self.quiet = True
        raise BrokenPipeError


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    # A pipe gets no colour and no width limit (rich would wrap at 80 columns).
    return _Console(file=stream, width=None if terminal else 100_000, highlight=False,
                    soft_wrap=not terminal, no_color=not terminal or None)


def out() -> Console:
    return _console()


def err() -> Console:
    return _console(stderr=True)


def show(renderable: RenderableType | str = "") -> None:
    """Print to stdout (text as it is, never as markup); piped, without the padding rich
    leaves at the end of lines."""
    if isinstance(renderable, str):
        renderable = Text(renderable)
    console = out()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Lines:
    """Prints one line at a time as it arrives (log lines, progress), flushed at once:
    styled on a terminal, plain text when piped. To stderr with ``stderr=True``, which
    commands use for progress when stdout carries a JSON/YAML document."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.console = _console(stderr)
        self.stream = sys.stderr if stderr else sys.stdout

    def __call__(self, line: Text | str) -> None:
        if self.console.is_terminal:
            self.console.print(line if isinstance(line, Text) else Text(line))
            return
        self.stream.write((line.plain if isinstance(line, Text) else line) + "\n")
        self.stream.flush()


def note(message: str) -> None:
    """A remark for the person at the terminal, on stderr so pipes stay clean."""
    err().print(Text(message, style="dim"))


@dataclass(frozen=True)
class Column:
    """A table column: its header and how to get the cell from a document."""

    header: str
    value: Callable[[dict[str, Any]], Any]
    wide_only: bool = False
    style: Callable[[dict[str, Any]], str] | None = None


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_age(seconds: float) -> str:
    """kubectl-style ages: 42s, 3m12s, 35m, 5h20m, 3d4h, 41d."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3600:
        return f"{s // 60}m"
    if s < 8 * 3600:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m}m" if m else f"{h}h"
    if s < 86400:
        return f"{s // 3600}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d{h}h" if d < 8 and h else f"{d}d"


def human_duration(seconds: float) -> str:
    """Durations keep a tenth of a second while short: 0.4s, 16.6s, 3m12s."""
    if seconds < 60:
        return f"{max(seconds, 0):.1f}s"
    return human_age(seconds)


def age(value: Any, now: datetime | None = None) -> str:
    at = parse_time(value)
    if at is None:
        return "-"
    return human_age(((now or datetime.now(UTC)) - at).total_seconds())


def until(value: Any, now: datetime | None = None) -> str:
    """A future time as ``in 3m``; a past one as an age with ``ago``."""
    at = parse_time(value)
    if at is None:
        return "-"
    delta = (at - (now or datetime.now(UTC))).total_seconds()
    return f"in {human_age(delta)}" if delta >= 0 else f"{human_age(-delta)} ago"


def duration(start: Any, end: Any, now: datetime | None = None) -> str:
    """From start to end, or to now while the thing is still going."""
    began = parse_time(start)
    if began is None:
        return "-"
    ended = parse_time(end) or now or datetime.now(UTC)
    return human_duration((ended - began).total_seconds())


def human_bytes(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def short_id(value: Any) -> str:
    """The first 8 hex digits of a run id: unique in practice, accepted as a run id."""
    return str(value)[:8] if value else "-"


def status_style(doc: dict[str, Any]) -> str:
    return STATUS_STYLES.get(str(doc.get("status")), "")


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, wide: bool,
          empty: str = "No resources found.") -> Table | Text:
    """A borderless table in the manner of ``kubectl get``."""
    if not rows:
        return Text(empty)
    shown = [c for c in columns if wide or not c.wide_only]
    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0),
                 header_style="bold")
    for column in shown:
        grid.add_column(column.header, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*(Text(cell(c.value(row)), style=c.style(row) if c.style else "")
                       for c in shown))
    return grid


def document(data: Any, fmt: OutputFormat) -> str:
    """JSON or YAML text of an API document."""
    if fmt is OutputFormat.YAML:
        import yaml  # only when asked for

        text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        return text.rstrip("\n")
    return json.dumps(data, indent=2, ensure_ascii=False)


def compact_json(data: Any) -> str:
    """One-line JSON, for streams of documents (JSON Lines)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def emit_document(data: Any, fmt: OutputFormat) -> None:
    sys.stdout.write(document(data, fmt) + "\n")
    sys.stdout.flush()
