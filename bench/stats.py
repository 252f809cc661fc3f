"""Percentiles, medians and spreads, and the results tree."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median of repeats with min, max and the relative spread ((max-min)/median)."""
    vals = [v for v in values if v == v]  # drop NaN
    if not vals:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "repeats": []}
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / med * 100 if med else 0.0
    return {"median": med, "min": min(vals), "max": max(vals),
            "spread_pct": round(spread, 1), "repeats": list(values)}


class Results:
    """scenario -> system -> figure -> list of repeat values (summarised at the end)."""

    def __init__(self) -> None:
        self.raw: dict[str, dict[str, dict[str, list[float]]]] = {}

    def add(self, scenario: str, system: str, figure: str, value: float) -> None:
        self.raw.setdefault(scenario, {}).setdefault(system, {}).setdefault(figure, []).append(
            float(value))

    def summarised(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {sc: {sy: {fig: summary(v) for fig, v in figs.items()}
                     for sy, figs in systems.items()}
                for sc, systems in self.raw.items()}

    def median(self, scenario: str, system: str, figure: str) -> float | None:
        vals = self.raw.get(scenario, {}).get(system, {}).get(figure)
        if not vals:
            return None
        return summary(vals)["median"]
