"""The README's shell blocks marked ``runnable`` run as written against the stack
`make dev` serves (engine, coordinator and process backend with the examples)."""

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


def runnable_blocks() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text())


def test_the_readme_has_runnable_blocks() -> None:
    assert runnable_blocks(), "no ```bash runnable block in README.md"


async def test_runnable_blocks_run_as_written(database_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    backend = ProcessBackend(max_parallel=4, extra_env={"WAYPOST_EXAMPLE_LEDGER": str(ledger)})
    stack = await Standalone(settings(database_url), backend).start()
    try:
        await stack.register(hello.hello, orders.process_order, flaky.always_fails)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        env["WAYPOST_URL"] = stack.url  # the README's commands assume `make dev`'s URL
        for block in runnable_blocks():
            proc = await asyncio.to_thread(
                subprocess.run, ["bash", "-euo", "pipefail", "-c", block], cwd=REPO, env=env,
                capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, f"README block failed:\n{block}\n{proc.stdout}\n" \
                                         f"{proc.stderr}"
            assert "Traceback" not in proc.stdout + proc.stderr
    finally:
        await stack.stop()
