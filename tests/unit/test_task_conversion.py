"""One conversion from ``@task(...)`` to a Task, one retry type, one backoff formula."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from examples import flaky, hello, orders
from waypost.engine import retry as engine_retry
from waypost.model import from_sdk, k8s
from waypost.model.task import RetrySpec, TaskSpec
from waypost.sdk import Queue, Retry, task, transport
from waypost.sdk.decorator import Task

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [v for m in (hello, flaky, orders) for v in vars(m).values() if isinstance(v, Task)]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda t: t.id)
def test_every_example_converts_to_a_spec_the_model_accepts(example: Task[..., object]) -> None:
    definition = example.definition
    spec = from_sdk.task_spec(definition, image="img:1")
    assert spec.entrypoint == definition.entrypoint
    assert spec.memory_bytes == definition.memory_bytes
    assert spec.retry.max_attempts == definition.retry.max_attempts
    assert spec.queue_name(definition.id) == definition.queue_name
    if definition.timeout_seconds is not None:
        assert spec.timeout_seconds == definition.timeout_seconds


@task(id="all-set", memory="1Gi", timeout=90.5,
      retry=Retry(max_attempts=7, initial_delay=0.5, factor=3.0, max_delay=60.0, jitter=0.1,
                  retry_on=("oom", "lost"), oom_memory_multiplier=2.0, oom_memory_ceiling="4Gi"),
      queue=Queue(name="shared", max_concurrency=2, per_key_concurrency=1))
def all_set(ctx: object, payload: object) -> None:
    return None


def test_every_retry_setting_reaches_the_task_spec() -> None:
    spec = from_sdk.task_spec(all_set.definition)
    assert spec.retry == RetrySpec.model_validate({
        "maxAttempts": 7,
        "backoff": {"initialSeconds": 0.5, "factor": 3.0, "maxSeconds": 60.0, "jitter": 0.1},
        "retryOn": ["oom", "lost"],
        "oom": {"memoryMultiplier": 2.0, "memoryCeiling": "4Gi"},
    })
    assert spec.timeout_seconds == 90.5
    assert (spec.queue.name, spec.queue.max_concurrency, spec.queue.per_key_concurrency) == (
        "shared", 2, 1)


@pytest.mark.parametrize("spec", [
    TaskSpec.model_validate({"entrypoint": "bench.tasks:noop"}),
    from_sdk.task_spec(all_set.definition, image="img:1"),
    TaskSpec.model_validate({
        "entrypoint": "m:f", "image": "img:2", "resources": {"memory": "256Mi"},
        "retry": {"maxAttempts": 3, "retryOn": ["error"]}, "timeout": {"maxDuration": "5m"},
        "cancellation": {"gracePeriodSeconds": 5}, "warmPool": {"enabled": False},
        "history": {"retainFor": "2h"}, "env": {"A": "1"}, "serviceAccountName": "sa",
        "schedules": [{"name": "nightly", "cron": "0 3 * * *"}]}),
], ids=["defaults", "sdk-all-set", "yaml-mixed"])
def test_the_stored_spec_is_the_same_spec_without_its_defaults(spec: TaskSpec) -> None:
    stored = spec.stored()
    assert TaskSpec.model_validate(stored) == spec
    # SQL reads these two from the stored JSON (run listings, cancel_run).
    assert stored["retry"]["maxAttempts"] == spec.retry.max_attempts
    assert stored["cancellation"]["gracePeriodSeconds"] == spec.cancellation.grace_period_seconds
    # Defaults are left out (none of these specs sets the history limits).
    assert "successfulRunsHistoryLimit" not in stored and "failedRunsHistoryLimit" not in stored
    full = spec.model_dump(mode="json", by_alias=True)
    assert len(json.dumps(stored)) < len(json.dumps(full))


def test_manifests_command_prints_what_dev_mode_registers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "waypost.cli", "manifests", "examples.flaky",
         "--image", "waypost-examples:0.1.0", "--namespace", "demo"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    docs = list(yaml.safe_load_all(out))
    tasks = [t for t in EXAMPLES if t.__module__ == "examples.flaky"]
    assert [d["metadata"]["name"] for d in docs] == [t.id for t in tasks]
    for doc, example in zip(docs, tasks, strict=True):
        assert (doc["apiVersion"], doc["kind"]) == (k8s.API_VERSION, k8s.TASK_KIND)
        assert doc["metadata"]["namespace"] == "demo"
        assert TaskSpec.model_validate(doc["spec"]) == from_sdk.task_spec(
            example.definition, image="waypost-examples:0.1.0")


def test_one_backoff_formula_for_the_sdk_the_engine_and_the_transport() -> None:
    sdk = Retry(max_attempts=9, initial_delay=0.5, factor=3.0, max_delay=20.0, jitter=0.25)
    spec = RetrySpec.model_validate(sdk.as_dict())
    for failures in range(1, 9):
        for fraction in (0.0, 0.3, 0.5, 0.99):
            expected = sdk.delay_before(failures + 1, random_fraction=fraction)
            assert spec.backoff.delay(failures, random_fraction=fraction) == expected
            assert 0 <= expected <= 20.0
        # The engine draws the fraction from its rng: same seed, same delay.
        drawn = random.Random(failures).random()
        assert engine_retry.next_delay(spec, failures, random.Random(failures)) == (
            sdk.delay_before(failures + 1, random_fraction=drawn))
    # Transient request retries: 0.2 s doubling up to 5 s, about 15 s over 8 tries.
    waits = [transport.PATIENT.delay_after(n) for n in range(1, transport.PATIENT.max_attempts)]
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_the_example_manifest_is_the_task_the_decorator_declares() -> None:
    docs = list(yaml.safe_load_all((REPO / "examples/manifests/hello.yaml").read_text()))
    [doc] = [d for d in docs if d["kind"] == k8s.TASK_KIND]
    written = TaskSpec.model_validate(doc["spec"])
    declared = from_sdk.task_spec(hello.hello.definition, image=doc["spec"]["image"])
    assert doc["metadata"]["name"] == hello.hello.id
    assert written.timeout_seconds == declared.timeout_seconds  # "1m" there, "60s" here
    assert written.model_dump(exclude={"timeout"}) == declared.model_dump(exclude={"timeout"})
