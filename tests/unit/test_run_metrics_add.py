"""RunMetrics.add: what the database summed per page lands in the series exactly as
one observe()/inc() per event would (it relies on prometheus_client's Histogram
layout, which this test pins)."""

from __future__ import annotations

import bisect
import random
from collections import Counter as Count

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from waypost.engine.metrics import BYTES_BUCKETS, SECONDS_BUCKETS, RunMetrics
from waypost.store.telemetry import Tally


def _bucket(value: float, bounds: tuple[float, ...]) -> int:
    # As telemetry.sql places it: the number of upper bounds below the value.
    return bisect.bisect_left(bounds, value)


def test_tallies_add_up_to_the_same_series_as_one_call_per_event() -> None:
    rng = random.Random(11)
    # Values on the bounds too: an observation equal to a bound is in that bucket.
    waits = [rng.choice(SECONDS_BUCKETS) for _ in range(50)] + [
        rng.uniform(0, 30000) for _ in range(200)] + [0.0]
    sizes = [rng.choice(BYTES_BUCKETS) for _ in range(20)] + [
        float(rng.randrange(1, 40_000_000)) for _ in range(100)]
    statuses = [rng.choice(["succeeded", "failed", "cancelled"]) for _ in range(30)]

    one_by_one = RunMetrics()
    for v in waits:
        one_by_one.queue_wait.labels("ns", "t").observe(v)
    for v in sizes:
        one_by_one.checkpoint_size.labels("ns", "t").observe(v)
    for s in statuses:
        one_by_one.finished.labels("ns", "t", s).inc()
    one_by_one.oom_kills.labels("ns", "t").inc(3)

    tallies: list[Tally] = []
    for series, values, bounds in (("queue_wait", waits, SECONDS_BUCKETS),
                                   ("checkpoint_size", sizes, BYTES_BUCKETS)):
        by_bucket: dict[int, list[float]] = {}
        for v in values:
            by_bucket.setdefault(_bucket(v, bounds), []).append(v)
        tallies += [Tally("ns", "t", series, None, b, len(vs), sum(vs))
                    for b, vs in by_bucket.items()]
    tallies += [Tally("ns", "t", "finished", s, None, n, None)
                for s, n in Count(statuses).items()]
    tallies.append(Tally("ns", "t", "oom_kills", None, None, 3, None))
    summed = RunMetrics()
    summed.add(tallies[: len(tallies) // 2])
    summed.add(tallies[len(tallies) // 2:])  # a second page adds to the first

    def samples(m: RunMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        # Without the _created samples (each series' creation time).
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(
                    generate_latest(m.registry).decode())
                for s in family.samples if not s.name.endswith("_created")}

    got, want = samples(summed), samples(one_by_one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        # Sums are added in another order: equal up to rounding.
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got[("waypost_queue_wait_seconds_count",
                (("task", "t"), ("task_namespace", "ns")))] == len(waits)
    # Both bucket kinds and the +Inf bucket were reached.
    assert got[("waypost_checkpoint_size_bytes_bucket",
                (("le", "+Inf"), ("task", "t"), ("task_namespace", "ns")))] == len(sizes)
    assert max(sizes) > BYTES_BUCKETS[-1] and max(waits) > SECONDS_BUCKETS[-1]


def test_tallies_of_tasks_past_the_limit_count_as_other() -> None:
    m = RunMetrics(max_tasks=1)
    m.add([Tally("ns", "a", "retries", None, None, 2, None),
           Tally("ns", "b", "retries", None, None, 5, None),
           Tally("ns", "c", "queue_wait", None, 0, 1, 0.001)])
    text = generate_latest(m.registry).decode()
    assert 'waypost_run_retries_total{task="a",task_namespace="ns"} 2.0' in text
    assert 'waypost_run_retries_total{task="_other",task_namespace="ns"} 5.0' in text
    assert 'waypost_queue_wait_seconds_count{task="_other",task_namespace="ns"} 1.0' in text
