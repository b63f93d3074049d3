"""Logging in and out of the dashboard in Chromium: the key is the only way in, the session cookie
is what the issue asks for, and logging out ends the session on the server, not only the page."""

from __future__ import annotations

import urllib.parse

import aiohttp
from browser_fixtures import BrowserPage, Dashboard, log_in


async def test_a_wrong_key_is_refused_and_a_page_asks_for_a_login(
    browser_page: BrowserPage, dashboard: Dashboard
) -> None:
    """Without a session / leads to the login form; a wrong key gets 401, the form again with
    its error, and no session cookie."""
    page = browser_page.page
    await page.goto(dashboard.url + "/audit")
    landed = urllib.parse.urlsplit(page.url)
    assert landed.path == "/login"
    assert urllib.parse.parse_qs(landed.query)["next"] == ["/audit"]
    assert await page.locator("input#key[type=password][name=key]").count() == 1
    assert await page.input_value("form#login-form input[name=next]") == "/audit"

    await page.fill("input#key", "cpk_" + "x" * 43)
    async with page.expect_navigation() as navigation:
        await page.click("button#login-submit")
    response = await navigation.value
    assert response is not None
    assert response.status == 401
    assert await page.locator("[data-testid=login-error]").is_visible()
    assert await page.locator("form#login-form").is_visible()
    cookies = await page.context.cookies()
    assert "campaign_session" not in {cookie["name"] for cookie in cookies}
    assert dashboard.key not in await page.content()


async def test_log_in_then_log_out(browser_page: BrowserPage, dashboard: Dashboard) -> None:
    """The right key lands on the page asked for, shows the key's name and sets an HttpOnly,
    SameSite=Strict cookie; logout returns to the login form and the old cookie opens nothing."""
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.key, next_path="/audit")
    assert (await page.text_content("[data-testid=key-name]") or "").strip() == "operator"
    assert await page.locator("[data-testid=read-only]").count() == 0
    cookie = next(c for c in await page.context.cookies() if c["name"] == "campaign_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http on loopback: CAMPAIGN_PUBLIC_URL is not https
    assert cookie["path"] == "/"
    assert dashboard.key not in cookie["value"]
    # Scripts on the page cannot read it.
    assert "campaign_session" not in await page.evaluate("document.cookie")

    await page.goto(dashboard.url + "/")
    assert await page.locator("table#campaigns").count() == 1

    async with page.expect_navigation():
        await page.click("form#logout-form button#logout")
    assert urllib.parse.urlsplit(page.url).path == "/login"
    await page.goto(dashboard.url + "/")
    assert urllib.parse.urlsplit(page.url).path == "/login"

    # The cookie the browser held before logging out was ended on the server.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            dashboard.url + "/",
            headers={"Cookie": f"campaign_session={cookie['value']}"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 303
        assert urllib.parse.urlsplit(response.headers["Location"]).path == "/login"


async def test_login_goes_only_to_a_local_page(
    browser_page: BrowserPage, dashboard: Dashboard
) -> None:
    """A `next` pointing at another site is not followed: the login lands on /."""
    page = browser_page.page
    await page.goto(dashboard.url + "/login?next=" + urllib.parse.quote("//example.com/x"))
    await page.fill("input#key", dashboard.key)
    async with page.expect_navigation():
        await page.click("button#login-submit")
    landed = urllib.parse.urlsplit(page.url)
    assert (landed.netloc, landed.path) == (urllib.parse.urlsplit(dashboard.url).netloc, "/")
