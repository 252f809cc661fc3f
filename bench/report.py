"""Render a results file as Markdown (the tables of docs/benchmarks.md).

    .venv/bin/python -m bench.report [bench/results/<date>.json]   # default: the newest
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.run import fmt

HERE = Path(__file__).resolve().parent


def med(doc: dict[str, Any], scenario: str, system: str, figure: str) -> float | None:
    v = doc["results"].get(scenario, {}).get(system, {}).get(figure)
    return None if v is None else v["median"]


def results_table(doc: dict[str, Any]) -> str:
    res = doc["results"]
    systems = ["waypost", "pgqueuer", "procrastinate"]
    lines = ["| figure | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for scenario, by_sys in res.items():
        figures: list[str] = []
        for figs in by_sys.values():
            figures += [f for f in figs if f not in figures]
        for fig in figures:
            cells = []
            for s in systems:
                v = by_sys.get(s, {}).get(fig)
                if v is None or v["median"] is None:
                    cells.append("")
                elif len(v["repeats"]) > 1:
                    cells.append(f"{fmt(v['median'])} ({fmt(v['min'])}-{fmt(v['max'])})")
                else:
                    cells.append(fmt(v["median"]))
            lines.append(f"| `{scenario}.{fig}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floors_table(doc: dict[str, Any]) -> str:
    fl = doc["floors"]
    rows = [
        ("flush: pg_test_fsync, one 8 kB write + fdatasync", fl["flush"].get("fdatasync_us")),
        ("flush: open_datasync", fl["flush"].get("open_datasync_us")),
        ("asyncpg `SELECT 1` round trip p50", fl["select1"]["p50_us"]),
        ("asyncpg `SELECT 1` round trip p99", fl["select1"]["p99_us"]),
        ("one-row INSERT + commit p50", fl["commit"]["p50_us"]),
        ("one-row INSERT + commit p99", fl["commit"]["p99_us"]),
    ]
    return "\n".join(["| floor | µs |", "|---|---|"] + [f"| {k} | {fmt(v)} |" for k, v in rows])


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(doc: dict[str, Any]) -> str:
    out = ["| target | measured | verdict |", "|---|---|---|"]

    def row(name: str, value: float | None, goal: float, higher_is_better: bool,
            unit: str = "") -> None:
        if value is None:
            out.append(f"| {name} | not measured | - |")
            return
        ok = value >= goal if higher_is_better else value <= goal
        if ok:
            verdict = "met"
        elif higher_is_better:
            verdict = f"missed by {(1 - value / goal) * 100:.0f}% ({fmt(value)} of {fmt(goal)})"
        else:
            verdict = f"missed by {(value / goal - 1) * 100:.0f}% ({fmt(value)} vs ≤ {fmt(goal)})"
        out.append(f"| {name} | {fmt(value)}{unit} | {verdict} |")

    for scen, fig in (("drain", "runs_per_s"), ("steady_peak", "runs_per_s")):
        w = med(doc, scen, "waypost", fig)
        row(f"{scen} ≥ 1.2x pgqueuer", ratio(w, med(doc, scen, "pgqueuer", fig)), 1.2, True, "x")
        row(f"{scen} ≥ 5x procrastinate", ratio(w, med(doc, scen, "procrastinate", fig)), 5, True,
            "x")
    row("wake-up p50 ≤ 5 ms", med(doc, "wakeup", "waypost", "p50_ms"), 5, False, " ms")
    row("wake-up p99 ≤ 20 ms", med(doc, "wakeup", "waypost", "p99_ms"), 20, False, " ms")
    row("steady enqueue→start p99 ≤ 25 ms at 50% of peak",
        med(doc, "steady", "waypost", "p99_ms"), 25, False, " ms")
    row("checkpoint 1 KB p50 ≤ 2 ms", med(doc, "checkpoint", "waypost", "1kb_p50_ms"), 2, False,
        " ms")
    row("checkpoint 1 KB p99 ≤ 5 ms", med(doc, "checkpoint", "waypost", "1kb_p99_ms"), 5, False,
        " ms")
    row("enqueue→start p99 ≤ 1 s with a REPEATABLE READ transaction open",
        med(doc, "bloat", "waypost", "long_txn_p99_ms"), 1000, False, " ms")
    for label in ("plain", "long_txn", "pgqueuer:long_txn"):
        samples = doc.get("meta", {}).get("bloat_samples", {}).get(label)
        if not samples:
            continue
        half = [s["total_bytes"] for s in samples[len(samples) // 2:]]
        first = [s["total_bytes"] for s in samples[: len(samples) // 2]] or half
        growth = max(half) / max(first) - 1
        verdict = ("met (no growth in the second half)" if growth <= 0.1
                   else f"missed: grew {growth * 100:.0f}% in the second half")
        out.append(f"| hot table bounded ({label}) | {fmt(max(first) / 1024)} kB max in the "
                   f"first half, {fmt(max(half) / 1024)} kB in the second | {verdict} |")
    return "\n".join(out)


def main() -> None:
    newest = sorted((HERE / "results").glob("*.json"))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else newest[-1]
    doc = json.loads(path.read_text())
    print(f"Results file: `bench/results/{path.name}` ({doc['date']}, "
          f"{'quick' if doc['quick'] else 'full'} run)\n")
    print("### Targets\n")
    print(targets(doc) + "\n")
    print("### Floors\n")
    print(floors_table(doc) + "\n")
    print("### All figures (median of repeats, min-max in brackets)\n")
    print(results_table(doc))


if __name__ == "__main__":
    main()
