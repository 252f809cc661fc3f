"""`waypost dev` prints each run's log lines: a hot worker's output file holds
several attempts one after another, and each line goes to the attempt the
runner last named (not to a run id read from the file's name)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from waypost.devmode import Follower


def _line(**doc: Any) -> str:
    return json.dumps(doc) + "\n"


async def test_a_hot_workers_lines_go_to_the_attempt_it_ran(tmp_path: Path) -> None:
    out = io.StringIO()
    follower = Follower(cast(Any, SimpleNamespace(engine=None)), tmp_path, out=out)
    follower._tasks.update({"aaaaaaaa-1": "greet", "bbbbbbbb-2": "greet"})
    (tmp_path / "warm-1234.log").write_text(
        _line(level="info", logger="waypost.runner", message="warm runner polling")
        + _line(level="info", logger="waypost.runner", message="attempt started",
                run_id="aaaaaaaa-1", attempt=1)
        + _line(level="info", message="greeted", name="ann", run_id="aaaaaaaa-1", attempt=1)
        + "plain print of run a\n"
        + _line(level="info", logger="waypost.runner", message="attempt started",
                run_id="bbbbbbbb-2", attempt=3)
        + "plain print of run b\n")
    await follower._follow_logs()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "aaaaaaaa  #1 | info    greeted  name=ann" in lines[0]
    assert "aaaaaaaa  #1 | plain print of run a" in lines[1]
    assert "bbbbbbbb  #3 | plain print of run b" in lines[2]
