"""schemathesis against the OpenAPI document of a running `waypost dev` (issue 16).

A real third-party fuzzer, with a fixed seed and bounded examples, every check on
and the API token configured, must find nothing: no 500 (the catch-all's error id
never appears in the log either), every answer as documented, every invalid
request refused and every valid one accepted. Every route is in: the JSON routes,
the event streams (they end at WAYPOST_EVENTS_STREAM_MAX_AGE, set to half a second
here) and the UI's pages (tag "ui"): they take the API token as well as the login's
session cookie, answer a request without either with the documented 303 to the
login page, answer errors as pages, and read their posted forms through models
that the document describes.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
BIN = Path(sys.executable).parent
TOKEN = "fuzz-token"
SEED = 16
MAX_EXAMPLES = 15
STREAM_MAX_AGE = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(url: str, dev: asyncio.subprocess.Process, timeout: float) -> None:
    """Poll /readyz; the moment it says ready, the tasks are there to trigger."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            assert dev.returncode is None, "waypost dev exited"
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "waypost dev never got ready"
            await asyncio.sleep(0.05)
        async with http.post(f"{url}/v1/tasks/default/hello/trigger", json={"payload": {}},
                             headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 201, await resp.text()


@pytest.mark.timeout(1800)
async def test_schemathesis_finds_no_failure_against_waypost_dev(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WAYPOST_DATABASE_URL": database_url, "WAYPOST_API_TOKEN": TOKEN,
           "WAYPOST_HEARTBEAT_INTERVAL": "2", "PYTHONUNBUFFERED": "1",
           # schemathesis reads an answer to its end, and event streams end only at
           # their max age (GET /v1/events by design; a run's stream too, since a
           # finished run can be requeued): half a second keeps the SSE routes in the run.
           "WAYPOST_EVENTS_STREAM_MAX_AGE": str(STREAM_MAX_AGE)}
    dev_log = tmp_path / "dev.log"
    with dev_log.open("wb") as out:
        dev = await asyncio.create_subprocess_exec(
            str(BIN / "waypost"), "dev", "--examples", "--no-reload", "--port", str(port),
            "--state-dir", str(tmp_path / "dev"),
            cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_ready(url, dev, timeout=120)
        fuzz = await asyncio.create_subprocess_exec(
            str(BIN / "schemathesis"), "--config-file", str(CONFIG), "--no-color",
            "run", f"{url}/openapi.json", "--checks", "all", "--seed", str(SEED),
            "--max-examples", str(MAX_EXAMPLES), "--header", f"Authorization: Bearer {TOKEN}",
            "--report", "junit", "--report-dir", str(tmp_path / "report"),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(fuzz.communicate(), timeout=1500)
        text = output.decode(errors="replace")
        summary = text[text.rfind("SUMMARY"):] if "SUMMARY" in text else text[-3000:]
        starts = [i for i in (text.find("= ERRORS ="), text.find("= FAILURES =")) if i >= 0]
        found = text[min(starts):] if starts else text[-12000:]
        assert fuzz.returncode == 0, f"schemathesis found failures:\n{found[:20000]}"
        generated = re.search(r"(\d+) generated", text)
        assert generated is not None and int(generated.group(1)) > 100, summary
        print(summary)
    finally:
        if dev.returncode is None:
            dev.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(dev.wait(), 30)
            except TimeoutError:
                dev.kill()
                await dev.wait()
    log = dev_log.read_text(errors="replace")
    assert "internal error" not in log, log[-5000:]
    assert "Traceback" not in log, log[-5000:]
