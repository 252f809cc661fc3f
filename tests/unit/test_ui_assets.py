"""The UI's vendored scripts are what VENDORED.json says, and no template can render
user data as HTML."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

from waypost.coordinator import dashboard

PACKAGE = resources.files("waypost.coordinator")
STATIC = PACKAGE / "static"
TEMPLATES = PACKAGE / "templates"


def test_vendored_files_match_their_record() -> None:
    record = json.loads((STATIC / "VENDORED.json").read_text())
    assert set(record) == {"htmx.min.js", "sse.js"}
    for name, entry in record.items():
        body = (STATIC / name).read_bytes()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], (
            f"{name} differs from {entry['package']}@{entry['version']}: run make ui-assets")
    assert record["htmx.min.js"]["version"].startswith("2.")


def test_templates_never_mark_data_safe_and_use_only_local_assets() -> None:
    names = [t.name for t in TEMPLATES.iterdir() if t.name.endswith(".html")]
    assert "base.html" in names
    env = dashboard.environment()
    assert env.autoescape is True
    for name in names:
        text = (TEMPLATES / name).read_text()
        for unsafe in ("|safe", "| safe", "autoescape false", "Markup", "|tojson"):
            assert unsafe not in text, f"{name} uses {unsafe}"
        # No inline scripts or handlers (the CSP would block them anyway), no CDN.
        assert re.search(r"<script(?![^>]*\bsrc=\"/static/)", text) is None, name
        assert re.search(r"\son[a-z]+=", text) is None, name
        assert "http://" not in text and "https://" not in text, name
        for asset in re.findall(r'"/static/([^"]+)"', text):
            assert (STATIC / asset).is_file(), f"{name} links a missing {asset}"
        env.get_template(name)  # parses


def test_static_handler_serves_only_known_kinds() -> None:
    assert dashboard.STATIC_TYPES == {".js": "text/javascript", ".css": "text/css"}
    assert dashboard._asset("waypost.css") is not None
    assert dashboard._asset("VENDORED.json") is not None  # exists, but .json is not served
