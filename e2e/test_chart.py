"""The Helm chart and the images on a real cluster: install with the bundled
Postgres in a namespace enforcing the `restricted` Pod Security profile, the
operator's environment reaches that Postgres, RBAC is what the chart promises,
a runner Pod starts, and uninstall keeps only what it should.

The operator itself runs with 0 replicas here: the operator e2e tests install
it for real, and a second operator watching every namespace would compete
with theirs. Its Deployment's own Pod template (env, security context) is
what runs the schema migrations, so the wiring the operator gets is tested.

Images: on the harness cluster `runner-image/build-images` builds them
(cached after the first run). On an external cluster, load
waypost-runner/-operator:<version> yourself and name a Postgres image that
behaves like the official one in WAYPOST_E2E_POSTGRES_IMAGE (default
postgres:16).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from e2e_support import E2E_DIR, kubeconfig_path, uses_harness, wait_until

REPO = E2E_DIR.parent
CHART = REPO / "charts" / "waypost"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
CRDS = ("tasks.waypost.dev", "taskruns.waypost.dev")


def run(*cmd: str, timeout: float = 300) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def helm() -> str:
    return run(str(REPO / "charts/tools/ensure-helm"), timeout=1800).strip()


@pytest.fixture(scope="session")
def postgres_image() -> str:
    if uses_harness():
        run(str(REPO / "runner-image/build-images"), "runner", "operator", "postgres", timeout=1800)
        return "waypost-e2e-postgres:15"
    return os.environ.get("WAYPOST_E2E_POSTGRES_IMAGE", "postgres:16")


@pytest.fixture
def release(
    helm: str, postgres_image: str, namespace: str, api: client.ApiClient
) -> Iterator[tuple[str, str]]:
    ext = client.ApiextensionsV1Api(api)
    existing = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    # CRDs belong to one release; when another release installed them, leave them be.
    own_crds = not (set(CRDS) & existing)
    # Every Pod of the release (and the test's own) must pass the `restricted`
    # Pod Security profile: the API server refuses any that does not.
    client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}})
    name = f"wp-{uuid.uuid4().hex[:6]}"
    repo, tag = postgres_image.rsplit(":", 1)
    run(
        helm,
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--wait=false",
        "--set",
        "operator.replicas=0",
        # The uninstall hook deletes runner Pods of the watched namespaces only.
        "--set",
        f"operator.watchNamespaces={{{namespace}}}",
        "--set",
        "postgresql.enabled=true",
        "--set",
        f"postgresql.image.repository={repo}",
        "--set-string",
        f"postgresql.image.tag={tag}",
        "--set",
        "postgresql.persistence.enabled=false",
        "--set",
        f"crds.install={str(own_crds).lower()}",
    )
    yield name, namespace
    run(helm, "uninstall", name, "--namespace", namespace, "--wait")
    if own_crds:
        delete_crds(ext)


def delete_crds(ext: client.ApiextensionsV1Api) -> None:
    """Delete the waypost CRDs and wait until they are gone (the next install recreates them)."""
    for crd in CRDS:
        try:
            ext.delete_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    wait_until(lambda: not set(CRDS) & {c.metadata.name
                                        for c in ext.list_custom_resource_definition().items},
               60, "the waypost CRDs to be deleted")


def pod_done(core: client.CoreV1Api, name: str, ns: str) -> client.V1Pod | None:
    pod = core.read_namespaced_pod(name, ns)
    return pod if pod.status.phase in ("Succeeded", "Failed") else None


def exit_code(pod: client.V1Pod) -> int:
    return int(pod.status.container_statuses[0].state.terminated.exit_code)


def can_i(
    api: client.ApiClient,
    user: str,
    verb: str,
    resource: str,
    ns: str = "",
    name: str = "",
    group: str = "",
    subresource: str = "",
) -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=["system:serviceaccounts"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                resource=resource,
                namespace=ns or None,
                name=name or None,
                group=group,
                subresource=subresource or None,
            ),
        )
    )
    result = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(result.status.allowed)


def test_chart_installs_with_bundled_postgres(
    release: tuple[str, str],
    api: client.ApiClient,
    core: client.CoreV1Api,
) -> None:
    name, ns = release
    apps = client.AppsV1Api(api)
    pg = f"{name}-waypost-postgresql"

    wait_until(
        lambda: apps.read_namespaced_stateful_set(pg, ns).status.ready_replicas == 1,
        180,
        f"{pg} ready",
    )

    # The operator Deployment's own Pod template applies the migrations: its
    # DSN (assembled from the password Secret), user, read-only root and
    # security context are what the operator will run with.
    deployment = apps.read_namespaced_deployment(f"{name}-waypost", ns)
    template: dict[str, Any] = api.sanitize_for_serialization(deployment.spec.template)
    container = template["spec"]["containers"][0]
    assert container["image"] == f"waypost-operator:{VERSION}"
    container.update(name="migrate", command=["waypost", "migrate"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        container.pop(probe, None)
    template["spec"]["restartPolicy"] = "Never"
    template["metadata"]["labels"]["app.kubernetes.io/component"] = "migrate-check"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "migrate", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    core.create_namespaced_pod(ns, pod)
    done = wait_until(lambda: pod_done(core, "migrate", ns), 120, "migrate Pod to finish")
    log = core.read_namespaced_pod_log("migrate", ns)
    assert exit_code(done) == 0, log
    assert "applied migrations" in log

    # A runner Pod from the runner image, configured with nothing: a clear
    # configuration error (exit 2), as the operator would see it in its status.
    core.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "runner-noenv"},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "runner",
                        "image": f"waypost-runner:{VERSION}",
                        "imagePullPolicy": "IfNotPresent",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        },
    )
    done = wait_until(lambda: pod_done(core, "runner-noenv", ns), 60, "runner Pod to exit")
    log = core.read_namespaced_pod_log("runner-noenv", ns)
    assert exit_code(done) == 2, log
    assert "WAYPOST_COORDINATOR_URL is not set" in json.loads(log.strip().splitlines()[-1])["error"]


def test_operator_rbac_on_the_cluster(release: tuple[str, str], api: client.ApiClient) -> None:
    name, ns = release
    sa = f"system:serviceaccount:{ns}:{name}-waypost"
    lease = "waypost-leader"
    coordination = "coordination.k8s.io"
    assert can_i(api, sa, "create", "leases", ns, group=coordination)
    assert can_i(api, sa, "update", "leases", ns, lease, group=coordination)
    assert not can_i(api, sa, "update", "leases", ns, "someone-elses-lease", group=coordination)
    assert not can_i(api, sa, "update", "leases", "kube-system", lease, group=coordination)
    assert can_i(api, sa, "create", "pods", "any-namespace")
    assert can_i(api, sa, "create", "secrets", "any-namespace")
    assert not can_i(api, sa, "list", "secrets", "any-namespace")
    assert can_i(
        api, sa, "patch", "taskruns", "any-namespace", group="waypost.dev", subresource="status"
    )
    assert not can_i(api, sa, "delete", "tasks", "any-namespace", group="waypost.dev")
    assert not can_i(api, sa, "create", "deployments", ns, group="apps")


def test_uninstall_keeps_crds_and_the_password_and_removes_runner_pods(
    helm: str,
    postgres_image: str,
    namespace: str,
    api: client.ApiClient,
    core: client.CoreV1Api,
) -> None:
    ext = client.ApiextensionsV1Api(api)
    # CRDs another release installed (and kept) belong to it: then only the
    # password Secret's keep policy is checked here (the unit tests pin the
    # CRDs' annotation).
    own_crds = not (set(CRDS) & {c.metadata.name
                                 for c in ext.list_custom_resource_definition().items})
    name = f"wp-{uuid.uuid4().hex[:6]}"
    repo, tag = postgres_image.rsplit(":", 1)
    run(helm, "install", name, str(CHART), "--namespace", namespace,
        "--set", "operator.replicas=0", "--set", f"operator.watchNamespaces={{{namespace}}}",
        "--set", "postgresql.enabled=true",
        "--set", f"postgresql.image.repository={repo}", "--set-string",
        f"postgresql.image.tag={tag}", "--set", "postgresql.persistence.enabled=false",
        "--set", f"crds.install={str(own_crds).lower()}")
    # An attempt's Pod still running when the operator goes: the uninstall
    # hook must delete it.
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "wp-leftover-1", "labels": {
            "app.kubernetes.io/managed-by": "waypost", "app.kubernetes.io/component": "runner",
            "waypost.dev/run-id": str(uuid.uuid4())}},
        "spec": {
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "runner", "image": f"waypost-runner:{VERSION}",
                "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c", "import time; time.sleep(600)"],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    })
    wait_until(lambda: core.read_namespaced_pod("wp-leftover-1", namespace).status.phase
               == "Running", 60, "the leftover runner Pod to run")
    try:
        out = run(helm, "uninstall", name, "--namespace", namespace, "--wait")
        assert "kept due to the resource policy" in out
        if own_crds:
            kept = {c.metadata.name for c in ext.list_custom_resource_definition().items}
            assert set(CRDS) <= kept
        secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        assert f"{name}-waypost-postgresql" in secrets
        # The hook has finished (helm waits for it): the runner Pod is gone already.
        leftovers = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/managed-by=waypost").items
        assert [p.metadata.name for p in leftovers
                if p.metadata.deletion_timestamp is None] == []
        wait_until(
            lambda: not core.list_namespaced_pod(namespace).items, 60, "the release's Pods to go"
        )
    finally:
        if own_crds:
            delete_crds(ext)
