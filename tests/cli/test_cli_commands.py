"""The client commands of `waypost` against a running engine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from examples import flaky, hello
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.model.enums import RunStatus
from waypost.standalone import Standalone

REPO = Path(__file__).resolve().parents[2]


async def _waypost(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAYPOST_URL": url}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "waypost.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )


async def test_trigger_wait_list_show_dlq_requeue(database_url: str) -> None:
    stack = await Standalone(settings(database_url), ProcessBackend(max_parallel=2)).start()
    try:
        await stack.register(hello.hello, flaky.always_fails)
        done = await _waypost(stack.url, "trigger", "hello", '{"name": "cli"}', "--wait")
        assert done.returncode == 0, done.stderr
        assert "succeeded" in done.stdout and "Hello, cli" in done.stdout

        listed = await _waypost(stack.url, "runs", "list", "--task", "hello")
        assert "STATUS" in listed.stdout and "succeeded" in listed.stdout

        failed = await _waypost(stack.url, "trigger", "always-fails", "{}", "--wait")
        assert failed.returncode == 1
        assert "dead_lettered" in failed.stdout
        run_id = failed.stdout.split()[2]  # "triggered run <id>"
        dlq = await _waypost(stack.url, "dlq", "list")
        assert run_id in dlq.stdout
        requeued = await _waypost(stack.url, "dlq", "requeue", run_id)
        assert requeued.returncode == 0 and "requeued" in requeued.stdout
        await wait_for_status(stack.engine, run_id, {RunStatus.DEAD_LETTERED})
        shown = await _waypost(stack.url, "runs", "show", run_id)
        assert "Attempts:" in shown.stdout and "dead_lettered" in shown.stdout

        unknown = await _waypost(stack.url, "trigger", "no-such-task", "{}")
        assert unknown.returncode == 1 and "no task 'no-such-task'" in unknown.stderr
        bad_json = await _waypost(stack.url, "trigger", "hello", "{not json")
        assert bad_json.returncode != 0 and "not valid JSON" in bad_json.stderr
    finally:
        await stack.stop()
