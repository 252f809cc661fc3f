"""The floors of the box: flush time, a loopback round trip, a durable one-row commit."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.stats import pct


def fsync_floor(bin_dir: Path, seconds: int, folder: Path) -> dict[str, Any]:
    """Run pg_test_fsync on the data directory's filesystem; usecs per 8 kB flush."""
    tool = bin_dir / "pg_test_fsync"
    if not tool.exists():
        return {"available": False}
    probe = folder / f"fsync_probe_{os.getpid()}"
    try:
        proc = subprocess.run([str(tool), "-s", str(seconds), "-f", str(probe)],
                              capture_output=True, text=True, check=False, timeout=600)
    finally:
        probe.unlink(missing_ok=True)
    out: dict[str, Any] = {"available": True}
    block = proc.stdout.split("Compare file sync methods using two")[0]
    for method in ("open_datasync", "fdatasync", "fsync", "open_sync"):
        m = re.search(rf"^\s+{method}\s+([\d.]+) ops/sec\s+(\d+) usecs/op", block, re.M)
        if m:
            out[f"{method}_us"] = float(m.group(2))
    # wal_sync_method on Linux defaults to fdatasync: that is what a commit waits for.
    out["flush_us"] = out.get("fdatasync_us")
    return out


async def rtt_floor(dsn: str, samples: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(50):
            await conn.fetchval("SELECT 1")
        times = []
        for _ in range(samples):
            t = time.perf_counter()
            await conn.fetchval("SELECT 1")
            times.append((time.perf_counter() - t) * 1e6)
    finally:
        await conn.close()
    return {"p50_us": pct(times, 50), "p99_us": pct(times, 99)}


async def commit_floor(dsn: str, samples: int) -> dict[str, float]:
    """One-row INSERT in autocommit: one WAL flush per statement."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, "
                           "v text NOT NULL)")
        stmt = await conn.prepare("INSERT INTO bench_floor (v) VALUES ($1)")
        for _ in range(20):
            await stmt.fetch("warm")
        times = []
        for _ in range(samples):
            t = time.perf_counter()
            await stmt.fetch("x")
            times.append((time.perf_counter() - t) * 1e6)
        await conn.execute("DROP TABLE bench_floor")
    finally:
        await conn.close()
    return {"p50_us": pct(times, 50), "p99_us": pct(times, 99)}
