"""`waypost dev --once` from a fresh state folder: embedded Postgres, the examples,
the summary, and its exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dev_once_runs_the_examples_with_an_embedded_postgres() -> None:
    env = {k: v for k, v in os.environ.items() if k != "WAYPOST_DATABASE_URL"}
    # A folder the postgres user can reach when tests run as root.
    state = Path(tempfile.mkdtemp(prefix="waypost-dev-test-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "waypost.cli", "dev", "--examples", "--once", "--port", "0",
             "--state-dir", str(state)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Starting an embedded Postgres" in out
    assert "All examples ended as expected." in out
    assert "order fetched 1x" in out
    summary = out[out.index("Example "):]
    assert summary.count("ok ") == 3 and "BAD" not in summary
