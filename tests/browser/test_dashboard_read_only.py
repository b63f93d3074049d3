"""A read-only key in Chromium: it sees every page and no action on any, and a POST it forges
from the page with its own cookie (with or without the CSRF token) is refused 403 and changes
nothing; a writer's POST without the token is refused alike."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from browser_fixtures import (
    FORGE_POST,
    BrowserPage,
    Dashboard,
    campaign_status,
    load_campaign,
    log_in,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ACTION_SELECTORS = (
    "button#pause",
    "button#resume",
    "button#cancel",
    "input#cancel-queued",
    "form#pacing-form",
    "button#redial",
    "form#upload-form",
    "form#suppress-add",
    "button#redeliver-failed",
    "dialog#confirm",
)


async def post_forms(browser_page: BrowserPage) -> list[str]:
    """The id (or action) of every POST form on the current page."""
    found: list[str] = await browser_page.page.evaluate(
        """[...document.querySelectorAll("form")]
             .filter((form) => form.method.toLowerCase() === "post")
             .map((form) => form.id || form.getAttribute("action"))"""
    )
    return found


async def pause_form(page: Page) -> tuple[str, dict[str, str]]:
    """The path the page's pause form posts to, and the fields it sends (csrf among them)."""
    action, fields = await page.eval_on_selector(
        "button#pause",
        """(button) => [button.form.action,
                        Object.fromEntries(new FormData(button.form, button))]""",
    )
    assert "csrf" in fields, fields
    return urllib.parse.urlsplit(action).path, fields


async def writers_pause_form(browser: Browser, dashboard: Dashboard) -> tuple[str, dict[str, str]]:
    """The pause form as a writer's page has it."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await log_in(page, dashboard.url, dashboard.key, next_path="/campaigns/steady")
        return await pause_form(page)
    finally:
        await context.close()


async def test_read_only_key_sees_no_action_and_cannot_forge_one(
    browser: Browser,
    browser_page: BrowserPage,
    dashboard: Dashboard,
    campaign_command: list[str],
    cli_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    """Every page of a running campaign, the read-only key's: marked read-only, no action
    button or POST form but logout; its fetch POSTs to the pause URL (no token, then the
    session's token) answer 403 and the campaign keeps running."""
    await load_campaign(campaign_command, cli_env, tmp_path, "steady", 5)
    pause_path, writers_fields = await writers_pause_form(browser, dashboard)
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.read_only_key)
    assert (await page.text_content("[data-testid=key-name]") or "").strip() == "viewer"
    for path in (
        "/",
        "/campaigns/steady",
        "/campaigns/steady/contacts",
        "/new",
        "/suppression",
        "/webhooks",
        "/audit",
    ):
        response = await page.goto(dashboard.url + path)
        assert response is not None
        assert response.status in (200, 403), path
        assert await page.locator("[data-testid=read-only]").is_visible(), path
        for selector in ACTION_SELECTORS:
            assert await page.locator(selector).count() == 0, f"{path}: {selector}"
        assert await post_forms(browser_page) == ["logout-form"], path

    await page.goto(dashboard.url + "/campaigns/steady")
    token = await page.input_value("form#logout-form input[type=hidden][name=csrf]")
    assert token
    fields = {name: value for name, value in writers_fields.items() if name != "csrf"}
    without_token = await page.evaluate(FORGE_POST, [pause_path, fields])
    with_token = await page.evaluate(FORGE_POST, [pause_path, fields | {"csrf": token}])
    assert (without_token, with_token) == (403, 403)
    assert await campaign_status(database_url, "steady") == "running"


async def test_writer_post_without_the_token_is_refused(
    browser_page: BrowserPage,
    dashboard: Dashboard,
    campaign_command: list[str],
    cli_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    """The writer's own session POSTing to its pause form's URL without the CSRF field, or with
    a wrong one, gets 403 and the campaign keeps running; with the form's token it pauses."""
    await load_campaign(campaign_command, cli_env, tmp_path, "steady", 5)
    page = browser_page.page
    await log_in(page, dashboard.url, dashboard.key, next_path="/campaigns/steady")
    action, fields = await pause_form(page)
    token = fields.pop("csrf")
    assert await page.evaluate(FORGE_POST, [action, fields]) == 403
    assert await page.evaluate(FORGE_POST, [action, fields | {"csrf": token[::-1] + "x"}]) == 403
    assert await campaign_status(database_url, "steady") == "running"
    # The same request with the page's token is what the button sends: it works (a 303 back to
    # the page, which fetch with redirect "manual" reports as status 0).
    assert await page.evaluate(FORGE_POST, [action, fields | {"csrf": token}]) in (0, 200)
    assert await campaign_status(database_url, "steady") == "paused"
