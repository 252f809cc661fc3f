"""Packaging: the base install is the SDK and the client; `import waypost` loads no
server dependency; the license is an SPDX expression with its text in LICENSE."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from waypost import devmode

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("asyncpg", "kopf", "kubernetes", "croniter", "prometheus_client", "jinja2")


def test_import_waypost_pulls_in_no_server_dependency() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, waypost; from waypost import task, Schedule, Retry; "
         f"print(' '.join(m for m in {(*SERVER_ONLY, 'pydantic')!r} if m in sys.modules))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.strip() == ""


def test_pyproject_declares_extras_and_an_spdx_license() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    meta = project["project"]
    assert meta["license"] == "Apache-2.0"
    # The license text the SPDX string names, shipped in the wheel (PEP 639).
    assert meta["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])
    base = " ".join(meta["dependencies"])
    assert not any(name.replace("_", "-") in base for name in SERVER_ONLY)
    extras = meta["optional-dependencies"]
    assert "waypost[server]" in extras["dev"] and "waypost[server]" in extras["operator"]
    assert any(r.startswith("kopf") for r in extras["operator"])


def test_the_dev_hint_names_a_command_that_works() -> None:
    hint = devmode.client_hint("http://127.0.0.1:8080")
    assert "--url" not in hint
    other = devmode.client_hint("http://127.0.0.1:9191")
    assert other.endswith(" --url http://127.0.0.1:9191")
    command = other.removesuffix(" --url http://127.0.0.1:9191")
    shown = subprocess.run([*command.split(), "--version"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0 and shown.stdout.startswith("waypost ")
