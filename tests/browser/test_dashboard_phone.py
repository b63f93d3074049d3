"""The dashboard on a 375 px wide phone screen in Chromium: no page scrolls sideways, and what an
operator looks for (name, status, counters, actions) is on screen within the width."""

from __future__ import annotations

from pathlib import Path

from browser_fixtures import BrowserPage, Dashboard, load_campaign, log_in

PHONE_WIDTH = 375
# A long name with no spaces: the worst case for a narrow screen.
NAME = "reminders-for-the-whole-county-of-northumberland-2026"
KEY_ELEMENTS = {
    "/": ("table#campaigns", f'tr[data-campaign="{NAME}"] [data-testid=campaign-status]'),
    f"/campaigns/{NAME}": (
        "h1",
        "[data-testid=status]",
        "[data-testid=count-done]",
        "[data-testid=count-total]",
        "button#pause",
        "button#cancel",
        "form#logout-form button#logout",
    ),
    f"/campaigns/{NAME}/contacts": ("form#contact-filter", "table#contacts"),
    "/new": ("form#upload-form",),
    "/audit": ("table#audit",),
}


async def test_pages_fit_a_375_px_screen(
    browser_page: BrowserPage,
    dashboard: Dashboard,
    campaign_command: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """At 375 px: each page's scrollWidth is at most 375, its key elements are visible, and all
    but tables lie within the screen's width (after scrolling down to them)."""
    await load_campaign(campaign_command, cli_env, tmp_path, NAME, 30)
    page = browser_page.page
    await page.set_viewport_size({"width": PHONE_WIDTH, "height": 740})
    await log_in(page, dashboard.url, dashboard.key)
    for path, selectors in KEY_ELEMENTS.items():
        await page.goto(dashboard.url + path)
        scroll_width = await page.evaluate("document.scrollingElement.scrollWidth")
        assert scroll_width <= PHONE_WIDTH, f"{path}: {scroll_width} px wide"
        for selector in selectors:
            element = page.locator(selector).first
            await element.scroll_into_view_if_needed()
            assert await element.is_visible(), f"{path}: {selector}"
            if selector.startswith("table"):
                continue  # a wide table may scroll inside its own box; the page may not
            box = await element.bounding_box()
            assert box is not None, f"{path}: {selector}"
            assert box["x"] >= 0, f"{path}: {selector} at {box}"
            assert box["x"] + box["width"] <= PHONE_WIDTH + 0.5, f"{path}: {selector} at {box}"
