"""The UI in Debian's chromium, driven by Playwright, against `waypost dev`.

One walk through what a person does after a run went wrong: log in (and be
refused with a wrong token), find the order run by filtering, read its
timeline and checkpoints, watch a run's log lines arrive, replay the order run
from a checkpoint with an edited payload, and requeue dead-lettered runs in bulk. Screenshots
of each page are written for docs/ui.md (``make ui-screenshots``).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, expect

from tests.ui.conftest import DevServer

VIEWPORT = {"width": 1400, "height": 900}


def ledger_entries(server: DevServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.ledger.read_text().splitlines() if line]


async def api(server: DevServer, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with aiohttp.ClientSession() as http, http.request(
            method, server.url + path, json=body, headers=headers) as resp:
        assert resp.status < 400, (path, resp.status, await resp.text())
        return await resp.json()


async def wait_for_status(server: DevServer, run_id: str, status: str,
                          timeout: float = 90) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run: dict[str, Any] = await api(server, "GET", f"/v1/runs/{run_id}")
        if run["status"] == status:
            return run
        assert asyncio.get_running_loop().time() < deadline, (run_id, run["status"])
        await asyncio.sleep(0.3)


async def logged_in(browser: Browser, server: DevServer) -> Page:
    page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    await page.goto(server.url + "/login")
    await page.fill('input[name="token"]', server.token)
    await page.click('button[type="submit"]')
    await expect(page.locator("h1")).to_have_text("Runs")
    return page


async def test_login_refuses_a_wrong_token_and_shows_nothing_else(
        browser: Browser, dev_server: DevServer, screenshots: Path) -> None:
    page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    await page.goto(dev_server.url + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)$"))
    # Unauthenticated: the login form and nothing of the runs.
    await expect(page.locator("nav")).to_have_count(0)
    await expect(page.locator("table")).to_have_count(0)
    await page.fill('input[name="token"]', "not-the-token")
    await page.click('button[type="submit"]')
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    await page.screenshot(path=str(screenshots / "login-refused.png"))
    await page.goto(dev_server.url + "/tasks")
    await expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)tasks$"))

    await page.fill('input[name="token"]', dev_server.token)
    await page.click('button[type="submit"]')
    await expect(page).to_have_url(dev_server.url + "/tasks")
    await expect(page.locator("#tasks")).to_contain_text("process-order")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "waypost_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert dev_server.token not in session["value"]
    await page.screenshot(path=str(screenshots / "tasks.png"), full_page=True)


async def test_find_the_order_run_and_read_its_timeline(
        browser: Browser, dev_server: DevServer, screenshots: Path) -> None:
    page = await logged_in(browser, dev_server)
    rows = page.locator("table.runs tbody tr")
    await expect(rows).to_have_count(3)  # the three examples of `waypost dev`

    await page.select_option('select[name="task"]', "process-order")
    await expect(page).to_have_url(re.compile(r"task=process-order"))
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("succeeded")
    await page.select_option('select[name="status"]', "dead_lettered")
    await expect(page.locator("#runs")).to_contain_text("No runs match.")
    await page.select_option('select[name="status"]', "")
    await expect(rows).to_have_count(1)
    await page.screenshot(path=str(screenshots / "runs.png"))

    await rows.first.locator("a.run-link").click()
    await expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    await expect(page.locator("#run-status")).to_have_text("succeeded")
    # The order scenario: attempt 1 checkpoints order-fetched, then the charge fails;
    # attempt 2 resumes after it and checkpoints payment-complete.
    attempts = page.locator(".timeline .row.attempt")
    await expect(attempts).to_have_count(2)
    first, second = attempts.nth(0), attempts.nth(1)
    await expect(first).to_have_attribute("data-status", "failed")
    await expect(first.locator(".mark")).to_have_attribute("data-key", "order-fetched")
    await expect(first.locator(".failure")).to_have_text("error")
    await expect(first.locator(".seg.backoff")).to_have_count(1)
    await expect(first).to_contain_text("payment provider unavailable on attempt 1")
    await expect(second).to_have_attribute("data-status", "succeeded")
    await expect(second.locator(".mark")).to_have_attribute("data-key", "payment-complete")
    await page.screenshot(path=str(screenshots / "run.png"), full_page=True)

    # The state inspector: a checkpoint opens into its JSON tree.
    checkpoint = page.locator('details.checkpoint[data-key="order-fetched"]')
    await expect(checkpoint).to_contain_text("written by attempt 1")
    tree = checkpoint.locator(".tree")
    await expect(tree).to_be_hidden()
    await checkpoint.locator("summary").first.click()
    await expect(tree).to_be_visible()
    await expect(tree).to_contain_text('"ord-1001"')
    await expect(tree).to_contain_text('"amountCents"')
    await checkpoint.scroll_into_view_if_needed()
    await page.screenshot(path=str(screenshots / "checkpoint.png"))


async def test_a_log_line_arrives_live(
        browser: Browser, dev_server: DevServer, screenshots: Path) -> None:
    page = await logged_in(browser, dev_server)
    # `sleepy` logs "still sleeping" once a second (its 5 s timeout leaves room for a
    # slow start); the page is open before it ends.
    run = await api(dev_server, "POST", "/v1/tasks/default/sleepy/trigger",
                    {"payload": {"seconds": 2}})
    await page.goto(f"{dev_server.url}/runs/{run['id']}")
    # The runner's own lines (dev mode captures its stderr) share the pane; the task's
    # lines are the ones counted.
    sleeping = page.locator("#log-body tr.log-line", has_text="still sleeping")
    shown = await sleeping.count()
    assert shown < 2 and await page.locator("#run-status").text_content() != "succeeded"
    await expect(page.locator("#replay-form")).to_have_count(0)
    # New lines are appended by the page itself (no reload), from the event stream.
    await expect(sleeping).to_have_count(shown + 1, timeout=30_000)
    await expect(page.locator("#run-status")).to_have_text("succeeded", timeout=30_000)
    # The finished run can be replayed: its replay section appears without a reload.
    await expect(page.locator("#replay-form")).to_be_visible(timeout=30_000)
    await expect(sleeping).to_have_count(2)  # one line a second, none twice
    await expect(page.locator(".timeline .row.attempt")).to_have_count(1)
    # Filtering the pane by level leaves the info lines out.
    await page.select_option('#log-filters select[name="level"]', "warning")
    await expect(sleeping).to_have_count(0)
    await page.select_option('#log-filters select[name="level"]', "")
    await expect(sleeping).to_have_count(2)
    await page.locator("#logs").scroll_into_view_if_needed()
    await page.screenshot(path=str(screenshots / "logs.png"))


async def test_replay_from_order_fetched_with_an_edited_payload(
        browser: Browser, dev_server: DevServer, screenshots: Path) -> None:
    page = await logged_in(browser, dev_server)
    await page.select_option('select[name="task"]', "process-order")
    await expect(page.locator("table.runs tbody tr")).to_have_count(1)
    await page.locator("a.run-link").first.click()
    original = page.url.rsplit("/", 1)[1]

    checkpoint = page.locator('details.checkpoint[data-key="order-fetched"]')
    await checkpoint.locator("button.replay-here").click()
    await expect(page.locator('#replay-form select[name="from"]')).to_have_value("order-fetched")
    editor = page.locator("#replay-checkpoint")
    await expect(editor).to_contain_text('"ord-1001"')
    payload = page.locator("#replay-payload")
    await payload.fill('{"orderId": "ord-1001", "note": "replayed from the UI"}')
    await expect(page.locator("#replay-payload-state")).to_have_text("valid JSON")
    await page.locator("#replay").scroll_into_view_if_needed()
    await page.screenshot(path=str(screenshots / "replay-form.png"))
    await page.click("#replay-submit")

    await expect(page).not_to_have_url(re.compile(original))
    await expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    replay_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#replay-record")).to_contain_text("resuming after order-fetched")
    await expect(page.locator("#replay-record")).to_contain_text("replayed from the UI")
    await expect(page.locator("#replay-of")).to_have_attribute("href", f"/runs/{original}")
    await expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
    # It resumed after order-fetched: copied, not written by an attempt; its only
    # attempt wrote payment-complete.
    await expect(page.locator("#carried")).to_contain_text("order-fetched")
    attempts = page.locator(".timeline .row.attempt")
    await expect(attempts).to_have_count(1)
    await expect(attempts.first.locator(".mark")).to_have_attribute("data-key",
                                                                  "payment-complete")
    await page.screenshot(path=str(screenshots / "replay.png"), full_page=True)
    # The ledger of side effects: the replay charged, and never fetched the order.
    effects = [e["effect"] for e in ledger_entries(dev_server) if e["run"] == replay_id]
    assert effects.count("fetch_order") == 0 and effects.count("charge") == 1, effects

    # The original lists its replay, linked.
    await page.click("#replay-of")
    await expect(page.locator(f'#replays a[href="/runs/{replay_id}"]')).to_have_count(1)


async def test_bulk_requeue_of_two_dead_lettered_runs(
        browser: Browser, dev_server: DevServer, screenshots: Path) -> None:
    triggered = [await api(dev_server, "POST", "/v1/tasks/default/always-fails/trigger",
                           {"payload": {"reason": f"bulk-{n}"}}) for n in range(2)]
    ids = [r["id"] for r in triggered]
    for run_id in ids:
        await wait_for_status(dev_server, run_id, "dead_lettered")

    page = await logged_in(browser, dev_server)
    await page.click('nav a[href="/dead-letters"]')
    await expect(page.locator("h1")).to_have_text("Dead letters")
    for run_id in ids:
        row = page.locator("table.runs tbody tr", has=page.locator(f'a[href="/runs/{run_id}"]'))
        await expect(row).to_contain_text("always-fails failed on attempt 3, as designed")
        await row.locator('input[name="run"]').check()
    await page.screenshot(path=str(screenshots / "dead-letters.png"))
    await page.click("#requeue-selected")
    await expect(page.get_by_role("status")).to_contain_text("Requeued 2 runs")
    for run_id in ids:
        # Requeued: no longer dead-lettered on attempt 3. Hot workers run its three
        # fresh attempts (0.1 s backoff) in about a second, so it may be back in the
        # list already, dead-lettered on attempt 6.
        row = page.locator("table.runs tbody tr", has=page.locator(f'a[href="/runs/{run_id}"]'))
        await expect(row.filter(has_text="failed on attempt 3,")).to_have_count(0)
        run = await api(dev_server, "GET", f"/v1/runs/{run_id}")
        # A fresh retry budget: three more attempts allowed.
        assert run["maxAttempts"] == 6, run
        assert run["status"] != "dead_lettered" or run["attempt"] > 3, run


async def test_bulk_requeue_by_filter_counts_first(
        browser: Browser, dev_server: DevServer, screenshots: Path) -> None:
    triggered = [await api(dev_server, "POST", "/v1/tasks/default/always-fails/trigger",
                           {"payload": {"reason": f"by-filter-{n}"}}) for n in range(2)]
    ids = [r["id"] for r in triggered]
    for run_id in ids:
        await wait_for_status(dev_server, run_id, "dead_lettered")
    # Only these two: dead-lettered runs of always-fails created since the first.
    since = triggered[0]["createdAt"][:19]

    page = await logged_in(browser, dev_server)
    await page.click('nav a[href="/bulk"]')
    await expect(page.locator("h1")).to_have_text("Bulk actions")
    await page.goto(f"{dev_server.url}/bulk?action=requeue&task=always-fails"
                    f"&deadLettered=1&since={since}")
    await page.check('input[name="spec"][value="original"]')
    await page.click("#bulk-count")
    await expect(page.locator("#bulk-matched")).to_contain_text("2 runs match")
    await expect(page.locator("#bulk-matched")).to_contain_text("with the original spec")
    await page.screenshot(path=str(screenshots / "bulk.png"))
    for run_id in ids:  # counting changed nothing
        assert (await api(dev_server, "GET", f"/v1/runs/{run_id}"))["status"] == "dead_lettered"
    await page.click("#bulk-confirm")
    await expect(page.locator("#bulk-status")).to_contain_text("done. 2 runs changed")
    for run_id in ids:
        run = await api(dev_server, "GET", f"/v1/runs/{run_id}")
        assert run["maxAttempts"] == 6 and run["specChoice"] == "original", run
