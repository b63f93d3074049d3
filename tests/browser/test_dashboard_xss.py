"""Anything from a CSV or a user is text, in Chromium: a campaign name, a CSV field and a rejected
row holding an HTML or a </script> payload are shown as those characters on every page that
shows them, no JS dialog opens, no image `x` is fetched, and the Content-Security-Policy never
had to block anything."""

from __future__ import annotations

import urllib.parse

import pytest
from browser_fixtures import BrowserPage, Dashboard, log_in, upload_campaign

PAYLOADS = (
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
)


async def assert_inert(browser_page: BrowserPage, where: str) -> None:
    """Nothing of a payload ran or loaded on the current page."""
    watched = browser_page.watched
    assert watched.dialogs == [], where
    assert await browser_page.csp_violations() == [], where
    fetched_x = [
        url for url in watched.requests if urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1] == "x"
    ]
    assert fetched_x == [], where


async def shown_texts(browser_page: BrowserPage, selector: str) -> list[str]:
    """The text of each element matching `selector`, as the user reads it."""
    texts: list[str] = await browser_page.page.eval_on_selector_all(
        selector, "(elements) => elements.map((element) => element.textContent.trim())"
    )
    return texts


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_payloads_are_shown_as_text_and_run_nothing(
    browser_page: BrowserPage, dashboard: Dashboard, payload: str
) -> None:
    """The payload as a campaign's name, a contact's CSV field and a rejected destination: the
    upload answer, the campaign list, the campaign page, its contacts and the contact's page
    show it as characters, and nothing runs."""
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.key)
    csv_text = f"phone,note\n+14155551000,{payload}\n{payload},rejected\n"
    status = await upload_campaign(page, dashboard.url, payload, csv_text)
    assert status in (200, 201), await page.content()
    await assert_inert(browser_page, "upload answer")
    reject = page.locator("table#rejects tr:has(td.line)")
    assert await reject.count() == 1
    assert (await reject.locator("td.line").text_content() or "").strip() == "3"
    assert payload in (await reject.text_content() or "")
    assert payload in await page.inner_text("body")

    await page.goto(dashboard.url + "/")
    await assert_inert(browser_page, "campaign list")
    row = page.locator("table#campaigns tr[data-campaign]")
    assert await row.count() == 1
    assert await row.get_attribute("data-campaign") == payload
    assert payload in (await row.text_content() or "")

    # The campaign page, by its link in the list (the name holds / and <>, so the link must be
    # built by the page, escaped).
    async with page.expect_navigation() as navigation:
        await row.locator("a").first.click()
    response = await navigation.value
    assert response is not None
    policy = await response.header_value("Content-Security-Policy") or ""
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    await assert_inert(browser_page, "campaign page")
    assert await shown_texts(browser_page, "h1") == [payload]
    assert await page.title() != ""

    await page.goto(page.url.split("?", 1)[0].rstrip("/") + "/contacts")
    await assert_inert(browser_page, "contacts page")
    contact = page.locator("table#contacts tr[data-contact-id]")
    assert await contact.count() == 1
    async with page.expect_navigation():
        await contact.locator("a").first.click()
    await assert_inert(browser_page, "contact page")
    assert payload in await page.inner_text("body")  # the CSV's note field, as characters
    assert await page.locator("ol#timeline").count() == 1
