"""Helpers shared by the e2e tests (a plain module, so tests can import it)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

E2E_DIR = pathlib.Path(__file__).resolve().parent
CLUSTER_DIR = E2E_DIR / "cluster"
HARNESS_KUBECONFIG = (
    pathlib.Path(os.environ.get("E2E_STATE", "/var/lib/waypost-e2e")) / "admin.kubeconfig"
)


def kubeconfig_path() -> pathlib.Path:
    env = os.environ.get("KUBECONFIG")
    return pathlib.Path(env.split(os.pathsep)[0]) if env else HARNESS_KUBECONFIG


def kubectl_bin() -> str:
    """The harness's kubectl (same version as the cluster), else KUBECTL or PATH's."""
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    versions = (E2E_DIR / "cluster" / "versions.sh").read_text()
    version = next(
        line.split("=")[1].split()[0]
        for line in versions.splitlines()
        if line.startswith("KUBERNETES_VERSION=")
    )
    cache = os.environ.get("E2E_CACHE", "/var/cache/waypost-e2e")
    built = f"{cache}/kubernetes-{version}/bin/kubectl"
    return built if os.path.exists(built) else "kubectl"


def uses_harness() -> bool:
    """True when the tests run against the cluster e2e/cluster/up started."""
    try:
        return kubeconfig_path().resolve() == HARNESS_KUBECONFIG.resolve()
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5
) -> Any:
    """Poll until predicate() is truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def build_image(tag: str, context: pathlib.Path) -> str:
    """Build a Containerfile into the harness cluster's containerd."""
    out = subprocess.run(
        [str(CLUSTER_DIR / "build-image"), "-t", tag, str(context)],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return out.stdout.strip().splitlines()[-1]
