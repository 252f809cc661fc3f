import json
import logging

from waypost.logformat import JsonFormatter


def test_extras_become_fields_and_quotes_stay_valid_json() -> None:
    record = logging.makeLogRecord({
        "name": "waypost.engine", "levelname": "INFO", "msg": 'attempt "%s" failed',
        "args": ("x",), "run_id": "r-1", "attempt": 2, "task": "process-order",
    })
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == 'attempt "x" failed'
    assert (line["run_id"], line["attempt"], line["task"]) == ("r-1", 2, "process-order")
    assert line["level"] == "info" and line["logger"] == "waypost.engine"
    assert "args" not in line and "payload" not in line


def test_kopf_records_carry_the_object_not_the_settings_dump() -> None:
    """Issue 16: every kopf line carried a 1.8 KB dump of the operator's settings."""
    import kopf

    record = logging.makeLogRecord({
        "name": "kopf.objects", "levelname": "INFO", "msg": "Handler 'x' succeeded.",
        "settings": kopf.OperatorSettings(), "k8s_skip": False,
        "k8s_ref": {"apiVersion": "waypost.dev/v1alpha1", "kind": "TaskRun",
                    "name": "hello-1", "uid": "u", "namespace": "team-a"},
    })
    text = JsonFormatter().format(record)
    line = json.loads(text)
    assert line["object"] == "TaskRun team-a/hello-1"
    assert "settings" not in line and "k8s_skip" not in line and "k8s_ref" not in line
    assert len(text) < 300


def test_an_exception_without_text_is_named_by_its_type() -> None:
    """Issue 16: "store unavailable: " with nothing after it."""
    record = logging.makeLogRecord({
        "name": "waypost.engine", "levelname": "WARNING", "msg": "store unavailable: %s",
        "args": (TimeoutError(),)})
    assert json.loads(JsonFormatter().format(record))["msg"] == \
        "store unavailable: TimeoutError"
    empty = logging.makeLogRecord({"name": "kopf.objects", "levelname": "ERROR", "msg": ""})
    assert json.loads(JsonFormatter().format(empty))["msg"] == "(kopf.objects: empty message)"
