"""Starting a campaign from the dashboard in Chromium: a CSV uploaded with its settings through
the form, and the load's rejected row shown with its line number in the CSV."""

from __future__ import annotations

from browser_fixtures import BrowserPage, Dashboard, campaign_status, log_in, upload_campaign


async def test_upload_shows_the_bad_rows_line(
    browser_page: BrowserPage, dashboard: Dashboard, database_url: str
) -> None:
    """Three numbers and one bad row on line 4 of the file: the answer page's summary, and
    table#rejects holding one row whose td.line is 4 with a reason; the campaign exists."""
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.key)
    csv_text = (
        "phone,name\n"
        "+14155551000,Ada\n"
        "+14155551001,Grace\n"
        "this is not a number,Linus\n"
        "+14155551002,Barbara\n"
    )
    status = await upload_campaign(page, dashboard.url, "uploaded", csv_text)
    assert status in (200, 201), await page.content()

    summary = await page.text_content("[data-testid=load-summary]") or ""
    assert "3" in summary  # the three numbers loaded
    rows = page.locator("table#rejects tr:has(td.line)")
    assert await rows.count() == 1
    assert (await rows.first.locator("td.line").text_content() or "").strip() == "4"
    assert (await rows.first.locator("td.reason").text_content() or "").strip() != ""
    assert await campaign_status(database_url, "uploaded") == "running"
