"""The shell blocks marked ``runnable`` in the README and in docs/ run as written
against the stack `make dev` serves (engine, coordinator and process backend with the
examples). A file's blocks run in order in one shell, as a reader would type them, so
a later block can use a variable an earlier one set (docs/events.md's ``$RUN``)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

from examples import flaky, hello, orders
from tests.factories import settings
from waypost.backends.process import ProcessBackend
from waypost.standalone import Standalone

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```(?:bash|sh) runnable\n(.*?)^```", re.S | re.M)


DOCUMENTS = ("README.md", "docs/events.md")
# What a document's blocks must print, beyond ending with exit code 0: the SSE
# block's curl shows the run's stream (it stops after its documented --max-time).
PRINTS = {"docs/events.md": ("event: status", "event: checkpoint", 'data: {"id":')}


def runnable_blocks(name: str = "README.md") -> list[str]:
    return BLOCK.findall((REPO / name).read_text())


def test_the_documents_have_runnable_blocks() -> None:
    for name in DOCUMENTS:
        assert runnable_blocks(name), f"no ```bash runnable block in {name}"
    marked = {str(p.relative_to(REPO)) for p in [REPO / "README.md", *REPO.glob("docs/*.md")]
              if runnable_blocks(str(p.relative_to(REPO)))}
    assert marked == set(DOCUMENTS), "a document with runnable blocks that no test runs"


async def test_runnable_blocks_run_as_written(database_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    backend = ProcessBackend(max_parallel=4, extra_env={"WAYPOST_EXAMPLE_LEDGER": str(ledger)})
    stack = await Standalone(settings(database_url), backend).start()
    try:
        await stack.register(hello.hello, orders.process_order, flaky.always_fails)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env["WAYPOST_URL"] = stack.url  # the README's commands assume `make dev`'s URL
        for name in DOCUMENTS:
            script = "\n".join(runnable_blocks(name))
            proc = await asyncio.to_thread(
                subprocess.run, ["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, f"{name}'s blocks failed:\n{script}\n{proc.stdout}\n" \
                                         f"{proc.stderr}"
            assert "Traceback" not in proc.stdout + proc.stderr
            for text in PRINTS.get(name, ()):
                assert text in proc.stdout, f"{name}'s blocks did not print {text!r}"
    finally:
        await stack.stop()
