"""CustomResourceDefinitions of ``tasks.waypost.dev`` and ``taskruns.waypost.dev``.

The pydantic models are the single source: their JSON schema is turned into
the *structural* OpenAPI v3 schema the API server wants ($refs inlined,
``nullable`` instead of ``anyOf`` with null, free-form JSON marked
``x-kubernetes-preserve-unknown-fields``), and the CEL rules declared on the
models travel along as ``x-kubernetes-validations``.

``python -m waypost.model.crd [DIR]`` writes the manifests (default ``crds/``);
a unit test fails when the checked-in files drift from the models.

What the schema cannot check is reported by the controller as a condition: a
TaskRun naming a Task that does not exist, an entrypoint that does not import,
a cron expression or time zone that does not parse. Payload size is not checked
here either: CEL has no way to measure arbitrary JSON (``string()`` does not
accept maps or lists), so the coordinator enforces it and the API server's
object size limit (about 1.5 MiB in etcd) bounds what a TaskRun can carry.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from waypost.model import k8s
from waypost.model.task import TaskSpec
from waypost.model.taskrun import TaskRunSpec, TaskRunStatus, TaskStatus

Schema = dict[str, Any]

# Keywords a structural schema may carry, in the order they are written;
# everything else pydantic emits (title, $defs, examples, ...) is dropped.
_KEPT = (
    "type", "format", "description", "nullable", "default", "enum",
    "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource", "x-kubernetes-map-type",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "required", "properties", "additionalProperties", "items",
    "x-kubernetes-validations",
)
_RULE_KEYS = ("rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf")


class _DefaultsFromFactories(GenerateJsonSchema):
    """Also puts defaults made by ``default_factory`` into the schema.

    A nested object defaults to ``{}``: the API server then fills in its own
    fields' defaults, so ``spec.retry`` left out still reads back complete.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            return {} if isinstance(value, BaseModel) else value
        return super().get_default_value(schema)


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of a model, as a CRD version embeds it."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_DefaultsFromFactories)
    defs: dict[str, Schema] = raw.pop("$defs", {})
    return _structural(raw, defs, path=model.__name__)


def _resolve(ref: str, defs: dict[str, Schema]) -> Schema:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix):] not in defs:
        raise ValueError(f"unresolvable $ref {ref!r}")
    return copy.deepcopy(defs[ref[len(prefix):]])


def _structural(node: Schema, defs: dict[str, Schema], path: str, depth: int = 0) -> Schema:
    if depth > 32:
        raise ValueError(f"{path}: schema nests too deep (a recursive model?)")
    node = dict(node)
    if "$ref" in node:
        # The referencing site's keywords (a field's description, default) win.
        target = _resolve(node.pop("$ref"), defs)
        node = {**target, **node}
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise ValueError(f"{path}: allOf with {len(parts)} parts is not structural")
        node = {**_resolve_inline(parts[0], defs), **node}
    for key in ("anyOf", "oneOf"):
        if key in node:
            branches = node.pop(key)
            non_null = [b for b in branches if b.get("type") != "null"]
            if len(non_null) != 1:
                raise ValueError(
                    f"{path}: {key} with {len(non_null)} non-null branches cannot be "
                    "expressed as a structural schema"
                )
            inner = _resolve_inline(non_null[0], defs)
            # The field's own keywords (description, default) override the branch's.
            node = {**inner, **node}
            if len(non_null) < len(branches):
                node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("default", NoDefault) is None:
        # Absent and null mean the same to the models; a null default adds nothing.
        del node["default"]
    for bound, exclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # JSON Schema 2020-12 gives the bound itself; OpenAPI v3.0 a flag beside it.
        if bound in node and not isinstance(node[bound], bool):
            node[exclusive] = node[bound]
            node[bound] = True
    if node.get("additionalProperties") is True:
        # A map of free-form JSON (replay's edited checkpoints): `true` lets the
        # keys in but not what is inside each value, which the API server then
        # prunes or, with strict decoding, rejects. Each value is free-form too.
        node["additionalProperties"] = {}
    if node.get("additionalProperties") is False:
        # Unknown fields are pruned (or, with kubectl's strict validation,
        # rejected) by the API server; `false` itself is not allowed in a CRD.
        del node["additionalProperties"]

    out: Schema = {k: node[k] for k in _KEPT if k in node}
    if "x-kubernetes-validations" in out:
        out["x-kubernetes-validations"] = [
            {k: rule[k] for k in _RULE_KEYS if k in rule}
            for rule in out["x-kubernetes-validations"]
        ]
    if "properties" in out:
        out["type"] = "object"
        out["properties"] = {
            name: _structural(sub, defs, f"{path}.{name}", depth + 1)
            for name, sub in out["properties"].items()
        }
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(
            out["additionalProperties"], defs, f"{path}[*]", depth + 1
        )
    if "items" in out:
        out["items"] = _structural(out["items"], defs, f"{path}[]", depth + 1)
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        # Free-form JSON (payload, result, checkpoint data): any value is kept.
        out.pop("nullable", None)
        out["x-kubernetes-preserve-unknown-fields"] = True
        out = {k: out[k] for k in _KEPT if k in out}
    return out


def _resolve_inline(node: Schema, defs: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_resolve(node["$ref"], defs), **rest}
    return dict(node)


def _strip_defaults(node: Schema) -> Schema:
    """The schema without defaults: status is the operator's, written whole."""
    out = {k: v for k, v in node.items() if k != "default"}
    if "properties" in out:
        out["properties"] = {k: _strip_defaults(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _strip_defaults(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strip_defaults(out["additionalProperties"])
    return out


def _root_schema(
    description: str, spec: Schema, status: Schema, validations: list[Schema]
) -> Schema:
    root: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _strip_defaults(status),
        },
    }
    if validations:
        root["x-kubernetes-validations"] = validations
    return root


def _column(
    name: str, type_: str, path: str, description: str, priority: int = 0
) -> Schema:
    column: Schema = {"name": name, "type": type_, "jsonPath": path, "description": description}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", "date", ".metadata.creationTimestamp", "Time since creation.")

# Task names become label values (at most 63 characters) and default queue
# names, so they are DNS labels, stricter than the DNS subdomain Kubernetes allows.
_TASK_NAME_RULE: Schema = {
    "rule": "size(self.metadata.name) <= 63 "
    "&& self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    "message": "metadata.name of a Task must be a DNS label (at most 63 characters, "
    "lowercase letters, digits and '-'): it becomes a label value and the default queue name",
    "reason": "FieldValueInvalid",
}


def _crd(
    *, kind: str, plural: str, short_names: list[str], schema: Schema, columns: list[Schema]
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{k8s.GROUP}",
            "labels": {k8s.LABEL_PART_OF: k8s.MANAGED_BY},
        },
        "spec": {
            "group": k8s.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [k8s.CATEGORY],
            },
            "versions": [{
                "name": k8s.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    }


def task_crd() -> Schema:
    """The CRD of ``Task``: the definition of a durable task."""
    schema = _root_schema(
        "A durable task: its code (image and entrypoint), memory limit, retry policy, "
        "queue limits, schedules and warm pool.",
        model_schema(TaskSpec),
        model_schema(TaskStatus),
        [_TASK_NAME_RULE],
    )
    return _crd(
        kind=k8s.TASK_KIND,
        plural=k8s.TASK_PLURAL,
        short_names=["wpt"],
        schema=schema,
        columns=[
            _column("Queued", "integer", ".status.queueDepth", "Runs waiting in the queue."),
            _column("Running", "integer", ".status.running", "Runs with an attempt running."),
            _column("Warm", "integer", ".status.warmPods", "Idle warm Pods."),
            # A string, not a date: kubectl shows future dates as <invalid>.
            _column("Next Schedule", "string", ".status.nextScheduleTime",
                    "When a schedule triggers the next run."),
            _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status',
                    "Whether the definition is stored and runs can be enqueued."),
            _AGE,
            _column("Image", "string", ".spec.image", "Container image.", priority=1),
            _column("Entrypoint", "string", ".spec.entrypoint", "module:function.", priority=1),
        ],
    )


def taskrun_crd() -> Schema:
    """The CRD of ``TaskRun``: one trigger of a Task, whose status mirrors its run."""
    schema = _root_schema(
        "One run of a Task, triggered with kubectl or GitOps; its status mirrors the run. "
        "Wait for it with kubectl wait --for=condition=Succeeded.",
        model_schema(TaskRunSpec),
        model_schema(TaskRunStatus),
        [],
    )
    return _crd(
        kind=k8s.TASKRUN_KIND,
        plural=k8s.TASKRUN_PLURAL,
        short_names=["wptr"],
        schema=schema,
        columns=[
            _column("Task", "string", ".spec.taskRef.name", "The Task run."),
            _column("Status", "string", '.status.conditions[?(@.type=="Succeeded")].reason',
                    "Where the run is: Queued, Running, Retrying, Succeeded, Failed, "
                    "DeadLettered or Cancelled."),
            _column("Attempt", "integer", ".status.attempt", "Number of the latest attempt."),
            _column("Last Checkpoint", "string", ".status.lastCheckpoint",
                    "Key of the latest checkpoint."),
            _AGE,
            _column("Run ID", "string", ".status.runId", "Id of the run.", priority=1),
            _column("Pod", "string", ".status.podName", "Pod of the latest attempt.",
                    priority=1),
        ],
    )


CRDS: dict[str, Callable[[], Schema]] = {
    f"{k8s.TASK_PLURAL}.{k8s.GROUP}.yaml": task_crd,
    f"{k8s.TASKRUN_PLURAL}.{k8s.GROUP}.yaml": taskrun_crd,
}

HEADER = "# Generated from the pydantic models by `python -m waypost.model.crd`. Do not edit.\n"


def render(crd: Schema) -> str:
    """A CRD as YAML, keys in the order they were built (stable across runs)."""
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)


def rendered() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    return {name: render(build()) for name, build in CRDS.items()}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        target = directory / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else Path("crds")
    for path in write(directory):
        print(path)


if __name__ == "__main__":
    main()
