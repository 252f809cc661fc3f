"""Smoke tests proving the e2e cluster is a real Kubernetes.

Real kubelet, real containers from a locally built image, real memory limits
(OOMKilled), controllers (Job), coordination Leases with optimistic
concurrency, CRDs, cluster DNS, Service routing from Pods and from the host,
service-account token signing and TokenReview.
"""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from kubernetes import client

from e2e_support import uses_harness, wait_until

pytestmark = pytest.mark.timeout(600)


def _pod(name: str, image: str, args: list[str], **spec: object) -> client.V1Pod:
    container = client.V1Container(
        name="main",
        image=image,
        image_pull_policy="IfNotPresent",
        args=args,
        resources=spec.pop("resources", None),
        ports=spec.pop("ports", None),
        readiness_probe=spec.pop("readiness_probe", None),
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=spec.pop("labels", None)),
        spec=client.V1PodSpec(
            containers=[container],
            restart_policy=spec.pop("restart_policy", "Never"),
            termination_grace_period_seconds=1,
            automount_service_account_token=False,
        ),
    )


def _phase(core: client.CoreV1Api, ns: str, name: str) -> str:
    return core.read_namespaced_pod(name, ns).status.phase or ""


def _wait_finished(core: client.CoreV1Api, ns: str, name: str, timeout: float = 120) -> str:
    return wait_until(
        lambda: _phase(core, ns, name) in ("Succeeded", "Failed") and _phase(core, ns, name),
        timeout,
        f"pod {ns}/{name} to finish",
    )


def test_pod_from_local_image_runs_and_logs_are_readable(core, namespace, smoke_image):
    core.create_namespaced_pod(namespace, _pod("hello", smoke_image, ["hello"]))
    assert _wait_finished(core, namespace, "hello") == "Succeeded"
    logs = core.read_namespaced_pod_log("hello", namespace)
    assert "hello from waypost e2e on hello" in logs


def test_container_over_its_memory_limit_is_oomkilled(core, namespace, smoke_image):
    limits = client.V1ResourceRequirements(limits={"memory": "48Mi"}, requests={"memory": "48Mi"})
    core.create_namespaced_pod(
        namespace, _pod("hog", smoke_image, ["oom", "512"], resources=limits)
    )
    assert _wait_finished(core, namespace, "hog") == "Failed"
    state = core.read_namespaced_pod("hog", namespace).status.container_statuses[0].state
    assert state.terminated is not None
    assert state.terminated.reason == "OOMKilled"
    assert state.terminated.exit_code == 137


def test_job_completes(api, namespace, smoke_image):
    batch = client.BatchV1Api(api)
    template = _pod("unused", smoke_image, ["hello"])
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="once"),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(spec=template.spec),
        ),
    )
    batch.create_namespaced_job(namespace, job)

    def complete() -> bool:
        conditions = batch.read_namespaced_job("once", namespace).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conditions)

    wait_until(complete, 120, "job to complete")
    assert batch.read_namespaced_job("once", namespace).status.succeeded == 1


def test_lease_update_detects_resource_version_conflicts(api, namespace):
    coord = client.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease(
        namespace,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="leader"),
            spec=client.V1LeaseSpec(
                holder_identity="replica-a", lease_duration_seconds=15, lease_transitions=0
            ),
        ),
    )
    stale = lease.metadata.resource_version

    lease.spec.holder_identity = "replica-b"
    lease.spec.lease_transitions = 1
    updated = coord.replace_namespaced_lease("leader", namespace, lease)
    assert updated.spec.holder_identity == "replica-b"
    assert updated.metadata.resource_version != stale

    # A writer that read before that update must lose.
    lease.metadata.resource_version = stale
    lease.spec.holder_identity = "replica-c"
    with pytest.raises(client.ApiException) as conflict:
        coord.replace_namespaced_lease("leader", namespace, lease)
    assert conflict.value.status == 409
    assert coord.read_namespaced_lease("leader", namespace).spec.holder_identity == "replica-b"


def test_crd_installed_and_custom_resource_created(api, namespace):
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    group, plural = "e2e.waypost.dev", f"widgets{uuid.uuid4().hex[:6]}"
    crd = client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name=f"{plural}.{group}"),
        spec=client.V1CustomResourceDefinitionSpec(
            group=group,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(
                plural=plural, singular=plural[:-1], kind="Widget" + plural[7:].upper()
            ),
            versions=[
                client.V1CustomResourceDefinitionVersion(
                    name="v1alpha1",
                    served=True,
                    storage=True,
                    subresources=client.V1CustomResourceSubresources(status={}),
                    schema=client.V1CustomResourceValidation(
                        open_apiv3_schema=client.V1JSONSchemaProps(
                            type="object",
                            properties={
                                "spec": client.V1JSONSchemaProps(
                                    type="object",
                                    required=["size"],
                                    properties={
                                        "size": client.V1JSONSchemaProps(type="integer", minimum=1)
                                    },
                                ),
                                "status": client.V1JSONSchemaProps(
                                    type="object", x_kubernetes_preserve_unknown_fields=True
                                ),
                            },
                        )
                    ),
                )
            ],
        ),
    )
    ext.create_custom_resource_definition(crd)
    try:

        def established() -> bool:
            status = ext.read_custom_resource_definition(crd.metadata.name).status
            return any(
                c.type == "Established" and c.status == "True" for c in status.conditions or []
            )

        wait_until(established, 60, "CRD established")
        kind = crd.spec.names.kind
        body = {
            "apiVersion": f"{group}/v1alpha1",
            "kind": kind,
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }
        # Discovery can lag a moment behind Established.
        wait_until(lambda: _try_create(custom, group, namespace, plural, body), 30, "create CR")
        got = custom.get_namespaced_custom_object(group, "v1alpha1", namespace, plural, "w1")
        assert got["spec"] == {"size": 3}
        # The schema is enforced by the apiserver.
        bad = dict(body, metadata={"name": "w2"}, spec={"size": 0})
        with pytest.raises(client.ApiException) as invalid:
            custom.create_namespaced_custom_object(group, "v1alpha1", namespace, plural, bad)
        assert invalid.value.status == 422
    finally:
        ext.delete_custom_resource_definition(crd.metadata.name)


def _try_create(custom, group, namespace, plural, body) -> bool:
    try:
        custom.create_namespaced_custom_object(group, "v1alpha1", namespace, plural, body)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


@pytest.fixture
def echo_service(core, namespace, smoke_image):
    """A Pod serving HTTP on 8080 behind Service `echo` (port 80)."""
    probe = client.V1Probe(http_get=client.V1HTTPGetAction(path="/", port=8080), period_seconds=1)
    core.create_namespaced_pod(
        namespace,
        _pod(
            "echo-server",
            smoke_image,
            ["serve", "8080"],
            labels={"app": "echo"},
            ports=[client.V1ContainerPort(container_port=8080)],
            readiness_probe=probe,
        ),
    )
    svc = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="echo"),
            spec=client.V1ServiceSpec(
                selector={"app": "echo"},
                ports=[client.V1ServicePort(port=80, target_port=8080)],
            ),
        ),
    )

    def ready() -> bool:
        status = core.read_namespaced_pod("echo-server", namespace).status
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])

    wait_until(ready, 120, "echo server ready")
    return svc


def test_pod_reaches_pod_through_service_dns_name(core, namespace, smoke_image, echo_service):
    urls = [
        f"http://echo.{namespace}.svc.cluster.local/",
        "http://echo/",  # the namespace search path
    ]
    core.create_namespaced_pod(namespace, _pod("client", smoke_image, ["fetch", *urls]))
    phase = _wait_finished(core, namespace, "client")
    logs = core.read_namespaced_pod_log("client", namespace)
    assert phase == "Succeeded", logs
    for url in urls:
        assert f"{url} -> served-by echo-server" in logs


def test_pod_reaches_itself_through_its_service(core, namespace, smoke_image, echo_service):
    """Hairpin: the server's own Pod fetches its Service."""
    stream = core.connect_get_namespaced_pod_exec  # exec proves kubelet streaming too
    from kubernetes.stream import stream as k8s_stream

    out = k8s_stream(
        stream,
        "echo-server",
        namespace,
        command=["python3", "/smoke.py", "fetch", "http://echo/"],
        stderr=True,
        stdout=True,
        stdin=False,
        tty=False,
    )
    assert "http://echo/ -> served-by echo-server" in out


def test_host_reaches_pod_through_its_service(core, namespace, echo_service):
    if uses_harness():
        # The harness routes the Service range onto its bridge.
        url = f"http://{echo_service.spec.cluster_ip}/"

        def fetch() -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:
                    return resp.read().decode()
            except OSError:
                return None

        body = wait_until(fetch, 30, f"host GET {url}")
    else:
        # An external cluster's Service range is not routed to this host: go
        # through the apiserver's service proxy instead.
        body = core.connect_get_namespaced_service_proxy_with_path("echo:80", namespace, "")
    assert "served-by echo-server" in body


def test_projected_token_passes_token_review(api, core, namespace):
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["waypost"], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token("default", namespace, request)
    review = client.AuthenticationV1Api(api).create_token_review(
        client.V1TokenReview(
            spec=client.V1TokenReviewSpec(token=token.status.token, audiences=["waypost"])
        )
    )
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"
    assert review.status.audiences == ["waypost"]


def test_components_report_pinned_versions(api, kubeconfig):
    """Version ldflags are set (no v0.0.0-master) and helm talks to the cluster."""
    if not uses_harness():
        pytest.skip("versions are pinned only for the harness cluster")
    import json
    import subprocess

    from e2e_support import CLUSTER_DIR

    pins = dict(
        line.split("#")[0].strip().split("=", 1)
        for line in (CLUSTER_DIR / "versions.sh").read_text().splitlines()
        if line.split("#")[0].strip().count("=") == 1 and "$" not in line
    )
    server = client.VersionApi(api).get_code()
    assert server.git_version == pins["KUBERNETES_VERSION"]
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in subprocess.run(
            [str(CLUSTER_DIR / "env")], capture_output=True, text=True, check=True
        ).stdout.split("\n")
        if line.startswith("export PATH=")
    )
    path = env["PATH"].replace("$PATH", "/usr/bin:/bin")
    kubectl = subprocess.run(
        ["kubectl", "version", "-o", "json"],
        env={"PATH": path, "KUBECONFIG": kubeconfig},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(kubectl.stdout)["clientVersion"]["gitVersion"] == pins["KUBERNETES_VERSION"]
    helm = subprocess.run(
        ["helm", "version", "--short"], env={"PATH": path}, capture_output=True, text=True
    )
    assert helm.stdout.startswith(pins["HELM_VERSION"]), helm.stdout + helm.stderr
    helm_list = subprocess.run(
        ["helm", "list", "-A"],
        env={"PATH": path, "KUBECONFIG": kubeconfig, "HOME": "/tmp"},
        capture_output=True,
        text=True,
    )
    assert helm_list.returncode == 0, helm_list.stderr


def test_pod_network_stays_on_this_machine(core, namespace, smoke_image, echo_service):
    """Pods have no default route, and the host drops forwarding off the bridge.

    Checked by inspection only: the test never sends a packet anywhere else.
    """
    if not uses_harness():
        pytest.skip("the network isolation is the harness cluster's own")
    import subprocess

    from kubernetes.stream import stream as k8s_stream

    routes = k8s_stream(
        core.connect_get_namespaced_pod_exec,
        "echo-server",
        namespace,
        command=["cat", "/proc/net/route"],
        stderr=True,
        stdout=True,
        stdin=False,
        tty=False,
    )
    destinations = [line.split()[1] for line in routes.splitlines()[1:] if line.strip()]
    assert destinations, routes
    assert "00000000" not in destinations, f"Pod has a default route:\n{routes}"
    mangle = subprocess.run(
        ["iptables", "-t", "mangle", "-S"], capture_output=True, text=True, check=True
    ).stdout
    assert "-A FORWARD -j WAYPOST-E2E" in mangle
    assert "-A WAYPOST-E2E -i wpe2e0 ! -o wpe2e0 -j DROP" in mangle
    assert "-A WAYPOST-E2E ! -i wpe2e0 -o wpe2e0 -j DROP" in mangle


def test_missing_image_fails_fast_without_leaving_the_machine(core, namespace):
    """A Pod whose image was never built gets ErrImagePull from a loopback 'registry'."""
    if not uses_harness():
        pytest.skip("the loopback registry redirect is the harness cluster's own")
    core.create_namespaced_pod(namespace, _pod("missing", "waypost-e2e-never-built:1", []))

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("missing", namespace).status.container_statuses
        waiting = statuses[0].state.waiting if statuses else None
        if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
            return waiting.message or waiting.reason
        return None

    wait_until(waiting_reason, 60, "ErrImagePull")
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=missing,reason=Failed"
    ).items
    messages = " ".join(e.message or "" for e in events)
    assert "127.0.0.1:9" in messages, messages
