"""`make dev`, the README's first command, as written: it serves waypost with the
examples until Ctrl-C.

The test runs the Make target itself (not the `waypost dev` it calls), so the
target's prerequisites and its command line are what is checked. Only the port
(WAYPOST_COORDINATOR_PORT, which `waypost dev` reads) and the state folder
(DEV_ARGS) differ, so that it cannot meet a `make dev` someone runs in the same
checkout.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_until(proc: subprocess.Popen[str], done: str, timeout: float) -> str:
    """Everything ``proc`` printed until a line containing ``done`` (or fail)."""
    assert proc.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=1.0):
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if done in line:
                return "".join(out)
    raise AssertionError(f"`make dev` did not print {done!r} within {timeout} s "
                         f"(exit {proc.poll()}):\n{''.join(out)}")


def test_make_dev_serves_the_examples_until_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"WAYPOST_DATABASE_URL", "MAKEFLAGS", "MAKELEVEL"}}
    port = _free_port()
    env["WAYPOST_COORDINATOR_PORT"] = str(port)
    # A folder the postgres user can reach when tests run as root.
    state = Path(tempfile.mkdtemp(prefix="waypost-make-dev-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "dev", f"DEV_ARGS=--state-dir {state}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        out = _read_until(proc, "Still serving at", timeout=300)
        assert "Starting an embedded Postgres" in out, out
        summary = out[out.index("Example "):]
        assert summary.count("ok ") == 3 and "BAD" not in summary, summary
        assert "order fetched 1x" in summary, summary
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/", timeout=10) as page:
            assert page.status == 200
            assert "waypost" in page.read().decode().lower()
        with urllib.request.urlopen(f"{url}/v1/runs", timeout=10) as runs:
            listed = json.loads(runs.read())["runs"]
        assert {r["task"] for r in listed} >= {"hello", "process-order", "always-fails"}
        # Ctrl-C in a terminal signals the whole foreground group: make and waypost.
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        # The embedded Postgres went with it: its folder is free again.
        assert not (state / "postgres" / "postmaster.pid").exists(), rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)
