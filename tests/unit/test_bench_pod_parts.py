"""bench/pod_parts.py reads containerd's and the kubelet's log lines as they are
written on the e2e cluster (lines copied from /var/log/waypost-e2e)."""

from __future__ import annotations

from pathlib import Path

from bench import pod_parts

SANDBOX = "bcd0ff892b75cdae7478368e188a838f9891c3e386df350537d9a476e9719585"
CONTAINER = "c980e35a156aa36ca2a15516cb4a30bb23dc67dd361b89ee507d5baa65032935"
META = "&PodSandboxMetadata{Name:wp-probe-1234abcd-1,Uid:ddca71bf,Namespace:ns1,Attempt:0,}"
CONTAINERD = f'''\
time="2026-11-30T00:23:08.100000000Z" level=info msg="RunPodSandbox for {META}"
time="2026-11-30T00:23:08.400000000Z" level=info msg="RunPodSandbox for {META} returns sandbox id \\"{SANDBOX}\\""
time="2026-11-30T00:23:08.410000000Z" level=info msg="CreateContainer within sandbox \\"{SANDBOX}\\" for container &ContainerMetadata{{Name:runner,Attempt:0,}}"
time="2026-11-30T00:23:08.450000000Z" level=info msg="CreateContainer within sandbox \\"{SANDBOX}\\" for &ContainerMetadata{{Name:runner,Attempt:0,}} returns container id \\"{CONTAINER}\\""
time="2026-11-30T00:23:08.455000000Z" level=info msg="StartContainer for \\"{CONTAINER}\\""
time="2026-11-30T00:23:08.700000000Z" level=info msg="StartContainer for \\"{CONTAINER}\\" returns successfully"
'''  # noqa: E501
KUBELET = '''\
E1130 00:23:07.900000   32309 secret.go:189] Couldn't get secret ns1/wp-probe-1234abcd-1: failed to sync secret cache: timed out waiting for the condition
E1130 00:23:07.900100   32309 secret.go:189] Couldn't get secret ns1/other-secret: failed to sync secret cache: timed out waiting for the condition
'''  # noqa: E501


def test_parts_of_a_pods_start_from_the_logs(tmp_path: Path) -> None:
    (tmp_path / "containerd.log").write_text(CONTAINERD, encoding="utf-8")
    (tmp_path / "kubelet.log").write_text(KUBELET, encoding="utf-8")
    [(name, times)] = pod_parts.pod_times(["wp-probe-1234abcd-1"], tmp_path).items()
    assert name == "wp-probe-1234abcd-1"
    assert round(times["sandbox_ready"] - times["sandbox_asked"], 3) == 0.3
    assert round(times["container_started"] - times["sandbox_ready"], 3) == 0.3
    assert pod_parts.secret_failures(["wp-probe-1234abcd-1"], tmp_path) == {
        "wp-probe-1234abcd-1": 1}
    trigger = times["sandbox_asked"] - 0.5
    split = pod_parts.split([{"pod": "wp-probe-1234abcd-1", "secret": "wp-probe-1234abcd-1",
                              "trigger": trigger, "task_start": times["container_started"] + 0.2}],
                            tmp_path)
    assert split is not None
    assert split["pods"] == 1
    assert split["trigger_to_sandbox_ms"]["p50"] == 500.0
    assert split["sandbox_ms"]["p50"] == 300.0
    assert split["container_ms"]["p50"] == 300.0
    assert split["process_to_task_ms"]["p50"] == 200.0
    assert split["runs_with_a_failed_secret_mount"] == 1
    assert split["those_runs_ms"] == {"min": 1300.0, "max": 1300.0}


def test_no_logs_no_parts(tmp_path: Path) -> None:
    assert pod_parts.split([{"pod": "p", "trigger": 0.0, "task_start": 1.0}], tmp_path) is None
