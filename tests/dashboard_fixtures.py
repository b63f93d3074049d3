"""The dashboard on loopback for tests: the engine's app with /api/v1/ and the dashboard, each
on a pool of its own; a writer and a read-only key; logged-in clients that keep their cookies
and read each page's CSRF token; helpers to load a campaign through the upload form."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from plivo_fixtures import AUTH_TOKEN

from campaign import db, queries
from campaign.api.app import create_api_app
from campaign.api.keys import key_hash, new_key
from campaign.config import Settings
from campaign.dashboard.app import installer
from campaign.dashboard.hub import Hub
from campaign.dashboard.views import DASHBOARD_KEY
from campaign.metrics import Metrics
from campaign.web import WebConfig, create_app

CSRF_FIELD = re.compile(r'<input type="hidden" name="csrf" value="([^"]+)">')
NEW_CAMPAIGN = {"from": "+14155550100", "answer-url": "https://example.com/answer.xml"}


@dataclass
class Browser:
    """A client of the dashboard with its own cookie jar (as a browser would have)."""

    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.url + path, allow_redirects=False, **kwargs) as response:
            return response.status, await response.text(), response

    async def post(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.post(self.url + path, allow_redirects=False, **kwargs) as response:
            return response.status, await response.text(), response

    async def login(self, key: str, next_path: str = "/") -> aiohttp.ClientResponse:
        status, text, response = await self.post("/login", data={"key": key, "next": next_path})
        assert status == 303, text
        return response

    async def csrf(self, path: str = "/") -> str:
        """The CSRF token the forms of `path` carry."""
        status, text, _ = await self.get(path)
        assert status == 200, text
        found = CSRF_FIELD.search(text)
        assert found is not None, "no CSRF field on the page"
        return unescape(found.group(1))

    async def action(
        self, path: str, fields: dict[str, str] | None = None, *, csrf: str | None = None
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        """POST a form with the session's CSRF token (or `csrf` when given)."""
        token = await self.csrf() if csrf is None else csrf
        return await self.post(path, data={"csrf": token, **(fields or {})})

    async def upload(
        self, name: str, csv_text: str, settings_json: str = "", **fields: str
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        """POST /new as the upload form sends it (the CSRF token first)."""
        form = aiohttp.FormData()
        form.add_field("csrf", await self.csrf("/new"))
        form.add_field("name", name)
        for key, value in {**NEW_CAMPAIGN, "calling-hours": "any", **fields}.items():
            form.add_field(key, value)
        form.add_field("settings", settings_json)
        form.add_field("file", csv_text.encode(), filename="contacts.csv", content_type="text/csv")
        return await self.post("/new", data=form)


@dataclass
class Dashboard:
    """The running app: its URL, keys, the dashboard's pool and hub, and new clients."""

    url: str
    key: str
    read_only_key: str
    pool: asyncpg.Pool
    app: web.Application
    _stack: contextlib.AsyncExitStack

    @property
    def hub(self) -> Hub:
        return self.app[DASHBOARD_KEY].hub

    async def browser(self, key: str | None = None) -> Browser:
        """A new client, logged in with `key` (None: not logged in)."""
        session = await self._stack.enter_async_context(
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        )
        browser = Browser(self.url, session)
        if key is not None:
            await browser.login(key)
        return browser


@contextlib.asynccontextmanager
async def running_dashboard(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[Dashboard]:
    """The app (callbacks, the API, the dashboard) on a free loopback port, two fresh keys."""
    key, read_only_key = new_key(), new_key()
    await queries.create_api_key(pool, "writer <b>", key_hash(key), read_only=False)
    await queries.create_api_key(pool, "reader", key_hash(read_only_key), read_only=True)
    async with (
        contextlib.AsyncExitStack() as stack,
        db.open_api_pool(settings) as api_pool,
        db.open_dashboard_pool(settings) as dashboard_pool,
    ):
        app = create_app(
            pool,
            Metrics(),
            WebConfig(public_url=settings.public_url, auth_tokens=(AUTH_TOKEN,)),
            status_pool=status_pool,
            api=create_api_app(api_pool, settings),
            dashboard=installer(dashboard_pool, settings),
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            yield Dashboard(f"http://{host}:{port}", key, read_only_key, dashboard_pool, app, stack)
        finally:
            await stack.aclose()
            await runner.cleanup()


def numbers_csv(count: int, start: int = 1000) -> str:
    rows = ["phone,name"] + [f"+1415555{start + i:04d},person {i}" for i in range(count)]
    return "\n".join(rows) + "\n"
