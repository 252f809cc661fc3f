"""The chart's PrometheusRule, checked and tested by a real promtool.

The rendered PrometheusRule's ``spec`` is a Prometheus rule file. ``promtool check
rules`` validates it (PromQL syntax, templates); ``promtool test rules`` runs
``promtool/rules_test.yaml``, whose series make every alert fire. promtool comes
from ``WAYPOST_PROMTOOL`` (``make test`` sets it from ``tools/ensure promtool``,
which builds it once from the Go module proxy); without it these tests fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "waypost"
RULES_TEST = Path(__file__).parent / "promtool" / "rules_test.yaml"
NAMESPACE = "waypost-system"


def tool(var: str, hint: str) -> str:
    path = os.environ.get(var, "")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{var} is not set to an executable: run `make test`, or export "
                    f'{var}="$({hint})"', pytrace=False)
    return path


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    helm = tool("WAYPOST_HELM", "charts/tools/ensure-helm")
    out = subprocess.run(
        [helm, "template", "waypost", str(CHART), "--namespace", NAMESPACE,
         "--kube-version", "1.34.4", "--set", "prometheusRule.enabled=true",
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    doc: dict[str, Any] = yaml.safe_load(out)
    assert doc["kind"] == "PrometheusRule"
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.yaml").write_text(yaml.safe_dump(doc["spec"]), encoding="utf-8")
    shutil.copy(RULES_TEST, folder / "rules_test.yaml")
    return folder


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = tool("WAYPOST_PROMTOOL", "tools/ensure promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, check=False)


def test_promtool_checks_the_rules(rules: Path) -> None:
    done = promtool("check", "rules", "rules.yaml", cwd=rules)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_fires_on_its_series(rules: Path) -> None:
    done = promtool("test", "rules", "rules_test.yaml", cwd=rules)
    assert done.returncode == 0, done.stdout + done.stderr
    spec = yaml.safe_load((rules / "rules.yaml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts == tested, f"alerts without a firing test: {alerts - tested}"
