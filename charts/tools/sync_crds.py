"""Copy the generated CRDs (``crds/*.yaml``) into the chart as templates.

``make chart-crds`` runs it after ``python -m waypost.model.crd``. The chart
installs CRDs as templates rather than from a ``crds/`` folder because Helm
never upgrades that folder; the copies get ``helm.sh/resource-policy: keep``
(while ``crds.keep`` is true) so ``helm uninstall`` leaves every Task and
TaskRun in place, and ``crds.install`` lets a cluster manage CRDs elsewhere.

``tests/unit/test_chart.py`` fails when a copy drifts from ``crds/``; the
transformation is :func:`chart_template`, used by both.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "crds"
TARGET = REPO / "charts" / "waypost" / "templates" / "crds"

_KEEP = (
    "  {{- if .Values.crds.keep }}\n"
    "  annotations:\n"
    "    helm.sh/resource-policy: keep\n"
    "  {{- end }}\n"
)


def chart_template(source_name: str, text: str) -> str:
    """The chart template for one generated CRD manifest."""
    if "{{" in text or "}}" in text:
        # Helm would read it as template code; escape it here when that happens.
        raise ValueError(f"{source_name}: contains '{{{{' or '}}}}'")
    lines = text.splitlines(keepends=True)
    body = [line for line in lines if not line.startswith("#")]
    try:
        meta = body.index("metadata:\n")
    except ValueError:
        raise ValueError(f"{source_name}: no top-level metadata") from None
    if not body[meta + 1].startswith("  name: "):
        raise ValueError(f"{source_name}: metadata.name is not the first metadata field")
    if any(line.startswith("  annotations:") for line in body):
        raise ValueError(f"{source_name}: already has annotations; teach sync_crds to merge them")
    body.insert(meta + 2, _KEEP)
    return (
        "{{- if .Values.crds.install }}\n"
        f"# Copied from crds/{source_name} by `make chart-crds`. Do not edit.\n"
        + "".join(body)
        + "{{- end }}\n"
    )


def expected() -> dict[str, str]:
    """Template file name -> content, for every CRD in ``crds/``."""
    return {
        path.name: chart_template(path.name, path.read_text(encoding="utf-8"))
        for path in sorted(SOURCE.glob("*.yaml"))
    }


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    wanted = expected()
    for stale in TARGET.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
            print(f"removed {stale.relative_to(REPO)}", file=sys.stderr)
    for name, content in wanted.items():
        (TARGET / name).write_text(content, encoding="utf-8")
        print(f"wrote {(TARGET / name).relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
