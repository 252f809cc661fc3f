"""The CRDs in crds/ are generated from the models, structural, and agree with them."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from waypost.model import crd
from waypost.model.enums import FailureType, RunStatus
from waypost.model.task import TaskSpec
from waypost.model.taskrun import (
    SUCCEEDED,
    Condition,
    ConditionStatus,
    TaskRunError,
    TaskRunReason,
    TaskRunSpec,
    TaskRunStatus,
    TaskStatus,
    find_condition,
    set_condition,
    succeeded_condition,
)
from waypost.sdk import quantity

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def _version(doc: dict[str, Any]) -> dict[str, Any]:
    (version,) = doc["spec"]["versions"]
    return version  # type: ignore[no-any-return]


def _root(doc: dict[str, Any]) -> dict[str, Any]:
    return _version(doc)["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}[*]")


def _apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server's defaulting does with a structural schema."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = _apply_defaults(out[name], sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_apply_defaults(item, schema["items"]) for item in value]
    return value


@pytest.fixture(scope="module")
def crds() -> dict[str, dict[str, Any]]:
    return {"Task": crd.task_crd(), "TaskRun": crd.taskrun_crd()}


def test_checked_in_crds_match_the_models() -> None:
    for name, text in crd.rendered().items():
        path = CRD_DIR / name
        assert path.exists(), f"{path} is missing: run python -m waypost.model.crd"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} differs from the pydantic models: run python -m waypost.model.crd"
        )
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(crd.rendered())


def test_rendering_is_stable_and_round_trips(crds: dict[str, dict[str, Any]]) -> None:
    assert crd.rendered() == crd.rendered()
    for name, text in crd.rendered().items():
        kind = "Task" if name.startswith("tasks.") else "TaskRun"
        assert yaml.safe_load(text) == crds[kind]


def test_main_writes_both_files(tmp_path: Path) -> None:
    crd.main([str(tmp_path / "out")])
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["taskruns.waypost.dev.yaml", "tasks.waypost.dev.yaml"]


@pytest.mark.parametrize("kind", ["Task", "TaskRun"])
def test_resource_identity(crds: dict[str, dict[str, Any]], kind: str) -> None:
    doc = crds[kind]
    plural = kind.lower() + "s"
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["metadata"]["name"] == f"{plural}.waypost.dev"
    spec = doc["spec"]
    assert spec["group"] == "waypost.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"]
    assert "waypost" in spec["names"]["categories"]
    version = _version(doc)
    assert version["name"] == "v1alpha1"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", ["Task", "TaskRun"])
def test_schema_is_structural(crds: dict[str, dict[str, Any]], kind: str) -> None:
    root = _root(crds[kind])
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "const", "title"}
    for path, node in _nodes(root):
        where = f"{kind}{path or ' (root)'}"
        assert not forbidden & node.keys(), f"{where} has {forbidden & node.keys()}"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            continue
        assert "type" in node, f"{where} has no type"
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", where
            assert not ("properties" in node and "additionalProperties" in node), where
            assert node.get("additionalProperties") is not False, where
            # `true` would let a map's keys in but prune (or, strictly decoded,
            # reject) what is inside each value: a map's values have a schema.
            assert node.get("additionalProperties", {}) is not True, where
        if node["type"] == "array":
            assert "items" in node, f"{where} is an array without items"
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, where
        assert node.get("default", 0) is not None, f"{where} has a null default"
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert root["required"] == ["spec"]


@pytest.mark.parametrize("kind", ["Task", "TaskRun"])
def test_status_has_no_phase_and_no_defaults(
    crds: dict[str, dict[str, Any]], kind: str
) -> None:
    status = _root(crds[kind])["properties"]["status"]
    assert "phase" not in status["properties"]
    assert all("default" not in node for _, node in _nodes(status))
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert item["required"] == ["type", "status", "reason", "lastTransitionTime"]
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_free_form_json_is_preserved(crds: dict[str, dict[str, Any]]) -> None:
    run = _root(crds["TaskRun"])["properties"]
    for node in (
        run["spec"]["properties"]["payload"],
        run["spec"]["properties"]["replay"]["properties"]["payload"],
        run["status"]["properties"]["result"],
        _root(crds["Task"])["properties"]["spec"]["properties"]["schedules"]["items"][
            "properties"]["payload"],
    ):
        assert node["x-kubernetes-preserve-unknown-fields"] is True
        assert "type" not in node  # any JSON value: object, list, string, number


def test_taskrun_printer_columns(crds: dict[str, dict[str, Any]]) -> None:
    columns = {c["name"]: c for c in _version(crds["TaskRun"])["additionalPrinterColumns"]}
    default = [c["name"] for c in columns.values() if not c.get("priority")]
    assert default == ["Task", "Status", "Attempt", "Last Checkpoint", "Age"]
    assert columns["Task"]["jsonPath"] == ".spec.taskRef.name"
    assert columns["Status"]["jsonPath"] == '.status.conditions[?(@.type=="Succeeded")].reason'
    assert columns["Attempt"] == {**columns["Attempt"], "type": "integer",
                                  "jsonPath": ".status.attempt"}
    assert columns["Last Checkpoint"]["jsonPath"] == ".status.lastCheckpoint"
    assert columns["Age"]["type"] == "date"
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp"


def test_task_printer_columns(crds: dict[str, dict[str, Any]]) -> None:
    columns = {c["name"]: c for c in _version(crds["Task"])["additionalPrinterColumns"]}
    default = [c["name"] for c in columns.values() if not c.get("priority")]
    assert default == ["Queued", "Running", "Warm", "Next Schedule", "Ready", "Age"]
    assert columns["Queued"]["jsonPath"] == ".status.queueDepth"
    assert columns["Running"]["jsonPath"] == ".status.running"
    assert columns["Warm"]["jsonPath"] == ".status.warmPods"
    assert columns["Next Schedule"] == {**columns["Next Schedule"], "type": "string",
                                        "jsonPath": ".status.nextScheduleTime"}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


@pytest.mark.parametrize("kind", ["Task", "TaskRun"])
def test_printer_columns_point_at_declared_fields(
    crds: dict[str, dict[str, Any]], kind: str
) -> None:
    root = _root(crds[kind])
    for column in _version(crds[kind])["additionalPrinterColumns"]:
        node = root
        # `.status.conditions[?(@.type=="Ready")].status` walks conditions' items.
        path = re.sub(r"\[\?\(@\.(\w+)==\"\w+\"\)\]", r"[]", column["jsonPath"])
        for part in path.lstrip(".").split("."):
            name, _, index = part.partition("[")
            if name == "metadata":
                node = {"type": "string"}  # creationTimestamp: not in a CRD schema
                break
            node = node["properties"][name]
            if index:
                assert node["type"] == "array"
                node = node["items"]
        assert node.get("type") == column["type"].replace("date", "string"), column


def test_task_spec_schema_carries_the_model_bounds(crds: dict[str, dict[str, Any]]) -> None:
    spec = _root(crds["Task"])["properties"]["spec"]
    props = spec["properties"]
    assert spec["required"] == ["entrypoint"]
    assert props["entrypoint"]["pattern"].startswith("^[A-Za-z_]")
    memory = props["resources"]["properties"]["memory"]
    assert memory["default"] == "512Mi"
    assert memory["pattern"] == quantity.MEMORY_PATTERN
    assert "isQuantity(self)" in memory["x-kubernetes-validations"][0]["rule"]
    retry = props["retry"]["properties"]
    assert (retry["maxAttempts"]["minimum"], retry["maxAttempts"]["maximum"]) == (1, 100)
    assert retry["backoff"]["properties"]["factor"]["minimum"] == 1
    initial = retry["backoff"]["properties"]["initialSeconds"]
    assert (initial["minimum"], initial["exclusiveMinimum"]) == (0, True)
    assert retry["retryOn"]["items"]["enum"] == [f.value for f in FailureType]
    assert props["queue"]["properties"]["maxConcurrency"]["minimum"] == 1
    assert props["queue"]["properties"]["maxConcurrency"]["nullable"] is True
    assert props["warmPool"]["properties"]["maxWarm"]["maximum"] == 5
    assert props["schedules"]["x-kubernetes-list-map-keys"] == ["name"]
    assert props["schedules"]["items"]["properties"]["missedRuns"]["enum"] == ["Skip", "Catchup"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert any("memoryCeiling" in r and "compareTo" in r for r in rules)
    root_rules = _root(crds["Task"])["x-kubernetes-validations"]
    assert "size(self.metadata.name) <= 63" in root_rules[0]["rule"]


def test_taskrun_spec_schema(crds: dict[str, dict[str, Any]]) -> None:
    spec = _root(crds["TaskRun"])["properties"]["spec"]
    assert spec["required"] == ["taskRef"]
    assert spec["properties"]["taskRef"]["required"] == ["name"]
    assert spec["properties"]["priority"]["minimum"] == -1000
    assert spec["properties"]["replay"]["required"] == ["fromRun"]
    assert spec["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


def test_schema_defaults_equal_the_model_defaults(crds: dict[str, dict[str, Any]]) -> None:
    """A minimal Task defaulted by the API server reads back as the model's defaults."""
    schema = _root(crds["Task"])["properties"]["spec"]
    minimal = {"entrypoint": "shop.orders:process", "schedules": [{"name": "n", "cron": "@daily"}]}
    defaulted = _apply_defaults(minimal, schema)
    expected = TaskSpec.model_validate(minimal).model_dump(
        by_alias=True, mode="json", exclude_none=True
    )
    assert defaulted == expected
    assert defaulted["retry"]["backoff"]["factor"] == 2.0
    assert defaulted["schedules"][0]["timezone"] == "UTC"


def test_every_model_field_is_in_the_schema(crds: dict[str, dict[str, Any]]) -> None:
    def fields(model: type[pydantic.BaseModel]) -> set[str]:
        return {f.alias or name for name, f in model.model_fields.items()}

    run = _root(crds["TaskRun"])["properties"]
    task = _root(crds["Task"])["properties"]
    assert set(run["spec"]["properties"]) == fields(TaskRunSpec)
    assert set(run["status"]["properties"]) == fields(TaskRunStatus)
    assert set(task["spec"]["properties"]) == fields(TaskSpec)
    assert set(task["status"]["properties"]) == fields(TaskStatus)
    error = run["status"]["properties"]["error"]["properties"]
    assert set(error) == {"type", "message", "exitCode", "oomKilled"}


def test_the_models_reject_what_the_schema_rejects() -> None:
    base: dict[str, Any] = {"entrypoint": "m:f"}
    for bad in (
        {"resources": {"memory": "12XB"}},
        {"resources": {"memory": "0Mi"}},
        {"queue": {"maxConcurrency": 0}},
        {"retry": {"maxAttempts": 101}},
        {"retry": {"backoff": {"factor": 0.5}}},
        {"timeout": {"maxDuration": "0s"}},
        {"resources": {"memory": "1Gi"}, "retry": {"oom": {"memoryCeiling": "512Mi"}}},
        {"envFrom": [{"prefix": "X_"}]},
        {"envFrom": [{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}]},
        {"schedules": [{"name": "a", "cron": "@daily"}, {"name": "a", "cron": "@hourly"}]},
        {"unknownField": 1},
    ):
        with pytest.raises(pydantic.ValidationError):
            TaskSpec.model_validate({**base, **bad})
    with pytest.raises(pydantic.ValidationError):
        TaskRunSpec.model_validate({"payload": {}})
    with pytest.raises(pydantic.ValidationError):
        TaskRunSpec.model_validate({"taskRef": {"name": "Bad_Name"}})


def test_taskrun_spec_parses_a_manifest() -> None:
    spec = TaskRunSpec.model_validate({
        "taskRef": {"name": "process-order"},
        "payload": {"orderId": 7, "items": [1, 2]},
        "priority": 5,
        "concurrencyKey": "tenant-a",
        "replay": {"fromRun": "0192c2f0-0000-7000-8000-000000000000",
                   "fromCheckpoint": "order-fetched", "payload": 3},
    })
    assert spec.task_ref.name == "process-order"
    assert spec.payload == {"orderId": 7, "items": [1, 2]}
    assert spec.replay is not None and spec.replay.from_checkpoint == "order-fetched"
    assert spec.idempotency_key is None


def test_reasons_follow_run_states() -> None:
    assert {TaskRunReason.from_run_status(s) for s in RunStatus} == {
        TaskRunReason.QUEUED, TaskRunReason.RUNNING, TaskRunReason.RETRYING,
        TaskRunReason.SUCCEEDED, TaskRunReason.FAILED, TaskRunReason.DEAD_LETTERED,
        TaskRunReason.CANCELLED, TaskRunReason.WAITING, TaskRunReason.DELAYED,
        TaskRunReason.EXPIRED,
    }
    for status in RunStatus:
        reason = TaskRunReason.from_run_status(status)
        if not status.is_final:
            assert reason.condition_status is ConditionStatus.UNKNOWN
        elif status is RunStatus.SUCCEEDED:
            assert reason.condition_status is ConditionStatus.TRUE
        else:
            assert reason.condition_status is ConditionStatus.FALSE
    assert str(TaskRunReason.DEAD_LETTERED) == "DeadLettered"
    assert TaskRunReason.TASK_NOT_FOUND.condition_status is ConditionStatus.UNKNOWN


def test_set_condition_moves_the_transition_time_only_on_a_status_change() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    queued = Condition(type=SUCCEEDED, status=ConditionStatus.UNKNOWN,
                       reason=TaskRunReason.QUEUED, last_transition_time=t0)
    other = Condition(type="Ready", status=ConditionStatus.TRUE, reason="Synced",
                      last_transition_time=t0)
    running = queued.model_copy(update={"reason": TaskRunReason.RUNNING,
                                        "last_transition_time": t1})
    conditions = set_condition([other, queued], running)
    current = find_condition(conditions, SUCCEEDED)
    assert current is not None
    assert (current.reason, current.last_transition_time) == ("Running", t0)
    assert len(conditions) == 2
    done = running.model_copy(update={"status": ConditionStatus.TRUE,
                                      "reason": TaskRunReason.SUCCEEDED})
    current = find_condition(set_condition(conditions, done), SUCCEEDED)
    assert current is not None and current.last_transition_time == t1
    assert [c.type for c in set_condition(conditions, done)] == ["Ready", SUCCEEDED]


def test_succeeded_condition_status_follows_the_reason() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    dead = succeeded_condition(TaskRunReason.DEAD_LETTERED, "OOMKilled after 3 attempts",
                               now=now, generation=2)
    assert (dead.type, dead.status, dead.reason) == ("Succeeded", ConditionStatus.FALSE,
                                                      "DeadLettered")
    assert dead.observed_generation == 2
    assert succeeded_condition(TaskRunReason.RETRYING, "", now=now).status is (
        ConditionStatus.UNKNOWN)
    assert succeeded_condition(TaskRunReason.SUCCEEDED, "", now=now).status is (
        ConditionStatus.TRUE)


def test_status_serialises_to_declared_camel_case_fields(
    crds: dict[str, dict[str, Any]],
) -> None:
    status = TaskRunStatus(
        conditions=[Condition(type=SUCCEEDED, status=ConditionStatus.FALSE,
                              reason=TaskRunReason.DEAD_LETTERED, message="OOMKilled",
                              last_transition_time=datetime(2026, 1, 1, tzinfo=UTC),
                              observed_generation=1)],
        run_id="r1", attempt=3, last_checkpoint="order-fetched", pod_name="wp-x",
        error=TaskRunError(type=FailureType.OOM, message="OOMKilled", exit_code=137,
                           oom_killed=True),
    )
    body = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    declared = _root(crds["TaskRun"])["properties"]["status"]["properties"]
    assert set(body) <= set(declared)
    assert body["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert body["error"] == {"type": "oom", "message": "OOMKilled", "exitCode": 137,
                             "oomKilled": True}
    assert status.succeeded() is not None
    assert TaskRunStatus.model_validate(body) == status
