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
