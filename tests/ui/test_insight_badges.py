"""Failure-pattern badges in Debian's chromium: shown on the task's row and on its
runs' pages while the pattern holds, absent for a healthy task, gone once it clears.

The patterns come from real tasks (process backend, real Postgres): a retry storm
(every run of ``stormy`` fails) and a checkpoint gap (``no-checkpoints`` runs 3.5 s
without one, over a 2 s threshold). ``hello`` is the healthy task beside them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from examples import hello
from tests.factories import settings, wait_for_status
from tests.integration import pattern_tasks
from waypost.backends.process import ProcessBackend
from waypost.engine import control, insights
from waypost.model.enums import RunStatus
from waypost.model.insights import InsightSettings
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone

FINAL = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD_LETTERED}
VIEWPORT = {"width": 1400, "height": 900}
# The badge's colours in the stylesheet (.badge.insight), as chromium computes them.
BADGE_BACKGROUND = "rgb(255, 243, 205)"
# A page is server-rendered, so it is whole once loaded; the margin is for a loaded machine.
SHOWN = 30_000


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Standalone]:
    thresholds = InsightSettings(interval_seconds=0.5, window_seconds=600,
                                 retry_storm_runs=3, checkpoint_gap_seconds=2.0)
    app = await Standalone(settings(database_url, missed_heartbeats=10, insights=thresholds),
                           ProcessBackend(max_parallel=3)).start()
    try:
        await app.register(pattern_tasks.stormy, pattern_tasks.no_checkpoints, hello.hello)
        yield app
    finally:
        await app.stop()


async def flagged(url: str) -> set[tuple[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/insights") as resp:
        assert resp.status == 200, await resp.text()
        page: dict[str, Any] = await resp.json()
    return {(i["task"], i["pattern"]) for i in page["items"]}


def task_row(page: Page, task: str) -> Locator:
    return page.locator("tr", has=page.get_by_role("link", name=task, exact=True))


async def test_badges_show_while_a_pattern_holds_and_go_when_it_clears(
        stack: Standalone, browser: Browser, tmp_path: Path) -> None:
    engine = stack.engine
    triggered = [("no-checkpoints", {"seconds": 3.5}), *[("stormy", {}) for _ in range(3)],
                 ("hello", {"name": "ui"})]
    ids: dict[str, list[str]] = {}
    for name, payload in triggered:
        run, _ = await control.trigger(engine, "default", name, TriggerRequest(payload=payload))
        ids.setdefault(name, []).append(str(run.id))
    for run_ids in ids.values():
        for run_id in run_ids:
            await wait_for_status(engine, run_id, FINAL, timeout=180)
    want = {("stormy", "retry_storm"), ("no-checkpoints", "checkpoint_gap")}
    deadline = time.monotonic() + 60
    while True:
        seen = await flagged(stack.url)
        if seen == want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert seen == want

    page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    await page.goto(f"{stack.url}/tasks")
    # The task's row carries its pattern's badge, visible, with the summary as its tooltip.
    for task, pattern, reason in (("stormy", "retry_storm", "RetryStorm"),
                                  ("no-checkpoints", "checkpoint_gap", "CheckpointGap")):
        badge = task_row(page, task).locator(f'.badge.insight[data-pattern="{pattern}"]')
        await expect(badge).to_be_visible(timeout=SHOWN)
        await expect(badge).to_have_text(reason)
        await expect(badge).to_have_css("background-color", BADGE_BACKGROUND)
        title = await badge.get_attribute("title")
        assert title, (task, pattern)
    await expect(task_row(page, "hello")).to_be_visible()
    await expect(task_row(page, "hello").locator(".badge.insight")).to_have_count(0)
    await page.screenshot(path=str(tmp_path / "tasks.png"))

    # A run of the flagged task shows its task's pattern; a healthy task's run none.
    await page.goto(f"{stack.url}/runs/{ids['stormy'][0]}")
    run_badge = page.locator('.insights .badge.insight[data-pattern="retry_storm"]')
    await expect(run_badge).to_be_visible(timeout=SHOWN)
    await expect(run_badge).to_have_text("RetryStorm")
    await expect(page.locator(".insights")).to_contain_text("nothing is done about them")
    await page.goto(f"{stack.url}/runs/{ids['hello'][0]}")
    await expect(page.locator("h1")).to_be_visible(timeout=SHOWN)
    await expect(page.locator(".badge.insight")).to_have_count(0)

    # The evidence leaves the window: the patterns clear, and so do the badges.
    engine.settings = engine.settings.model_copy(update={
        "insights": engine.settings.insights.model_copy(update={"window_seconds": 0.001})})
    _, cleared = await insights.run_once(engine)
    assert {(t, p) for _, t, p in cleared} == want
    await page.goto(f"{stack.url}/tasks")
    await expect(task_row(page, "stormy")).to_be_visible(timeout=SHOWN)
    await expect(page.locator(".badge.insight")).to_have_count(0)
    await page.goto(f"{stack.url}/runs/{ids['stormy'][0]}")
    await expect(page.locator("h1")).to_be_visible(timeout=SHOWN)
    await expect(page.locator(".badge.insight")).to_have_count(0)
