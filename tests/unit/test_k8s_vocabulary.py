"""The Kubernetes vocabulary has one home: ``waypost.model.k8s``."""

from __future__ import annotations

import ast
from pathlib import Path

from waypost.model import crd, k8s

PACKAGE = Path(k8s.__file__).resolve().parents[1]


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_module_but_k8s_spells_the_group_or_a_waypost_key() -> None:
    spelled = [
        f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py")) if path.name != "k8s.py"
        for line, value in _string_constants(path)
        if k8s.GROUP in value or k8s.VERSION in value
        or value in {k8s.TASKRUN_PLURAL, k8s.LABEL_MANAGED_BY,
                     k8s.LABEL_COMPONENT, k8s.LABEL_PART_OF}
    ]
    assert spelled == []


def test_the_crds_are_named_from_the_vocabulary() -> None:
    for build, kind, plural in ((crd.task_crd, k8s.TASK_KIND, k8s.TASK_PLURAL),
                                (crd.taskrun_crd, k8s.TASKRUN_KIND, k8s.TASKRUN_PLURAL)):
        manifest = build()
        assert manifest["metadata"]["name"] == f"{plural}.{k8s.GROUP}"
        assert manifest["spec"]["group"] == k8s.GROUP == "waypost.dev"
        assert manifest["spec"]["names"]["kind"] == kind
        assert [v["name"] for v in manifest["spec"]["versions"]] == [k8s.VERSION]
    assert k8s.API_VERSION == "waypost.dev/v1alpha1"
    assert k8s.FINALIZER == "waypost.dev/finalizer"
