"""The dashboard mounted at / on the engine's app (campaign/web.py create_app): Jinja2 with
autoescaping, the static files, the security headers, the snapshot hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import web

from campaign.config import Settings
from campaign.dashboard.hub import Hub
from campaign.dashboard.security import SECURITY_HEADERS
from campaign.dashboard.snapshots import campaign_snapshot, campaigns_snapshot
from campaign.dashboard.views import DASHBOARD_KEY, Dashboard, routes

# Paths the dashboard's headers are not added to: Plivo's callbacks and answers.
PLIVO_PREFIX = "/plivo/"
STATUS_ICONS = {
    "running": "▶",
    "paused": "‖",
    "cancelled": "✕",
    "completed": "✓",
    "draft": "✎",
}


def _when(value: object) -> str:
    """A time as `2026-12-03 17:04:05 UTC` (its ISO text, when given as text)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(value)


def _number(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(PLIVO_PREFIX):
        response.headers.update(SECURITY_HEADERS)


def installer(pool: asyncpg.Pool, settings: Settings) -> Callable[[web.Application], None]:
    """What create_app(dashboard=…) takes: serves the dashboard through `pool` (its own)."""

    def install_on(app: web.Application) -> None:
        install(app, pool, settings)

    return install_on


def install(app: web.Application, pool: asyncpg.Pool, settings: Settings) -> None:
    """Serve the dashboard from `app` at /, reading and writing through `pool` (its own)."""
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("campaign.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["when"] = _when
    environment.filters["number"] = _number
    environment.filters["segment"] = lambda value: quote(str(value), safe="")
    environment.globals["status_icons"] = STATUS_ICONS

    async def compute(key: str | None) -> dict[str, Any] | None:
        if key is None:
            return await campaigns_snapshot(pool, settings)
        return await campaign_snapshot(pool, settings, key)

    hub = Hub(
        pool, compute, refresh_s=settings.dashboard_refresh_s, poll_s=settings.dashboard_poll_s
    )
    app[DASHBOARD_KEY] = Dashboard(pool, settings, hub)
    routes(app)
    static = Path(str(resources.files("campaign.dashboard").joinpath("static")))
    app.router.add_static("/static/", static, name="static")
    app.on_response_prepare.append(_headers)

    async def end_streams(app: web.Application) -> None:
        # Before the runner waits for handlers: an open page's /events would hold it 60 s.
        await hub.close()

    async def close_hub(app: web.Application) -> AsyncIterator[None]:
        yield
        await hub.close()

    app.on_shutdown.append(end_streams)
    app.cleanup_ctx.append(close_hub)
