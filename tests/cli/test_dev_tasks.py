"""`waypost dev` on the user's own tasks, from a folder outside the repository:
modules named by path, by module name or in pyproject.toml; schedules from
``@task(schedules=...)``; logs in the terminal; reload on save."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

WAYPOST = [sys.executable, "-m", "waypost.cli"]

TASKS = '''
from waypost import Retry, Schedule, task


def shout(text):
    return text.upper()


@task(retry=Retry(max_attempts=2),
      schedules=[Schedule(cron="0 3 * * *", timezone="Europe/Berlin", name="nightly",
                          payload={"name": "night"})])
def greet(ctx, payload):
    name = ctx.step("name", lambda: (payload or {}).get("name", "world"))
    text = ctx.step("text", shout, f"GREETING {name}")
    ctx.log.info("greeted", name=name)
    return {"text": text}
'''


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    env.pop("PYTHONPATH", None)  # the user's folder knows nothing of the repository
    return env


@pytest.fixture
def folder() -> Iterator[Path]:
    # Outside the repository, and reachable by the postgres user when tests run as root.
    path = Path(tempfile.mkdtemp(prefix="waypost-dev-user-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _dev(folder: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WAYPOST, "dev", *args], cwd=folder, env=_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_pyproject_tasks_run_their_schedules_once(folder: Path) -> None:
    (folder / "jobs").mkdir()
    (folder / "jobs" / "__init__.py").write_text("")
    (folder / "jobs" / "tasks.py").write_text(TASKS)
    (folder / "pyproject.toml").write_text('[tool.waypost]\ntasks = ["jobs.tasks"]\n')
    proc = _dev(folder, "--once", "--port", "0", "--state-dir", str(folder / ".waypost"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Tasks: greet (jobs.tasks:greet)" in out
    assert "fired schedule nightly of greet" in out
    assert re.search(r"greet\s+\w{8}\s+#1 \| info\s+greeted\s+name=night", out), out
    assert re.search(r"nightly\s+greet\s+\w{8}\s+succeeded", out), out
    assert "All runs succeeded." in out and "Traceback" not in out


def test_dev_errors_are_one_line(folder: Path) -> None:
    nothing = _dev(folder, "--port", "0")
    assert nothing.returncode == 2 and "which tasks?" in nothing.stderr
    missing = _dev(folder, "./nope.py", "--port", "0")
    assert missing.returncode == 2 and "./nope.py: no such Python file" in missing.stderr
    (folder / "broken.py").write_text("import no_such_module_here\n")
    broken = _dev(folder, "./broken.py", "--port", "0")
    assert broken.returncode == 1
    assert broken.stderr.startswith("waypost: cannot import broken: ModuleNotFoundError")
    (folder / "empty.py").write_text("x = 1\n")
    empty = _dev(folder, "empty", "--port", "0")
    assert empty.returncode == 1 and "no @task functions in empty" in empty.stderr


async def test_edits_reload_and_schedules_work_in_dev(folder: Path) -> None:
    (folder / "tasks.py").write_text(TASKS)
    proc = await asyncio.create_subprocess_exec(
        *WAYPOST, "dev", "./tasks.py", "--port", "0", "--state-dir", str(folder / ".waypost"),
        cwd=folder, env=_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    seen: list[str] = []

    async def until(pattern: str, timeout: float = 120) -> re.Match[str]:
        async def scan() -> re.Match[str]:
            while True:
                for line in seen:
                    if match := re.search(pattern, line):
                        seen.remove(line)
                        return match
                line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
                if not line:
                    raise AssertionError(f"dev ended before {pattern!r}:\n" + "".join(seen))
                seen.append(line)

        return await asyncio.wait_for(scan(), timeout)

    async def waypost(url: str, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [*WAYPOST, "--url", url, *args], cwd=folder, env=_env(),
            capture_output=True, text=True, timeout=120, check=False)

    try:
        url = (await until(r"Serving at (http://127\.0\.0\.1:\d+)/")).group(1)
        first = await waypost(url, "trigger", "greet", '{"name": "ann"}', "--wait", "-o", "json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["result"] == {"text": "GREETING ANN"}
        await until(r"greet\s+\w{8}\s+#1 \| info\s+greeted\s+name=ann")

        source = (folder / "tasks.py").read_text()
        (folder / "tasks.py").write_text(source.replace("GREETING", "HELLO"))
        await until(r"Changed: tasks\.py")
        await until(r"Reloaded: new attempts run the new code\.")
        second = await waypost(url, "trigger", "greet", '{"name": "bob"}', "--wait", "-o", "json")
        assert json.loads(second.stdout)["result"] == {"text": "HELLO BOB"}

        listed = await waypost(url, "schedules", "list", "-o", "json")
        [nightly] = json.loads(listed.stdout)["schedules"]
        assert (nightly["task"], nightly["name"], nightly["cron"], nightly["timezone"]) == (
            "greet", "nightly", "0 3 * * *", "Europe/Berlin")
        fired = await waypost(url, "schedules", "trigger", "greet", "nightly", "-o", "json")
        assert fired.returncode == 0, fired.stderr
        run_id = json.loads(fired.stdout)["id"]
        await until(rf"greet\s+{run_id[:8]}\s+succeeded")
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0, "".join(seen)


def test_a_broken_edit_keeps_the_previous_tasks() -> None:
    # Discovery runs in a child interpreter: an import error is reported, nothing raised here.
    from waypost import devmode

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bad.py").write_text(textwrap.dedent("""
            from waypost import task
            @task
            def ok(ctx, payload): return 1
            raise RuntimeError("half-saved file")
        """))
        targets = devmode.resolve_targets(["./bad.py"], Path(tmp))
        with pytest.raises(devmode.DiscoveryError) as caught:
            devmode.discover(targets)
        assert "RuntimeError: half-saved file" in str(caught.value)
        assert "Traceback" in caught.value.details
