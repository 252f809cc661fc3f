"""`e2e/cluster/down` leaves no process, mount, network interface, iptables
chain or cgroup behind. Marked `teardown`, so it runs after every other e2e
test (and leaves the harness cluster down; `make e2e-up` brings it back)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time

import pytest

from e2e_support import CLUSTER_DIR, uses_harness

STATE = pathlib.Path(os.environ.get("E2E_STATE", "/var/lib/waypost-e2e"))
RUN = pathlib.Path(os.environ.get("E2E_RUN", "/run/waypost-e2e"))
CACHE = pathlib.Path(os.environ.get("E2E_CACHE", "/var/cache/waypost-e2e"))
BRIDGE = "wpe2e0"


def _processes() -> dict[int, tuple[str, str]]:
    """pid -> (exe, cmdline) for every process we can read."""
    procs = {}
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            exe = os.readlink(p / "exe")
        except OSError:
            continue
        procs[int(p.name)] = (exe, cmd)
    return procs


def _ours(exe: str, cmd: str) -> bool:
    return exe.startswith(str(CACHE)) or str(RUN) in cmd or str(STATE) in cmd


def _mounts() -> list[str]:
    lines = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4].replace("\\040", " ") for line in lines]


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return [line.split(": ")[1].split("@")[0] for line in out.stdout.splitlines()]


def _bridge_ports() -> list[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True
    )
    return [line.split(": ")[1].split("@")[0] for line in out.stdout.splitlines()]


def _cgroup_leftovers() -> list[str]:
    return [str(p) for p in pathlib.Path("/sys/fs/cgroup").glob("*/kubepods")] + [
        str(p) for p in pathlib.Path("/sys/fs/cgroup").glob("kubepods")
    ]


@pytest.mark.teardown
def test_down_leaves_nothing_behind():
    if not uses_harness():
        pytest.skip("KUBECONFIG names an external cluster: not ours to take down")
    started = {int(f.read_text()) for f in (RUN / "pids").glob("*.pid") if f.read_text().strip()}
    assert started, "the harness cluster should be up before this test"
    ours_before = {pid for pid, (exe, cmd) in _processes().items() if _ours(exe, cmd)}
    ports_before = _bridge_ports()
    assert ports_before, "the smoke tests' Pods should have veths on the bridge"
    # Network namespaces that existed before `up` (recorded by up) are not ours.
    netns_foreign = set((RUN / "netns.before").read_text().split())

    created = (
        (RUN / "created-paths").read_text().split() if (RUN / "created-paths").exists() else []
    )

    t0 = time.monotonic()
    subprocess.run([str(CLUSTER_DIR / "down")], check=True, timeout=300)
    print(f"down took {time.monotonic() - t0:.1f} s")

    procs = _processes()
    assert not (started | ours_before) & procs.keys(), "processes survived down"
    assert not [pid for pid, (exe, cmd) in procs.items() if _ours(exe, cmd)]
    prefixes = (str(STATE), str(RUN), str(CACHE))
    assert not [m for m in _mounts() if m.startswith(prefixes)]
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    leftover_netns = {n for n in netns - netns_foreign if n.startswith("cni-")}
    assert not leftover_netns, "Pod network namespaces survived down"
    links = _links()
    assert BRIDGE not in links
    assert not set(ports_before) & set(links), "veths survived down"
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "KUBE-" not in iptables and "WAYPOST-E2E" not in iptables
    assert not _cgroup_leftovers()
    assert not STATE.exists() and not RUN.exists()
    # Fixed paths the kubelet/containerd/CNI created outside our directories.
    assert not [p for p in created if os.path.exists(p)]
    logs = pathlib.Path("/var/log/containers")
    assert not [
        link for link in (logs.glob("*.log") if logs.is_dir() else []) if not link.exists()
    ], "dangling container log links"
