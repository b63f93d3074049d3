"""The campaign page in Chromium while a real `campaign worker` process dials the simulator: its
counters move by themselves (Server-Sent Events, no reload), and its pause button stops the
worker within a second."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browser_fixtures import (
    BrowserPage,
    Dashboard,
    campaign_status,
    load_campaign,
    log_in,
    number_in,
    wait_for_text,
    wait_until,
)
from cli_fixtures import start_worker, worker_env
from plivo_fixtures import simulator_config

from campaign.simulator import RunningSimulator, running_simulator

pytestmark = pytest.mark.slow

# Slow enough that the campaign is far from done when the test looks (200 contacts at 10/s).
CONTACTS = 200
ACCOUNT_CPS = "10"


@pytest.fixture
async def plivo() -> AsyncIterator[RunningSimulator]:
    """The simulator in this test's event loop, reachable by the worker process over loopback."""
    async with running_simulator(simulator_config()) as running:
        yield running


@pytest.fixture
async def worker(
    campaign_command: list[str], cli_env: dict[str, str], plivo: RunningSimulator, tmp_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A running campaign `live` and a `campaign worker` process dialing it."""
    env = worker_env(cli_env, plivo, CAMPAIGN_ACCOUNT_CPS=ACCOUNT_CPS)
    await load_campaign(campaign_command, env, tmp_path, "live", CONTACTS)
    process = await start_worker(campaign_command, env, quiet=True)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_counters_move_without_a_reload(
    browser_page: BrowserPage,
    dashboard: Dashboard,
    plivo: RunningSimulator,
    worker: asyncio.subprocess.Process,
) -> None:
    """While the worker dials, count-done on the open page rises to what the simulator saw,
    with no navigation and the page's own state (a JS variable) intact."""
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.key, next_path="/campaigns/live")
    assert (await page.text_content("h1") or "").strip() == "live"
    assert await number_in(page, "[data-testid=count-total]") == CONTACTS
    first = await number_in(page, "[data-testid=count-done]")
    await page.evaluate("window.__sameDocument = true")
    navigations = len(browser_page.watched.navigations)

    async def counted_ten_more() -> bool:
        return await number_in(page, "[data-testid=count-done]") >= first + 10

    await wait_until(counted_ten_more, timeout_s=20)
    assert len(plivo.ledger.dials) >= first + 10
    assert len(browser_page.watched.navigations) == navigations
    assert await page.evaluate("window.__sameDocument === true")
    assert await number_in(page, "[data-testid=count-done]") < CONTACTS  # still dialing
    assert browser_page.watched.dialogs == []


async def test_pause_button_stops_the_worker_within_a_second(
    browser_page: BrowserPage,
    dashboard: Dashboard,
    database_url: str,
    plivo: RunningSimulator,
    worker: asyncio.subprocess.Process,
) -> None:
    """Pause, confirmed in its dialog: the page says paused, and the simulator receives no
    Make-a-call request later than one second after the confirmation."""
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.key, next_path="/campaigns/live")

    async def dialing() -> bool:
        return len(plivo.ledger.make_call_requests()) >= 5

    await wait_until(dialing)
    await page.click("button#pause")
    dialog = page.locator("dialog#confirm")
    assert await dialog.is_visible()
    assert await dialog.get_attribute("open") is not None
    assert len(plivo.ledger.make_call_requests()) > 0  # not paused by opening the dialog
    async with page.expect_navigation() as navigation:
        confirmed_at = time.time()  # the simulator's ledger runs on the same wall clock
        await page.click("dialog#confirm button#confirm-yes")
    response = await navigation.value
    assert response is not None
    assert response.ok
    assert urllib.parse.urlsplit(page.url).path == "/campaigns/live"
    assert await page.locator("[data-testid=flash]").is_visible()
    await wait_for_text(page, "[data-testid=status]", "paused")
    assert await campaign_status(database_url, "live") == "paused"

    await asyncio.sleep(max(0.0, confirmed_at + 2.0 - time.time()))
    late = [
        request.received_at - confirmed_at
        for request in plivo.ledger.make_call_requests()
        if request.received_at > confirmed_at + 1.0
    ]
    assert late == [], f"Make-a-call requests this many seconds after the pause: {late}"
    assert worker.returncode is None  # paused, not stopped
