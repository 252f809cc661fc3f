"""The process backend's watchdog finds a runner's descendants by reading the tree
downwards (not by scanning every process on the machine), and finds the same ones."""

from __future__ import annotations

import subprocess
import time

import psutil

from waypost.backends import process


def test_descendants_match_psutils_full_scan() -> None:
    shell = subprocess.Popen(["bash", "-c", "sleep 30 & sleep 30 & (sleep 30 & wait); wait"])
    try:
        root = psutil.Process(shell.pid)
        deadline = time.monotonic() + 10
        while len(root.children(recursive=True)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = sorted(p.pid for p in root.children(recursive=True))
        assert len(expected) == 4  # two sleeps, a subshell and its sleep
        assert sorted(p.pid for p in process._descendants(root)) == expected
    finally:
        for child in psutil.Process(shell.pid).children(recursive=True):
            child.kill()
        shell.kill()
        shell.wait()
