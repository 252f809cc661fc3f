"""What starting a runner costs before any task code runs: the import of its entrypoint.

    .venv/bin/python -m bench.runner_import [--repeats 15] [--json out.json]

Each repeat is a fresh interpreter running ``python -X importtime -c "import
waypost.runner.main"``; the figure is the cumulative import time of
``waypost.runner.main`` as ``-X importtime`` reports it (microseconds), plus the
wall time of the whole interpreter. The machine is shared, so the median and
the minimum of the repeats are both reported. The heavy modules the runner must
not need (aiohttp, pydantic) are listed with whether the import pulled them in.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

PROBE = (
    "import sys, waypost.runner.main; "
    "print(','.join(m for m in ('aiohttp', 'pydantic', 'asyncpg', 'yarl', 'multidict') "
    "if m in sys.modules))"
)


def measure_once() -> tuple[int, float, float, list[str]]:
    """One fresh interpreter: (cumulative µs of waypost.runner.main, wall s, CPU s of the
    whole interpreter, heavy modules). CPU time is the figure least disturbed by other
    load on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE],
        capture_output=True, text=True, check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cumulative = 0
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "waypost.runner.main":
            cumulative = int(parts[1])
    loaded = [m for m in done.stdout.strip().split(",") if m]
    return cumulative, wall, cpu, loaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.runner_import", description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    imports: list[int] = []
    walls: list[float] = []
    cpus: list[float] = []
    loaded: list[str] = []
    for _ in range(args.repeats):
        cumulative, wall, cpu, loaded = measure_once()
        imports.append(cumulative)
        walls.append(wall)
        cpus.append(cpu)
    result: dict[str, Any] = {
        "repeats": args.repeats,
        "import_ms_median": round(statistics.median(imports) / 1000, 1),
        "import_ms_min": round(min(imports) / 1000, 1),
        "interpreter_wall_ms_median": round(statistics.median(walls) * 1000, 1),
        "interpreter_wall_ms_min": round(min(walls) * 1000, 1),
        "interpreter_cpu_ms_median": round(statistics.median(cpus) * 1000, 1),
        "interpreter_cpu_ms_min": round(min(cpus) * 1000, 1),
        "load_1m": round(os.getloadavg()[0], 1),
        "heavy_modules_loaded": loaded,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
