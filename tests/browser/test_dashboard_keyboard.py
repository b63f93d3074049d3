"""The dashboard with the keyboard only, in Chromium: Tab reaches the pause button, Enter opens
its confirmation, and Tab and Enter in the dialog pause the campaign."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from browser_fixtures import (
    BrowserPage,
    Dashboard,
    campaign_status,
    load_campaign,
    log_in,
    wait_for_text,
)

if TYPE_CHECKING:
    from playwright.async_api import Page

MAX_TABS = 60


async def tab_to(page: Page, element_id: str) -> int:
    """Press Tab until the element with this id has the focus; how many presses it took."""
    for presses in range(MAX_TABS + 1):
        if await page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return presses
        await page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} not reached in {MAX_TABS} presses of Tab")


async def test_pause_with_the_keyboard_only(
    browser_page: BrowserPage,
    dashboard: Dashboard,
    campaign_command: list[str],
    cli_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    """From the top of the campaign page: Tab to button#pause, Enter opens dialog#confirm with
    the focus inside it, Tab to button#confirm-yes and Enter: the campaign is paused."""
    await load_campaign(campaign_command, cli_env, tmp_path, "keys", 10)
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.key, next_path="/campaigns/keys")
    await tab_to(page, "pause")
    assert await page.evaluate("document.activeElement.matches(':focus-visible')")
    await page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    assert await dialog.is_visible()
    assert await page.evaluate(
        "document.getElementById('confirm').contains(document.activeElement)"
    )
    async with page.expect_navigation():
        await tab_to(page, "confirm-yes")
        await page.keyboard.press("Enter")
    assert "paused" in (await page.text_content("[data-testid=flash]") or "")
    await wait_for_text(page, "[data-testid=status]", "paused")
    assert await campaign_status(database_url, "keys") == "paused"
