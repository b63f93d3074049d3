"""The dashboard in a real browser: one headless Chromium for the session, a fresh browser context
(cookies, storage) and page per test, and `campaign serve` as a subprocess with two API keys.

The browser is Debian's `chromium` (CAMPAIGN_TEST_CHROMIUM names another executable), driven by
Playwright's async API with `executable_path`, so nothing is downloaded. Without Playwright or
without the executable the browser tests skip and say why. Playwright's sync API cannot run in
the event loop that pytest-asyncio gives the tests (the simulator lives there too), hence the
async one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import asyncpg
import pytest
from cli_fixtures import LOAD_OPTIONS, run_cli
from worker_fixtures import free_port

from campaign import queries
from campaign.api.keys import key_hash, new_key

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, Request

DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Chromium runs as root in CI (no user namespaces there: --no-sandbox); /dev/shm of a container
# is small (--disable-dev-shm-usage); no GPU on these machines.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
# A selector that is not there fails the test in seconds, not Playwright's default 30 s.
ACTION_TIMEOUT_MS = 10_000

# Records what a page's scripts see of the Content-Security-Policy, before any page script runs
# (Playwright injects it through the DevTools protocol, which the page's CSP does not govern).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push({directive: event.violatedDirective, blocked: event.blockedURI,
                               sample: event.sample});
});
"""


def chromium_executable() -> str | None:
    """The Chromium to drive, or None when this machine has none."""
    configured = os.environ.get("CAMPAIGN_TEST_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    if Path(DEFAULT_CHROMIUM).exists():
        return DEFAULT_CHROMIUM
    return shutil.which("chromium")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip: the machine cannot run browser tests; fail instead where they must run (CI sets
    CAMPAIGN_TEST_REQUIRE_CHROMIUM=1)."""
    if os.environ.get("CAMPAIGN_TEST_REQUIRE_CHROMIUM") == "1":
        pytest.fail(reason + ", and CAMPAIGN_TEST_REQUIRE_CHROMIUM=1 says they must run")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium shared by every browser test of the session."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_or_fail("Playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_executable()
    if executable is None:
        skip_or_fail(
            f"no Chromium at {os.environ.get('CAMPAIGN_TEST_CHROMIUM') or DEFAULT_CHROMIUM} "
            "(apt-get install chromium, or set CAMPAIGN_TEST_CHROMIUM)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """What a page did that a test may want to rule out: JS dialogs, console errors, requests."""

    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)


@dataclass
class BrowserPage:
    """A page of its own browser context (no cookies shared with other tests), watched."""

    page: Page
    watched: Watched

    async def csp_violations(self) -> list[dict[str, Any]]:
        """The Content-Security-Policy violations the current document reported."""
        found: list[dict[str, Any]] = await self.page.evaluate("window.__cspViolations || []")
        return found


@pytest.fixture
async def browser_page(browser: Browser, dashboard: Dashboard) -> AsyncIterator[BrowserPage]:
    """A page in a fresh context, 1280 px wide; its dialogs are recorded and dismissed. It is
    closed before the dashboard's server stops (an open page holds a live /events stream)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    await context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = await context.new_page()
    watched = Watched()

    async def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.console_errors.append(message.text)

    def on_request(request: Request) -> None:
        watched.requests.append(request.url)
        if request.is_navigation_request() and request.frame == page.main_frame:
            watched.navigations.append(request.url)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("request", on_request)
    try:
        yield BrowserPage(page, watched)
    finally:
        await context.close()


# --- the dashboard's server -------------------------------------------------------------------


@dataclass
class Dashboard:
    """`campaign serve` on loopback: its base URL, a writer key, a read-only key, its log."""

    url: str
    key: str
    read_only_key: str
    log: Path

    def log_text(self) -> str:
        return read_log(self.log)


def read_log(path: Path) -> str:
    """A subprocess's log, for a failing test's message."""
    return path.read_text(errors="replace") if path.exists() else ""


async def create_keys(database_url: str) -> tuple[str, str]:
    """A read-write key named `operator` and a read-only one named `viewer`."""
    key, read_only_key = new_key(), new_key()
    connection = await asyncpg.connect(database_url)
    try:
        await queries.create_api_key(connection, "operator", key_hash(key), read_only=False)
        await queries.create_api_key(connection, "viewer", key_hash(read_only_key), read_only=True)
    finally:
        await connection.close()
    return key, read_only_key


@contextlib.asynccontextmanager
async def serve_dashboard(
    campaign_command: list[str], env: Mapping[str, str], log: Path
) -> AsyncIterator[str]:
    """`campaign serve` as a subprocess on a free port, its output in `log` (a pipe nobody reads
    would fill up and stall it), until the block ends (then SIGTERM); yields its base URL."""
    port = free_port()
    environment = {
        **env,
        "PLIVO_AUTH_TOKEN": env.get("PLIVO_AUTH_TOKEN", "serve-secret-token"),
        "CAMPAIGN_HTTP_PORT": str(port),
    }
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *campaign_command, "serve", env=environment, stdout=output, stderr=output
        )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                if process.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"campaign serve did not come up:\n{read_log(log)}")
        if process.returncode is not None:
            raise AssertionError(f"campaign serve exited:\n{read_log(log)}")
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture
async def dashboard(
    campaign_command: list[str], cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> AsyncIterator[Dashboard]:
    """`campaign serve` on this test's database with the keys `operator` and `viewer`."""
    key, read_only_key = await create_keys(database_url)
    log = tmp_path / "serve.log"
    async with serve_dashboard(campaign_command, cli_env, log) as url:
        yield Dashboard(url, key, read_only_key, log)


async def log_in(page: Page, base_url: str, key: str, next_path: str | None = None) -> None:
    """Log in through the form as a user does; lands on `next_path` (or /)."""
    target = "/login" + (f"?next={urllib.parse.quote(next_path)}" if next_path else "")
    await page.goto(base_url + target)
    await page.fill("input#key", key)
    async with page.expect_navigation():
        await page.click("button#login-submit")
    landed = urllib.parse.urlsplit(page.url)
    assert landed.path == (next_path or "/"), f"after login: {page.url}"


async def wait_until(
    condition: Callable[[], Any], timeout_s: float = 15.0, step_s: float = 0.05
) -> None:
    """Poll an async `condition` until it is true; fail after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step_s)


# A page's own fetch, with its cookie: what a forged form post from a script could do.
FORGE_POST = """
async ([path, fields]) => {
  const body = new URLSearchParams(fields);
  const response = await fetch(path, {method: "POST", body, credentials: "same-origin",
                                      redirect: "manual"});
  return response.status;
}
"""


async def load_campaign(
    campaign_command: list[str], env: dict[str, str], folder: Path, name: str, count: int
) -> None:
    """A new running campaign `name` of `count` US numbers, loaded by `campaign load`."""
    path = folder / "contacts.csv"
    path.write_text("phone,name\n" + "".join(f"+1415556{i:04d},person {i}\n" for i in range(count)))
    code, _out, err = await run_cli(
        campaign_command, env, "load", str(path), "--name", name, *LOAD_OPTIONS
    )
    assert code == 0, err


async def campaign_status(database_url: str, name: str) -> str:
    """The campaign's status as the database holds it."""
    connection = await asyncpg.connect(database_url)
    try:
        status: str = await connection.fetchval(
            "SELECT status FROM campaigns WHERE name = $1", name
        )
    finally:
        await connection.close()
    return status


async def number_in(page: Page, selector: str) -> int:
    """The number an element shows (`1,234` reads 1234)."""
    text = await page.locator(selector).first.text_content() or ""
    digits = re.sub(r"\D", "", text)
    assert digits, f"{selector} shows no number: {text!r}"
    return int(digits)


# The settings of a campaign started from the upload form, by `campaign load`'s option names.
UPLOAD_SETTINGS = {
    "from": "+14155550100",
    "answer-url": "https://example.com/answer.xml",
    "calling-hours": "any",
}


async def upload_campaign(page: Page, base_url: str, name: str, csv_text: str) -> int:
    """Start campaign `name` through the form at /new, as a user does; the answer's status."""
    from playwright.async_api import FilePayload

    await page.goto(base_url + "/new")
    await page.fill("form#upload-form input[name=name]", name)
    await page.fill("form#upload-form textarea[name=settings]", json.dumps(UPLOAD_SETTINGS))
    csv_file = FilePayload(name="contacts.csv", mimeType="text/csv", buffer=csv_text.encode())
    await page.set_input_files("form#upload-form input[type=file][name=file]", files=[csv_file])
    async with page.expect_navigation() as navigation:
        await page.click("form#upload-form [type=submit]")
    response = await navigation.value
    assert response is not None
    return response.status


async def wait_for_text(page: Page, selector: str, text: str, timeout_s: float = 5.0) -> None:
    """Wait until the element shows `text` (the page's live updates may bring it)."""

    async def shown() -> bool:
        return text in (await page.locator(selector).first.text_content() or "")

    try:
        await wait_until(shown, timeout_s=timeout_s)
    except AssertionError:
        now = await page.locator(selector).first.text_content()
        raise AssertionError(f"{selector} shows {now!r}, not {text!r}") from None
