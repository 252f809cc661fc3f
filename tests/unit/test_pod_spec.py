"""The attempt Pod and Secret builders, pinned by golden files.

Regenerate the golden files after an intended change with
``WAYPOST_UPDATE_GOLDEN=1 pytest tests/unit/test_pod_spec.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from waypost.backends import pod_spec
from waypost.backends.pod_spec import OwnerReference, PodSettings
from waypost.engine.backend import AttemptLaunch, PrewarmTarget
from waypost.model.task import TaskSpec

GOLDEN = Path(__file__).parent / "golden"
TOKEN = "wpa_3b9f0c1e7d2a4c58b6e1f0a9d8c7b6a5"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _launch(**changes: Any) -> AttemptLaunch:
    launch = AttemptLaunch(
        run_id=uuid.UUID("0192c2f0-7c1a-7b3e-9f42-5d1e8a6c4b2f"),
        attempt=2,
        claim_token=4711,
        namespace="shop",
        task="process-order",
        entrypoint="shop.orders:process_order",
        image="registry.example/shop-tasks:1.4.2",
        memory_bytes=128 * 1024 * 1024,
        timeout_seconds=90.5,
        credential=TOKEN,
        coordinator_url="http://127.0.0.1:8080",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        env={"LOG_LEVEL": "debug", "SHOP_API": "https://shop.internal"},
    )
    return replace(launch, **changes)


def _settings(**changes: Any) -> PodSettings:
    settings = PodSettings(
        coordinator_url="http://waypost.waypost-system.svc:8080",
        owner=OwnerReference(kind="TaskRun", name="order-42",
                             uid="6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"),
    )
    return replace(settings, **changes)


def _golden(name: str, manifest: dict[str, Any]) -> None:
    path = GOLDEN / name
    text = yaml.safe_dump(manifest, sort_keys=False, width=100)
    if os.environ.get("WAYPOST_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with WAYPOST_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} changed; if intended, regenerate with WAYPOST_UPDATE_GOLDEN=1 and review the diff"
    )


def test_attempt_pod_matches_golden_file() -> None:
    _golden("attempt_pod.yaml", pod_spec.build_attempt_pod(_launch(), _settings()))


def test_attempt_secret_matches_golden_file() -> None:
    _golden("attempt_secret.yaml", pod_spec.build_attempt_secret(_launch(), _settings()))


def test_pod_shape() -> None:
    pod = pod_spec.build_attempt_pod(_launch(), _settings())
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "wp-process-order-8a6c4b2f-2"
    assert meta["namespace"] == "shop"
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "waypost",
        "app.kubernetes.io/component": "runner",
        "waypost.dev/task": "process-order",
        "waypost.dev/run-id": "0192c2f0-7c1a-7b3e-9f42-5d1e8a6c4b2f",
        "waypost.dev/attempt": "2",
    }
    assert meta["annotations"]["waypost.dev/claim-token"] == "4711"
    assert meta["ownerReferences"] == [{
        "apiVersion": "waypost.dev/v1alpha1", "kind": "TaskRun", "name": "order-42",
        "uid": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "controller": True,
    }]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 91  # ceil(90.5)
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert "serviceAccountName" not in spec
    (container,) = spec["containers"]
    assert container["name"] == "runner"
    assert container["image"] == "registry.example/shop-tasks:1.4.2"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["waypost-runner"]
    assert container["resources"] == {
        "limits": {"memory": "128Mi", "ephemeral-storage": "1Gi"},
        "requests": {"memory": "128Mi", "ephemeral-storage": "0"}}


def test_pod_meets_the_restricted_pod_security_profile() -> None:
    spec = pod_spec.build_attempt_pod(_launch(), _settings())["spec"]
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc.get("privileged", False) is False
    # No volumes at all: the kubelet holds a Pod with any volume until its next
    # mount check (300 ms); /tmp is the container's writable layer, bounded.
    assert "volumes" not in spec and "volumeMounts" not in container
    assert container["resources"]["limits"]["ephemeral-storage"] == "1Gi"
    assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC"))


def test_credential_only_reaches_the_pod_through_the_secret() -> None:
    launch, settings = _launch(), _settings()
    pod = pod_spec.build_attempt_pod(launch, settings)
    secret = pod_spec.build_attempt_secret(launch, settings)
    assert TOKEN not in json.dumps(pod)
    assert secret["stringData"] == {"token": TOKEN}
    assert secret["immutable"] is True
    assert secret["metadata"]["labels"] == pod["metadata"]["labels"]
    assert secret["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]
    (container,) = pod["spec"]["containers"]
    [token] = [e for e in container["env"] if e["name"] == "WAYPOST_ATTEMPT_TOKEN"]
    assert token == {"name": "WAYPOST_ATTEMPT_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": secret["metadata"]["name"], "key": "token"}}}
    assert not [e for e in container["env"] if e["name"].endswith("_TOKEN_FILE")]
    assert all("value" in e for e in container["env"] if e is not token)


def test_a_task_env_cannot_override_the_runner_settings() -> None:
    launch = _launch(env={"WAYPOST_COORDINATOR_URL": "http://evil", "WAYPOST_ATTEMPT_TOKEN": "x",
                          "HOME": "/work", "A": "1"})
    (container,) = pod_spec.build_attempt_pod(launch, _settings())["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    names = [e["name"] for e in container["env"]]
    assert names == sorted(set(names))
    assert env["WAYPOST_COORDINATOR_URL"] == "http://waypost.waypost-system.svc:8080"
    assert env["WAYPOST_ATTEMPT_TOKEN"] != "x"  # the attempt's Secret, not the task's value
    assert "secretKeyRef" in env["WAYPOST_ATTEMPT_TOKEN"]
    assert env["HOME"] == "/work"
    assert env["A"] == "1"
    assert env["WAYPOST_RUN_ID"] == "0192c2f0-7c1a-7b3e-9f42-5d1e8a6c4b2f"
    assert env["WAYPOST_ATTEMPT"] == "2"


def test_the_operators_tracing_variables_reach_the_runner_before_the_tasks() -> None:
    settings = _settings(extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
                                    "OTEL_BSP_SCHEDULE_DELAY": "500"})
    launch = _launch(env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    (container,) = pod_spec.build_attempt_pod(launch, settings)["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert env["OTEL_BSP_SCHEDULE_DELAY"] == "100"  # the task's own wins


@pytest.mark.parametrize(("n_bytes", "expected"), [
    (64 * 1024 * 1024, "64Mi"),
    (1024 * 1024 * 1024, "1024Mi"),
    (96 * 1024 * 1024 + 1, str(96 * 1024 * 1024 + 1)),
    (500_000_000, "500000000"),
])
def test_memory_quantity(n_bytes: int, expected: str) -> None:
    assert pod_spec.memory_quantity(n_bytes) == expected
    (container,) = pod_spec.build_attempt_pod(
        _launch(memory_bytes=n_bytes), _settings())["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == expected
    assert container["resources"]["requests"]["memory"] == expected


@pytest.mark.parametrize("task", [
    "a", "process-order", "x" * 63, "a-" * 40 + "b", "Weird_Name.v2", "---",
])
@pytest.mark.parametrize("attempt", [1, 9, 100])
def test_pod_names_are_dns_labels(task: str, attempt: int) -> None:
    launch = _launch(task=task, attempt=attempt)
    name = pod_spec.pod_name(launch)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert name.startswith("wp-")
    assert name.endswith(f"-8a6c4b2f-{attempt}")
    labels = pod_spec.build_attempt_pod(launch, _settings())["metadata"]["labels"]
    for value in labels.values():
        assert len(value) <= 63
        assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", value), value


def test_pod_names_differ_per_run_and_attempt() -> None:
    # UUIDv7 ids made in the same millisecond share their head, not their tail.
    a = _launch(run_id=uuid.UUID("0192c2f0-7c1a-7b3e-9f42-000000000001"))
    b = _launch(run_id=uuid.UUID("0192c2f0-7c1a-7b3e-9f42-000000000002"))
    names = {pod_spec.pod_name(a), pod_spec.pod_name(b), pod_spec.pod_name(replace(a, attempt=3))}
    assert len(names) == 3


def test_long_task_names_keep_a_distinct_label() -> None:
    long_a, long_b = "t" * 70 + "a", "t" * 70 + "b"
    assert pod_spec.label_value(long_a) != pod_spec.label_value(long_b)
    assert pod_spec.label_value("process-order") == "process-order"


def test_task_spec_adds_service_account_and_env_from() -> None:
    task = TaskSpec.model_validate({
        "entrypoint": "shop.orders:process_order",
        "serviceAccountName": "shop-runner",
        "envFrom": [{"secretRef": {"name": "shop-db"}},
                    {"configMapRef": {"name": "shop-config"}, "prefix": "SHOP_"}],
    })
    pod = pod_spec.build_attempt_pod(_launch(), _settings(), task)
    assert pod["spec"]["serviceAccountName"] == "shop-runner"
    assert pod["spec"]["automountServiceAccountToken"] is False
    (container,) = pod["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "shop-db"}},
                                    {"configMapRef": {"name": "shop-config"}, "prefix": "SHOP_"}]
    # Without one on the Task, the namespace's default account (its token still unmounted).
    plain = pod_spec.build_attempt_pod(_launch(), _settings())
    assert "serviceAccountName" not in plain["spec"]


def test_the_pod_is_killed_after_the_tasks_cancellation_grace() -> None:
    # A deleted TaskRun's Pod is removed by the garbage collector, which gives it
    # the Pod's terminationGracePeriodSeconds: it must be the Task's grace.
    task = TaskSpec.model_validate({
        "entrypoint": "shop.orders:process_order",
        "cancellation": {"gracePeriodSeconds": 7},
    })
    pod = pod_spec.build_attempt_pod(_launch(), _settings(), task)
    assert pod["spec"]["terminationGracePeriodSeconds"] == 7
    plain = pod_spec.build_attempt_pod(_launch(), _settings())
    assert plain["spec"]["terminationGracePeriodSeconds"] == 30


def test_settings_image_and_owner() -> None:
    settings = _settings(owner=None, default_image="waypost-runner:dev",
                         image_pull_policy="Never")
    pod = pod_spec.build_attempt_pod(_launch(image=None), settings)
    assert pod["metadata"]["namespace"] == _launch().namespace
    assert "ownerReferences" not in pod["metadata"]
    (container,) = pod["spec"]["containers"]
    assert (container["image"], container["imagePullPolicy"]) == ("waypost-runner:dev", "Never")
    secret = pod_spec.build_attempt_secret(_launch(image=None), settings)
    assert secret["metadata"]["name"] == pod["metadata"]["name"]
    [token] = [e for e in container["env"] if "valueFrom" in e]
    assert token["valueFrom"]["secretKeyRef"]["name"] == pod["metadata"]["name"]
    with pytest.raises(ValueError, match="no image"):
        pod_spec.build_attempt_pod(_launch(image=None), _settings())


def test_timeout_rounds_up_to_whole_seconds() -> None:
    for seconds, expected in ((3600.0, 3600), (0.2, 1), (59.01, 60)):
        spec = pod_spec.build_attempt_pod(_launch(timeout_seconds=seconds), _settings())["spec"]
        assert spec["activeDeadlineSeconds"] == expected


def test_secret_owner_patch_points_at_the_created_pod() -> None:
    pod = pod_spec.build_attempt_pod(_launch(), _settings())
    pod["metadata"]["uid"] = "11111111-2222-3333-4444-555555555555"
    patch = pod_spec.secret_owner_patch(pod)
    assert patch == {"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "Pod", "name": "wp-process-order-8a6c4b2f-2",
        "uid": "11111111-2222-3333-4444-555555555555", "controller": False,
    }]}}


def test_run_selector() -> None:
    assert pod_spec.run_selector("r-1") == (
        "app.kubernetes.io/managed-by=waypost,waypost.dev/run-id=r-1"
    )


# --- pre-warmed Pods ------------------------------------------------------------

RUNNER_ID = uuid.UUID("5d1e8a6c-4b2f-4c7d-9f42-0192c2f07c1a")
RUNNER_TOKEN = "wpr.5d1e8a6c4b2f4c7d9f420192c2f07c1a.mac"


def _target(**spec_changes: Any) -> PrewarmTarget:
    spec = TaskSpec.model_validate({
        "entrypoint": "shop.orders:process_order", "image": "registry.example/shop-tasks:1.4.2",
        "resources": {"memory": "128Mi"}, "env": {"LOG_LEVEL": "debug"},
        "warmPool": {"maxWarm": 3}, **spec_changes})
    return PrewarmTarget(namespace="shop", task="process-order", spec=spec, fingerprint="f" * 32,
                         coordinator_url="http://waypost.waypost-system.svc:8080")


def test_prewarm_pod_matches_golden_file() -> None:
    _golden("prewarm_pod.yaml", pod_spec.build_prewarm_pod(
        _target(), _settings(owner=None), RUNNER_ID))


def test_prewarm_secret_matches_golden_file() -> None:
    _golden("prewarm_secret.yaml", pod_spec.build_prewarm_secret(
        _target(), RUNNER_ID, RUNNER_TOKEN))


def test_a_prewarmed_pod_names_no_attempt_and_keeps_the_restricted_profile() -> None:
    pod = pod_spec.build_prewarm_pod(_target(), _settings(owner=None), RUNNER_ID)
    secret = pod_spec.build_prewarm_secret(_target(), RUNNER_ID, RUNNER_TOKEN)
    meta, spec = pod["metadata"], pod["spec"]
    assert DNS_LABEL.match(meta["name"]) and meta["name"].endswith("-w")
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "waypost", "app.kubernetes.io/component": "runner",
        "waypost.dev/task": "process-order", "waypost.dev/warm-runner": str(RUNNER_ID)}
    assert "ownerReferences" not in meta
    assert "activeDeadlineSeconds" not in spec  # each attempt's timeout is the operator's
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["securityContext"] == pod_spec.build_attempt_pod(
        _launch(), _settings())["spec"]["containers"][0]["securityContext"]
    assert container["resources"]["limits"] == {"memory": "128Mi", "ephemeral-storage": "1Gi"}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["WAYPOST_PREWARM_ENTRYPOINT"] == "shop.orders:process_order"
    assert env["WAYPOST_RUNNER_TOKEN"] == {"secretKeyRef": {"name": meta["name"],
                                                            "key": "runner-token"}}
    assert env["WAYPOST_WARM_SCRUB_TMP"] == "1"
    assert env["LOG_LEVEL"] == "debug"
    assert not {"WAYPOST_RUN_ID", "WAYPOST_ATTEMPT_TOKEN", "WAYPOST_ATTEMPT"} & env.keys()
    # The credential only through the Secret, which holds nothing else.
    assert RUNNER_TOKEN not in json.dumps(pod)
    assert secret["stringData"] == {"runner-token": RUNNER_TOKEN}
    assert secret["metadata"]["name"] == meta["name"]
    assert "volumes" not in spec


def test_a_prewarmed_pod_needs_an_image() -> None:
    target = _target(image=None)
    with pytest.raises(ValueError, match="names no image"):
        pod_spec.build_prewarm_pod(target, _settings(), RUNNER_ID)
    pod = pod_spec.build_prewarm_pod(target, _settings(default_image="runner:1"), RUNNER_ID)
    assert pod["spec"]["containers"][0]["image"] == "runner:1"
