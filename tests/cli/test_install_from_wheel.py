"""From an empty folder outside the repository, as a new user would: build the wheel,
install it into a fresh virtualenv, write tasks.py, run `waypost dev ./tasks.py`.

The base install is the SDK and the client commands only; `waypost[dev]` adds the
server and Postgres binaries from PyPI (the pgserver wheel), used here instead of
any system package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Builds a wheel and installs it twice from the package index: minutes on a busy machine.
pytestmark = pytest.mark.timeout(1800)

TASKS = '''
from waypost import Schedule, task


@task(schedules=[Schedule(cron="*/5 * * * *", name="every-five", payload={"n": 20})])
def double(ctx, payload):
    n = ctx.step("read", lambda: (payload or {}).get("n", 1))
    doubled = ctx.step("double", lambda: n * 2)
    ctx.log.info("doubled", n=n, result=doubled)
    return {"result": doubled, "version": 1}
'''


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WAYPOST_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(REPO)))
    return env


def _run(*args: str | Path, cwd: Path, timeout: float = 900,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # /var/tmp and world-readable: the embedded Postgres runs as the postgres user
    # when the tests run as root, and it must reach the pgserver binaries in the venv.
    path = Path(tempfile.mkdtemp(prefix="waypost-wheel-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(workdir: Path) -> Path:
    out = workdir / "dist"
    proc = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", out, REPO,
                cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    # setuptools' deprecation banners (project.license as a table, ...) and any warning
    for marker in ("SetuptoolsDeprecationWarning", "!!\n", "warning: "):
        assert marker not in log, f"the build warned ({marker!r}):\n{log[-4000:]}"
    [built] = out.glob("waypost-*.whl")
    with zipfile.ZipFile(built) as archive:
        licence = "waypost-0.1.0.dist-info/licenses/LICENSE"
        assert licence in archive.namelist(), archive.namelist()
        assert b"Apache License" in archive.read(licence)
        assert "License-Expression: Apache-2.0" in archive.read(
            "waypost-0.1.0.dist-info/METADATA").decode()
    return built


def _venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(where)
    return where / "bin"


def test_the_base_install_is_the_sdk_and_the_client(wheel: Path, workdir: Path) -> None:
    bin_dir = _venv(workdir / "base-venv")
    proc = _run(bin_dir / "pip", "install", "-q", wheel, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    listed = _run(bin_dir / "pip", "list", "--format=json", cwd=workdir)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    # (pydantic comes along with typer >= 0.29; it is not imported by `import waypost`.)
    assert not installed & {"asyncpg", "kopf", "kubernetes", "croniter", "pgserver"}, installed
    probe = _run(bin_dir / "python", "-c", "import sys, waypost; from waypost import task, "
                 "Schedule, Retry; from waypost.sdk.client import WaypostClient; "
                 "print(sorted(m for m in ('asyncpg', 'kopf', 'pydantic') if m in sys.modules))",
                 cwd=workdir)
    assert probe.returncode == 0 and probe.stdout.strip() == "[]", probe.stderr
    helped = _run(bin_dir / "waypost", "--help", cwd=workdir)
    assert helped.returncode == 0 and "trigger" in helped.stdout
    dev = _run(bin_dir / "waypost", "dev", "./tasks.py", cwd=workdir)
    assert dev.returncode == 1 and "pip install 'waypost[dev]'" in dev.stderr, dev.stderr


def test_dev_from_an_empty_folder(wheel: Path, workdir: Path) -> None:
    bin_dir = _venv(workdir / "dev-venv")
    proc = _run(bin_dir / "pip", "install", "-q", f"{wheel}[dev]", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pg_bin = _run(bin_dir / "python", "-c", "import importlib.util, pathlib; print(pathlib.Path("
                  "importlib.util.find_spec('pgserver').submodule_search_locations[0]) / "
                  "'pginstall' / 'bin')", cwd=workdir).stdout.strip()
    assert (Path(pg_bin) / "initdb").exists(), pg_bin
    env = {**_env(), "WAYPOST_PG_BIN": pg_bin}  # Postgres from the wheel, not the system

    project = workdir / "my-project"
    project.mkdir()
    os.chmod(project, 0o755)
    (project / "tasks.py").write_text(TASKS)
    once = _run(bin_dir / "waypost", "dev", "./tasks.py", "--once", "--port", "0",
                cwd=project, env=env, timeout=600)
    out = once.stdout + once.stderr
    assert once.returncode == 0, out
    assert "Tasks: double (tasks:double)" in out
    assert re.search(r"double\s+\w{8}\s+#1 \| info\s+doubled\s+n=20 result=40", out), out
    assert re.search(r"every-five\s+double\s+\w{8}\s+succeeded", out), out
    assert "Traceback" not in out

    server = subprocess.Popen(
        [str(bin_dir / "waypost"), "dev", "./tasks.py", "--port", "0"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def until(pattern: str, timeout: float = 180) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        assert server.stdout is not None
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no {pattern!r} in:\n" + "".join(lines))

    try:
        url = until(r"Serving at (http://127\.0\.0\.1:\d+)/").group(1)
        (project / "tasks.py").write_text(TASKS.replace('"version": 1', '"version": 2'))
        until(r"Reloaded: new attempts run the new code\.")
        run = _run(bin_dir / "waypost", "--url", url, "trigger", "double", '{"n": 4}', "--wait",
                   "-o", "json", cwd=project, env=env, timeout=180)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["result"] == {"result": 8, "version": 2}
        until(r"double\s+\w{8}\s+#1 \| info\s+doubled\s+n=4 result=8")
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(60)
    assert code == 0, "".join(lines)
