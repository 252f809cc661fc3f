"""Settings from the environment: every WAYPOST_* variable is documented and honoured,
by `waypost dev` too (issue 16: dev mode ignored WAYPOST_HEARTBEAT_INTERVAL)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from waypost.devmode import dev_settings
from waypost.model.insights import INSIGHT_VARIABLES
from waypost.model.settings import ENV_VARS, Settings

README = Path(__file__).resolve().parents[2] / "README.md"

# A value for each variable, different from every default (dev mode's included).
VALUES: dict[str, tuple[str, object]] = {
    "WAYPOST_DATABASE_URL": ("postgresql://u@db.example:5433/w", "postgresql://u@db.example:5433/w"),
    "WAYPOST_COORDINATOR_HOST": ("0.0.0.0", "0.0.0.0"),
    "WAYPOST_COORDINATOR_PORT": ("9123", 9123),
    "WAYPOST_COORDINATOR_URL": ("http://waypost:9123", "http://waypost:9123"),
    "WAYPOST_API_TOKEN": ("s3cret", "s3cret"),
    "WAYPOST_HEARTBEAT_INTERVAL": ("1.5", 1.5),
    "WAYPOST_MISSED_HEARTBEATS": ("7", 7),
    "WAYPOST_START_TIMEOUT": ("42", 42.0),
    "WAYPOST_SHUTDOWN_GRACE": ("7", 7.0),
    "WAYPOST_CLAIM_BATCH": ("17", 17),
    "WAYPOST_POLL_INTERVAL": ("0.25", 0.25),
    "WAYPOST_SCHEDULE_INTERVAL": ("3", 3.0),
    "WAYPOST_HOT_TABLE_VACUUM_INTERVAL": ("4", 4.0),
    "WAYPOST_HOT_TABLE_VACUUM_DEAD_TUPLES": ("123", 123),
    "WAYPOST_EVENTS_POLL_INTERVAL": ("0.5", 0.5),
    "WAYPOST_EVENTS_HEARTBEAT": ("30", 30.0),
    "WAYPOST_EVENTS_STREAM_MAX_AGE": ("10m", 600.0),
    "WAYPOST_WARM_MEMORY_GROWTH_MIB": ("64", 64),
    "WAYPOST_DATABASE_SESSION_URL": ("postgresql://u@db.example:5432/w",
                                     "postgresql://u@db.example:5432/w"),
    "WAYPOST_HISTORY_RETAIN_FOR": ("36h", 36 * 3600.0),
    "WAYPOST_DEAD_LETTER_RETAIN_FOR": ("90d", 90 * 86400.0),
    "WAYPOST_HISTORY_RETENTION_INTERVAL": ("5", 5.0),
    "WAYPOST_HISTORY_RETENTION_BATCH": ("250", 250),
    "WAYPOST_SUSPEND_THRESHOLD": ("12", 12.0),
    "WAYPOST_WAIT_POLL_INTERVAL": ("0.75", 0.75),
    "WAYPOST_WAIT_RECHECK_INTERVAL": ("20", 20.0),
    "WAYPOST_TELEMETRY_INTERVAL": ("0.5", 0.5),
    "WAYPOST_METRICS_MAX_TASKS": ("50", 50),
}


def test_every_variable_is_documented_in_the_readme() -> None:
    text = README.read_text()
    table = set(re.findall(r"^\| `(WAYPOST_[A-Z_]+)` \|", text, flags=re.M))
    assert table - set(INSIGHT_VARIABLES) == set(ENV_VARS), (
        "README's settings table and Settings.from_env differ")
    assert set(VALUES) == set(ENV_VARS)


@pytest.mark.parametrize("var", sorted(ENV_VARS))
def test_dev_mode_honours_every_variable(var: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for other in ENV_VARS:
        monkeypatch.delenv(other, raising=False)
    given, expected = VALUES[var]
    monkeypatch.setenv(var, given)
    settings = dev_settings("postgresql://embedded", None)
    assert getattr(settings, ENV_VARS[var]) == expected


def test_dev_mode_defaults_and_the_port_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    settings = dev_settings("postgresql://embedded", None)
    assert (settings.heartbeat_interval_seconds, settings.poll_interval_seconds) == (5.0, 1.0)
    assert settings.coordinator_port == 8080
    assert settings.database_url == "postgresql://embedded"
    monkeypatch.setenv("WAYPOST_COORDINATOR_PORT", "9000")
    assert dev_settings("postgresql://embedded", 9001).coordinator_port == 9001
    assert Settings.from_env(database_url="x").heartbeat_interval_seconds == 30.0


def test_every_insight_threshold_is_documented_and_read(monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    table = set(re.findall(r"^\| `(WAYPOST_[A-Z_]+)` \|", text, flags=re.M))
    assert set(INSIGHT_VARIABLES) <= table
    for var in INSIGHT_VARIABLES:
        monkeypatch.setenv(var, "0.75" if "RATIO" in var else "7")
    got = Settings.from_env({"database_url": "postgresql://x"}).insights
    for var, field in INSIGHT_VARIABLES.items():
        assert getattr(got, field) == (0.75 if "RATIO" in var else 7), var
