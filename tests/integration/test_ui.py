"""The UI's pages against the real coordinator and Postgres: filters, the run page,
dead letters and bulk requeue, tasks, bad input, escaping of user data, and the login.

Attempts are driven by the test itself over the runner protocol (like
test_fencing), so a run gets exactly the checkpoints, logs and errors the test
wants, including hostile ones. The browser test (tests/ui) drives the same pages
in chromium against `waypost dev`.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest

from tests.factories import (
    StalledBackend,  # the test plays the runner
    settings,
    wait_for_status,
)
from waypost.coordinator import auth, bulk_ui
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import Run, TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone
from waypost.store import log_pages

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


class Harness:
    def __init__(self, stack: Standalone, backend: StalledBackend,
                 http: aiohttp.ClientSession) -> None:
        self.stack, self.backend, self.http = stack, backend, http

    async def runner(self, run: Run, attempt: int, method: str, path: str, body: Any) -> int:
        await wait_until(lambda: any(
            launch.run_id == uuid.UUID(run.id) and launch.attempt == attempt
            for launch in self.backend.launches))
        launch = next(launch for launch in self.backend.launches
                      if launch.run_id == uuid.UUID(run.id) and launch.attempt == attempt)
        async with self.http.request(
                method, f"{self.stack.url}/v1/runner/{path}", json=body,
                headers={"Authorization": f"Bearer {launch.credential}"}) as resp:
            return resp.status

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.http.get(self.stack.url + path, allow_redirects=False,
                                 **kwargs) as resp:
            return resp.status, await resp.text()

    async def dead_letter(self, payload: Any, *, checkpoint: Any = None,
                          message: str = "boom", key: str | None = None,
                          logs: list[dict[str, Any]] | None = None) -> Run:
        """A run whose one attempt checkpoints, logs and fails: dead-lettered."""
        run, _ = await control.trigger(self.stack.engine, "default", "one-shot",
                                       TriggerRequest(payload=payload, idempotency_key=key))
        if checkpoint is not None:
            assert await self.runner(run, 1, "POST", "checkpoints",
                                     {"key": "order-fetched", "data": checkpoint}) == 201
        if logs:
            assert await self.runner(run, 1, "POST", "logs", {"entries": logs}) == 202
        assert await self.runner(run, 1, "POST", "fail", {"error": {
            "type": "error", "name": "RuntimeError", "message": message}}) == 200
        return await wait_for_status(self.stack.engine, run.id, {RunStatus.DEAD_LETTERED})


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    backend = StalledBackend()
    stack = await Standalone(settings(database_url, poll_interval_seconds=0.1),
                             backend).start()  # type: ignore[arg-type]
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello",
                                    "retry": {"maxAttempts": 1}})
    await control.register_task(
        stack.engine, TaskDefinition(namespace="default", name="one-shot", spec=spec))
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(stack, backend, http)
    finally:
        await stack.stop()


def run_links(page: str) -> list[str]:
    return re.findall(r'href="/runs/([0-9a-f-]{36})"', page)


async def test_runs_list_filters_pages_and_links(harness: Harness) -> None:
    first = await harness.dead_letter({"n": 1}, key="order-aaa")
    second = await harness.dead_letter({"n": 2}, key="order-bbb")

    status, page = await harness.get("/")
    assert status == 200
    assert run_links(page)[:2] == [second.id, first.id]  # newest first, each a link

    _, page = await harness.get("/?q=order-a")
    assert run_links(page) == [first.id]
    _, page = await harness.get(f"/?q={second.id[:8]}")
    assert run_links(page) == [second.id]
    _, page = await harness.get("/?status=succeeded")
    assert run_links(page) == [] and "No runs match" in page
    _, page = await harness.get("/?status=dead_lettered&task=one-shot&window=1h")
    assert set(run_links(page)) == {first.id, second.id}
    _, page = await harness.get("/?namespace=elsewhere")
    assert run_links(page) == []

    # Paging: a cursor link to the older runs, which lists the rest.
    for n in range(55):
        await control.trigger(harness.stack.engine, "default", "one-shot",
                              TriggerRequest(payload={"bulk": n}))
    _, page = await harness.get("/")
    assert len(run_links(page)) == 50
    older = re.search(r'class="next" href="([^"]+)"', page)
    assert older is not None
    _, rest = await harness.get(html.unescape(older.group(1)))
    assert len(run_links(rest)) == 7 and first.id in run_links(rest)


async def test_run_page_shows_header_timeline_checkpoints_payload(harness: Harness) -> None:
    run = await harness.dead_letter({"orderId": "ord-1"}, checkpoint={"id": "ord-1"},
                                    message="payment declined", key="k-1")
    status, page = await harness.get(f"/runs/{run.id}")
    assert status == 200
    for fact in (run.id, run.trace_id, "k-1", "one-shot", "dead_lettered"):
        assert fact in page
    assert 'class="row attempt" data-attempt="1" data-status="failed"' in page
    # Which spec the run runs: the one stored at trigger time, of Task generation 1.
    assert '<dd id="run-spec">trigger (Task generation 1)</dd>' in page
    assert re.search(r'class="mark( late)?" data-key="order-fetched"', page)
    assert 'data-failure="error"' in page and "payment declined" in page
    assert '<details class="checkpoint" data-key="order-fetched"' in page
    assert "written by attempt 1" in page
    # The checkpoint's JSON tree loads when it is opened, as escaped text.
    status, tree = await harness.get(f"/runs/{run.id}/checkpoints?key=order-fetched")
    assert status == 200 and '<span class="jv jstr">&#34;ord-1&#34;</span>' in tree
    # The requeue button is offered for a dead-lettered run, cancel is not.
    assert f'hx-post="/runs/{run.id}/requeue"' in page
    assert f'hx-post="/runs/{run.id}/cancel"' not in page
    # The live part of the page renders alone.
    status, part = await harness.get(f"/runs/{run.id}/overview")
    assert status == 200 and part.startswith('<div id="overview"')


async def test_user_data_is_never_rendered_as_html(harness: Harness, db: asyncpg.Pool) -> None:
    run = await harness.dead_letter(
        {XSS: XSS, "list": [XSS]}, checkpoint={XSS: [XSS]}, message=XSS, key=XSS,
        logs=[{"ts": "2026-01-01T00:00:00Z", "level": "error", "message": XSS,
               "fields": {XSS: XSS}, "step": XSS}])
    # Task names are DNS labels (the model refuses others); one stored behind the
    # model's back is still only text.
    await db.execute("UPDATE runs SET task = $1, queue = $1 WHERE id = $2", XSS,
                     uuid.UUID(run.id))
    pages = [await harness.get(p) for p in (
        "/", f"/runs/{run.id}", f"/runs/{run.id}/overview", "/dead-letters", "/tasks",
        "/?" + urlencode({"q": XSS}), f"/runs/{run.id}/checkpoints?key=order-fetched",
        f"/runs/{run.id}/log-lines", f"/runs/{run.id}/log-lines?after=0-0",
        f"/runs/{run.id}/replay-form?from=order-fetched")]
    for status, page in pages:
        assert status == 200, page[-800:]
        assert "<script>alert" not in page and "<img src=x" not in page
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    run_page = pages[1][1]
    assert run_page.count(escaped) >= 4  # task, queue, idempotency key, error: as text
    assert "&lt;script&gt;alert(\\&#34;x\\&#34;)" in run_page  # in JSON: the payload
    assert "&lt;script&gt;alert(\\&#34;x\\&#34;)" in pages[6][1]  # the checkpoint's tree
    assert escaped in pages[0][1] and escaped in pages[3][1]  # runs list, dead letters
    for tree in (pages[6][1], pages[9][1]):  # the checkpoint's tree and its replay editor
        assert "&lt;script&gt;alert(\\&#34;x\\&#34;)" in tree
    for log_rows in (pages[1][1], pages[7][1], pages[8][1]):  # message, fields and step
        assert log_rows.count(escaped) >= 2 and "&lt;script&gt;" in log_rows
    # A strict CSP backs the escaping: no inline or foreign scripts would run.
    async with harness.http.get(f"{harness.stack.url}/runs/{run.id}") as resp:
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


async def test_bad_input_gets_a_4xx_page_that_names_it(harness: Harness) -> None:
    cases = {
        "/?status=exploded": (400, "query parameter status"),
        "/?window=3y": (400, "query parameter window"),
        "/?cursor=abc": (400, "query parameter cursor"),
        f"/?q={'x' * 300}": (400, "at most 256"),
        "/runs/not-a-uuid": (400, "is not a run id"),
        f"/runs/{uuid.uuid4()}": (404, "no run"),
        "/dead-letters?cursor=-1": (400, "query parameter cursor"),
        "/static/../app.py": (404, None),
        "/static/nothing.js": (404, None),
        f"/runs/{uuid.uuid4()}/log-lines": (404, "no run"),
        "/runs/RUN/log-lines?after=12": (400, "query parameter after"),
        "/runs/RUN/log-lines?level=loud": (400, "query parameter level"),
        "/runs/RUN/log-lines?attempt=x": (400, "query parameter attempt"),
        "/runs/RUN/checkpoints?key=missing": (404, "has no checkpoint"),
        "/runs/RUN/replay-form?from=missing": (404, "has no checkpoint"),
        # Hostile values are refused as the API refuses them, never a 500 from Postgres
        # or from int(): a digit Python's isdigit takes but int() does not, numbers past
        # a bigint or an integer, NUL characters.
        "/?cursor=%C2%B2": (400, "query parameter cursor"),
        "/?cursor=99999999999999999999999": (400, "query parameter cursor"),
        "/?task=a%00b": (400, "query parameter task"),
        "/?q=%00": (400, "query parameter q"),
        "/dead-letters?cursor=%C2%B2": (400, "query parameter cursor"),
        "/dead-letters?namespace=%00": (400, "query parameter namespace"),
        "/runs/RUN?attempt=%C2%B2": (400, "query parameter attempt"),
        "/runs/RUN?attempt=99999999999": (400, "query parameter attempt"),
        "/runs/RUN/log-lines?before=99999999999999999999-1": (400, "query parameter before"),
        "/runs/RUN/checkpoints?key=a%00b": (400, "query parameter key"),
        "/runs/RUN/replay-form?from=%00": (400, "query parameter from"),
        "/runs/RUN/replay-form?payload=%00": (400, "query parameter payload"),
    }
    run = await harness.dead_letter({"n": 1})
    for path, (want, text) in cases.items():
        status, page = await harness.get(path.replace("RUN", run.id))
        assert status == want, (path, status, page[:300])
        if text is not None:
            assert text in page, (path, page[:500])
    async with harness.http.get(f"{harness.stack.url}/v1/runs?since=yesterday") as resp:
        assert resp.status == 400
        assert "since" in (await resp.json())["error"]["message"]
    # What is refused before a page's handler runs is a page too (never JSON to a browser).
    for method, path, kwargs, want, text in (
            ("PUT", "/tasks", {}, 405, "allowed: GET"),
            ("GET", "/?q=" + "x" * 9000, {}, 414, "the URL is over the limit"),
            ("POST", f"/runs/{run.id}/requeue", {"json": {"spec": "current"}}, 415,
             "application/x-www-form-urlencoded"),
            ("POST", f"/runs/{run.id}/requeue", {"data": b"spec=\xff\xfe",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400,
             "not a URL-encoded UTF-8 form")):
        async with harness.http.request(method, harness.stack.url + path, allow_redirects=False,
                                        **kwargs) as resp:
            page = await resp.text()
            assert resp.status == want and resp.content_type == "text/html", (path, page[:300])
            assert text in page, (path, page[:500])
            if want == 405:
                assert resp.headers["Allow"] == "GET"
    # Requeue with nothing selected, or with a malformed id: refused, nothing changes.
    headers = {"HX-Request": "true"}
    async with harness.http.post(f"{harness.stack.url}/dead-letters/requeue", data={},
                                 headers=headers) as resp:
        assert resp.status == 400 and "form field run: Field required" in await resp.text()
    async with harness.http.post(f"{harness.stack.url}/dead-letters/requeue",
                                 data={"run": "nope"}, headers=headers) as resp:
        assert resp.status == 400 and "form field run.0: " in await resp.text()
    # Posted forms go through the same boundary: hostile JSON in the replay form (a
    # valid form whose JSON text is refused: 422), a number int() cannot read in a bulk
    # form (both were 500s).
    forms = {
        f"/runs/{run.id}/replay": [
            ({"payload": "[" * 5000 + "]" * 5000}, 422, "payload: not valid JSON"),
            ({"payload": "1" * 5000}, 422, "payload: not valid JSON"),
            ({"payload": '{"a": "b\\u0000"}'}, 422, "payload: not valid JSON"),
        ],
        "/bulk/run": [({"action": "cancel", "cursor": "\u00b2"}, 400, "form field cursor"),
                      ({"action": "cancel", "batches": "9" * 30}, 400, "form field batches")],
    }
    for path, cases in forms.items():
        for data, want, text in cases:
            async with harness.http.post(f"{harness.stack.url}{path}", data=data,
                                         headers=headers) as resp:
                body = await resp.text()
                assert resp.status == want and text in body, (path, data, body[:300])


async def test_bulk_requeue_of_dead_letters(harness: Harness) -> None:
    runs = [await harness.dead_letter({"n": n}, checkpoint={"step": n}) for n in range(3)]
    status, page = await harness.get("/dead-letters")
    assert status == 200
    assert set(run_links(page)) == {r.id for r in runs}
    assert page.count('<span class="mono">order-fetched</span>') == 3  # last checkpoint
    chosen = [runs[0].id, runs[2].id]
    async with harness.http.post(
            f"{harness.stack.url}/dead-letters/requeue",
            data=[("run", rid) for rid in chosen], headers={"HX-Request": "true"}) as resp:
        assert resp.status == 200
        body = await resp.text()
    assert "Requeued 2 runs" in body
    assert run_links(body) == [*chosen, runs[1].id]  # the report links, then what is left
    for rid in chosen:
        again = await control.get(harness.stack.engine, uuid.UUID(rid))
        assert again.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    # Requeueing them again refuses each one and says why.
    async with harness.http.post(
            f"{harness.stack.url}/dead-letters/requeue",
            data=[("run", rid) for rid in chosen], headers={"HX-Request": "true"}) as resp:
        body = await resp.text()
    assert body.count("Not requeued") == 2 and "only dead-lettered or failed" in body


async def test_bulk_actions_by_filter_count_first_then_run_in_batches(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_ui, "BATCH", 2)  # three runs: two batches
    runs = [await harness.dead_letter({"n": n}) for n in range(3)]
    other = await harness.dead_letter({"n": 9}, message="other failure")
    headers = {"HX-Request": "true"}

    # The page, filled in from a link's query (the dead-letter page links here).
    _, page = await harness.get("/dead-letters")
    link = re.search(r'id="bulk-dead-letters" href="([^"]+)"', page)
    assert link is not None
    status, form = await harness.get(html.unescape(link.group(1)))
    assert status == 200 and 'name="deadLettered" value="1" checked' in form
    assert 'value="requeue" checked' in form

    since = (runs[0].created_at.replace(tzinfo=None)).isoformat(timespec="seconds")
    fields = [("action", "requeue"), ("task", "one-shot"), ("deadLettered", "1"),
              ("errorType", "error"), ("since", since), ("spec", "original")]

    async def post(path: str, data: list[tuple[str, str]]) -> tuple[int, str]:
        async with harness.http.post(f"{harness.stack.url}{path}", data=data,
                                     headers=headers) as resp:
            return resp.status, await resp.text()

    # Counting changes nothing; the confirmation carries the same filter.
    status, preview = await post("/bulk/preview", fields)
    assert status == 200 and "4 runs match" in preview and "Nothing has changed yet" in preview
    assert "Requeue 4 runs" in preview
    for r in [*runs, other]:
        assert (await control.get(harness.stack.engine, uuid.UUID(r.id))).status == (
            RunStatus.DEAD_LETTERED)
    carried = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', preview)
    assert sorted(carried) == sorted(fields)

    # The first batch, and the form that posts the next one when it lands on the page.
    status, progress = await post("/bulk/run", carried)
    assert status == 200 and "2 changed, 0 skipped after 1 batch" in progress
    assert 'hx-trigger="load"' in progress
    assert "about 2 left" in progress
    done = progress
    for _ in range(5):  # the page posts each next batch itself; here the test does
        following = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', done)
        assert "cursor" in dict(following)
        status, done = await post("/bulk/run", following)
        assert status == 200
        if 'hx-trigger="load"' not in done:
            break
    assert "done. 4 runs changed, 0 skipped" in done
    for r in [*runs, other]:
        again = await control.get(harness.stack.engine, uuid.UUID(r.id))
        assert again.status != RunStatus.DEAD_LETTERED and again.spec_choice == "original"

    # Repeating it finds nothing left to do.
    _, preview = await post("/bulk/preview", fields)
    assert "0 runs match" in preview and "bulk-confirm" not in preview

    # Bad input: a 4xx naming the field, and nothing done.
    for bad, words in (([("action", "explode")], "action"),
                       ([("action", "requeue"), ("since", "yesterday")], "since"),
                       ([("action", "requeue"), ("errorType", "gremlins")], "errorType"),
                       ([("action", "requeue"), ("spec", "newest")], "spec"),
                       ([("action", "requeue"), ("status", "sleeping")], "status"),
                       ([("action", "requeue"), ("cursor", "x")], "cursor")):
        status, body = await post("/bulk/run" if ("cursor", "x") in bad else "/bulk/preview",
                                  bad)
        assert status == 400, (bad, body)
        assert words in body, (bad, body)


async def test_requeue_buttons_offer_the_original_spec(harness: Harness) -> None:
    dead = await harness.dead_letter({"n": 1})
    _, page = await harness.get(f"/runs/{dead.id}")
    assert 'hx-include="#requeue-spec"' in page and '<option value="original">' in page
    async with harness.http.post(f"{harness.stack.url}/runs/{dead.id}/requeue",
                                 data={"spec": "original"}, headers={"HX-Request": "true"}) as resp:
        assert resp.status == 204
    assert (await control.get(harness.stack.engine, uuid.UUID(dead.id))).spec_choice == "original"
    more = [await harness.dead_letter({"n": n}) for n in (2, 3)]
    async with harness.http.post(
            f"{harness.stack.url}/dead-letters/requeue", headers={"HX-Request": "true"},
            data=[*[("run", r.id) for r in more], ("spec", "original")]) as resp:
        assert resp.status == 200 and "Requeued 2 runs" in await resp.text()
    for r in more:
        assert (await control.get(harness.stack.engine, uuid.UUID(r.id))).spec_choice == (
            "original")
    async with harness.http.post(f"{harness.stack.url}/runs/{dead.id}/requeue",
                                 data={"spec": "newest"}, headers={"HX-Request": "true"}) as resp:
        assert resp.status == 400 and "form field spec: " in await resp.text()


async def test_run_page_buttons_cancel_and_requeue(harness: Harness) -> None:
    dead = await harness.dead_letter({"n": 1})
    async with harness.http.post(f"{harness.stack.url}/runs/{dead.id}/requeue",
                                 headers={"HX-Request": "true"}) as resp:
        assert resp.status == 204 and resp.headers["HX-Redirect"] == f"/runs/{dead.id}"
    # The requeued run's second attempt starts (on a backend that never runs it).
    await wait_for_status(harness.stack.engine, dead.id, {RunStatus.RUNNING})
    async with harness.http.post(f"{harness.stack.url}/runs/{dead.id}/cancel",
                                 headers={"HX-Request": "true"}) as resp:
        assert resp.status == 204
    # A running run is asked to stop; it ends when its runner says the task stopped.
    asked = await control.get(harness.stack.engine, uuid.UUID(dead.id))
    assert asked.status == "running" and asked.error is not None
    assert asked.error.message == "cancelled in the UI"
    _, page = await harness.get(f"/runs/{dead.id}")
    assert 'id="cancel-requested"' in page and "cancelled in the UI" in page
    assert await harness.runner(dead, 2, "POST", "cancelled", {}) == 200
    assert (await control.get(harness.stack.engine, uuid.UUID(dead.id))).status == "cancelled"
    async with harness.http.post(f"{harness.stack.url}/runs/{dead.id}/cancel",
                                 headers={"HX-Request": "true"}) as resp:
        assert resp.status == 409 and "only active runs can be cancelled" in await resp.text()


async def test_tasks_page(harness: Harness) -> None:
    await harness.dead_letter({"n": 1})
    await control.trigger(harness.stack.engine, "default", "one-shot", TriggerRequest())
    status, page = await harness.get("/tasks")
    assert status == 200
    assert "examples.hello:hello" in page
    assert "100% <span class=\"muted\">(1 of 1)</span>" in page


async def test_login_is_required_when_a_token_is_set(database_url: str) -> None:
    stack = await Standalone(settings(database_url, api_token="s3cret"), dispatch=False).start()
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            for path in ("/", "/tasks", "/dead-letters", f"/runs/{uuid.uuid4()}"):
                async with http.get(stack.url + path, allow_redirects=False) as resp:
                    assert resp.status == 303, path
                    assert resp.headers["Location"].startswith("/login?next=")
            async with http.get(f"{stack.url}/login") as resp:
                page = await resp.text()
            assert 'name="token"' in page and "Runs</a>" not in page  # only the login
            async with http.get(f"{stack.url}/", headers={"HX-Request": "true"},
                                allow_redirects=False) as resp:
                assert resp.status == 401 and resp.headers["HX-Redirect"] == "/login"

            async with http.post(f"{stack.url}/login", data={"token": "wrong", "next": "/tasks"},
                                 allow_redirects=False) as resp:
                assert resp.status == 401
                assert "That token is not valid" in await resp.text()
                assert auth.COOKIE not in resp.cookies
            async with http.get(f"{stack.url}/tasks", allow_redirects=False) as resp:
                assert resp.status == 303

            async with http.post(f"{stack.url}/login",
                                 data={"token": "s3cret", "next": "//evil.example/x"},
                                 allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/"
                cookie = resp.cookies[auth.COOKIE]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert "s3cret" not in cookie.value
            async with http.get(f"{stack.url}/tasks") as resp:
                assert resp.status == 200 and "Tasks" in await resp.text()
            # The JSON API takes the session for reads (the page's event stream) ...
            async with http.get(f"{stack.url}/v1/runs") as resp:
                assert resp.status == 200
            # ... but a change needs the UI's own header: a forged form post is refused.
            async with http.post(f"{stack.url}/runs/{uuid.uuid4()}/cancel",
                                 allow_redirects=False) as resp:
                assert resp.status == 401
            async with http.post(f"{stack.url}/v1/runs/{uuid.uuid4()}/cancel") as resp:
                assert resp.status == 401
            async with http.post(f"{stack.url}/logout", allow_redirects=False) as resp:
                assert resp.status == 303
            async with http.get(f"{stack.url}/tasks", allow_redirects=False) as resp:
                assert resp.status == 303
        # A script may use the API token on the pages too, as on the JSON API (another
        # site's form cannot send it); a wrong one is a 401 page.
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer s3cret"}) as http:
            async with http.get(f"{stack.url}/tasks", allow_redirects=False) as resp:
                assert resp.status == 200 and "Tasks" in await resp.text()
            async with http.post(f"{stack.url}/runs/{uuid.uuid4()}/cancel",
                                 allow_redirects=False) as resp:
                assert resp.status == 404 and resp.content_type == "text/html"
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer wrong"}) as http, \
                http.get(f"{stack.url}/tasks", allow_redirects=False) as resp:
            assert resp.status == 401 and resp.content_type == "text/html"
            assert "the API token is not valid" in await resp.text()
        # A forged cookie is no session.
        async with aiohttp.ClientSession(cookies={auth.COOKIE: "0" * 64}) as http:
            async with http.get(f"{stack.url}/", allow_redirects=False) as resp:
                assert resp.status == 303
            async with http.get(f"{stack.url}/v1/runs") as resp:
                assert resp.status == 401
    finally:
        await stack.stop()


async def test_log_pane_pages_filters_and_follows(harness: Harness) -> None:
    lines = [{"ts": f"2026-01-01T00:00:{n % 60:02d}Z", "level": "warning" if n % 5 == 0 else "info",
              "message": f"line {n}", "fields": {"n": n}} for n in range(250)]
    run = await harness.dead_letter({"n": 1}, logs=lines)
    _, page = await harness.get(f"/runs/{run.id}")
    shown = re.findall(r'data-cursor="([0-9]+-[0-9]+)"', page)
    assert len(shown) == 200  # the newest page of the tail, oldest first
    assert "line 249" in page and "line 49<" not in page and "Show earlier lines" in page
    earlier = re.search(r'hx-get="(/runs/[^"]+/log-lines\?before=[^"]+)"', page)
    assert earlier is not None
    _, rest = await harness.get(html.unescape(earlier.group(1)))
    assert len(re.findall(r'data-cursor="', rest)) == 50 and "line 0<" in rest
    assert 'id="log-follow"' not in page  # a finished run is not followed
    _, warnings = await harness.get(f"/runs/{run.id}/log-lines?level=warning")
    assert len(re.findall(r'class="log-line warning"', warnings)) == 50
    assert 'class="log-line info"' not in warnings
    _, other = await harness.get(f"/runs/{run.id}/log-lines?attempt=2")
    assert "No log lines match." in other
    # Following from a cursor: the lines after it, and the follower's next cursor.
    _, after = await harness.get(f"/runs/{run.id}/log-lines?after={shown[-2]}")
    assert re.findall(r'data-cursor="([0-9]+-[0-9]+)"', after) == [shown[-1]]
    assert 'id="log-after"' in after and 'hx-swap-oob="true"' in after


async def test_an_active_run_page_follows_its_event_stream(harness: Harness) -> None:
    run, _ = await control.trigger(harness.stack.engine, "default", "one-shot",
                                   TriggerRequest(payload={}))
    assert await harness.runner(run, 1, "POST", "logs", {"entries": [
        {"ts": "2026-01-01T00:00:00Z", "message": "first"}]}) == 202
    _, page = await harness.get(f"/runs/{run.id}")
    follow = re.search(r'sse-connect="/v1/runs/[^"?]+/events\?lastEventId=([0-9]+-0)&amp;kinds=',
                       page)
    assert follow is not None, page
    assert 'id="log-follow"' in page and 'id="overview-refresh"' in page
    assert f'hx-post="/runs/{run.id}/cancel"' in page and 'id="replay-form"' not in page
    # The replay section is a placeholder that asks again on each status event.
    assert '<section id="replay" hidden></section>' in page
    assert f'hx-get="/runs/{run.id}/replay-section" hx-target="#replay"' in page
    _, section = await harness.get(f"/runs/{run.id}/replay-section")
    assert section.strip() == '<section id="replay" hidden></section>'
    # A line logged after the page was drawn is exactly what the follower fetches next.
    assert await harness.runner(run, 1, "POST", "logs", {"entries": [
        {"ts": "2026-01-01T00:00:01Z", "message": "second"}]}) == 202
    await asyncio.sleep(0.05)
    _, after = await harness.get(f"/runs/{run.id}/log-lines?after={follow.group(1)}")
    assert "second" in after and "first" not in after
    # Once the run has finished, the section the page fetches holds the replay form.
    assert await harness.runner(run, 1, "POST", "complete", {"result": 1}) == 200
    await wait_for_status(harness.stack.engine, run.id, {RunStatus.SUCCEEDED})
    _, section = await harness.get(f"/runs/{run.id}/replay-section")
    assert '<section id="replay" class="replay-section">' in section
    assert f'hx-post="/runs/{run.id}/replay"' in section


async def test_a_run_that_ends_while_its_page_is_drawn_is_not_shown_running_for_ever(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page follows the run's events from its log tail's cursor. A run that ended
    after the page read it but before that cursor was taken showed "running", and
    its status event was already behind the cursor: the page never updated (the
    browser test saw this on a quiet machine). Here the run ends right then."""
    run, _ = await control.trigger(harness.stack.engine, "default", "one-shot",
                                   TriggerRequest(payload={}))
    assert await harness.runner(run, 1, "POST", "logs", {"entries": [
        {"ts": "2026-01-01T00:00:00Z", "message": "working"}]}) == 202
    tail = log_pages.tail
    ended = False

    async def run_ends_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal ended
        if not ended:
            ended = True
            assert await harness.runner(run, 1, "POST", "complete", {"result": 1}) == 200
            await wait_for_status(harness.stack.engine, run.id, {RunStatus.SUCCEEDED})
        return await tail(*args, **kwargs)

    monkeypatch.setattr(log_pages, "tail", run_ends_first)
    status, page = await harness.get(f"/runs/{run.id}")
    assert status == 200 and ended
    # Everything below the page's cursor is in what the page shows: the run ended.
    assert re.search(r'id="run-status">succeeded<', page), page
    assert "sse-connect" not in page


async def test_replay_from_the_ui_and_its_refusals(harness: Harness) -> None:
    run = await harness.dead_letter({"orderId": "o-1"}, checkpoint={"id": "o-1"})
    headers = {"HX-Request": "true"}
    url = f"{harness.stack.url}/runs/{run.id}/replay"

    async def post(form: dict[str, str]) -> tuple[int, str, str | None]:
        async with harness.http.post(url, data=form, headers=headers) as resp:
            return resp.status, await resp.text(), resp.headers.get("HX-Redirect")

    refusals = {
        "payload: not valid JSON": {"from": "order-fetched", "payload": "{oops"},
        "checkpoint &#39;order-fetched&#39;: not valid JSON": {
            "from": "order-fetched", "payload": "{}", "checkpoint": "[1,"},
        "nope": {"from": "nope", "payload": "{}"},
        "form field spec: ": {"payload": "{}", "spec": "newest"},
    }
    for text, form in refusals.items():
        status, body, redirect = await post(form)
        assert 400 <= status < 500 and text in body and redirect is None, (text, body)
    assert (await control.get(harness.stack.engine, uuid.UUID(run.id), details=True)
            ).replays == []  # nothing was created

    status, _, redirect = await post({"from": "order-fetched", "spec": "original",
                                      "payload": '{"orderId": "o-2"}',
                                      "checkpoint": '{"id": "o-2"}'})
    assert status == 204 and redirect is not None
    replay_id = redirect.rsplit("/", 1)[1]
    replayed = await control.get(harness.stack.engine, uuid.UUID(replay_id), details=True)
    assert replayed.replay_of == run.id and replayed.payload == {"orderId": "o-2"}
    assert [(c.key, c.data, c.attempt) for c in replayed.checkpoints or []] == [
        ("order-fetched", {"id": "o-2"}, 0)]
    assert replayed.replay is not None and replayed.replay.requested_by == "ui (anonymous)"
    _, page = await harness.get(f"/runs/{replay_id}")
    assert f'id="replay-of" href="/runs/{run.id}"' in page
    assert "copied from the replayed run" in page and 'id="carried"' in page
    _, original = await harness.get(f"/runs/{run.id}")
    assert f'class="mono replay-link" href="/runs/{replay_id}"' in original
    # A run that is still active cannot be replayed: refused, nothing created.
    active, _ = await control.trigger(harness.stack.engine, "default", "one-shot",
                                      TriggerRequest(payload={}))
    async with harness.http.post(f"{harness.stack.url}/runs/{active.id}/replay",
                                 data={"payload": "{}"}, headers=headers) as resp:
        assert resp.status == 409, await resp.text()
    # Emptied text areas are no value: the payload null, the checkpoint as it was.
    status, _, redirect = await post({"from": "order-fetched", "payload": "", "checkpoint": ""})
    assert status == 204 and redirect is not None
    emptied = await control.get(harness.stack.engine, uuid.UUID(redirect.rsplit("/", 1)[1]),
                                details=True)
    assert emptied.payload is None
    assert [(c.key, c.data) for c in emptied.checkpoints or []] == [("order-fetched",
                                                                     {"id": "o-1"})]
