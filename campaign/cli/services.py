"""The long-running and set-up commands: migrate, worker, serve, demo.

The dialing and serving code (aiohttp, prometheus-client, the worker) is imported inside the
commands that run it, so that `campaign load` and the other short commands never pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import asyncpg
import click

from campaign import db, queries, specs
from campaign.cli.app import (
    EXIT_USAGE,
    fail,
    run_command,
    settings_from_environment,
    stop_on_signals,
)
from campaign.config import Settings
from campaign.console import LoadReporter, print_progress_table
from campaign.importer import CsvSource
from campaign.models import Schedule

if TYPE_CHECKING:
    from aiohttp import web

    from campaign.demo import DemoDashboard, DemoResult
    from campaign.metrics import Metrics
    from campaign.worker import WorkerReport

DEFAULT_HTTP_PORT = 8080

logger = logging.getLogger("campaign")


@click.command()
@run_command
async def migrate() -> None:
    """Apply the database migrations that are not applied yet."""
    settings = settings_from_environment()
    url, _embedded = await db.resolve_database_url(settings)
    connection = await db.connect(url)
    try:
        applied = await db.migrate(connection)
    finally:
        await connection.close()
    for migration in applied:
        click.echo(f"applied {migration.filename}")
    click.echo(f"database {db.describe_url(url)} is up to date")


@click.command()
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Load this CSV instead of a generated one.",
)
@click.option(
    "--rows",
    type=click.IntRange(1, 1_000_000),
    default=50,
    show_default=True,
    help="Rows of the generated CSV.",
)
@click.option("--name", help="Campaign name (default: demo-<time>).")
@click.option(
    "--calling-hours",
    metavar="HH:MM-HH:MM[,…]|any",
    default=specs.DEFAULT_CALLING_HOURS,
    show_default=True,
    help="When calls may be placed, in each callee's local time; `any`: around the clock.",
)
@click.option(
    "--dashboard",
    is_flag=True,
    help="Serve the dashboard on a loopback port (its URL and an API key are printed) and keep "
    "serving it after the demo, until Ctrl-C.",
)
@run_command
async def demo(
    csv_file: Path | None, rows: int, name: str | None, calling_hours: str, dashboard: bool
) -> None:
    """Run a whole campaign on embedded defaults: an appointment reminder with a keypress menu,
    dialled through the simulator, busy calls redialled, and a summary of the answers.

    The database is the embedded PostgreSQL unless CAMPAIGN_DATABASE_URL is set; Plivo is the
    built-in simulator, run inside this command (never your account, even if PLIVO_* are set),
    and the engine serves its answers and callbacks on a loopback port of its own.
    """
    from campaign.demo import run_demo, write_sample_csv

    schedule = Schedule(calling_hours=specs.calling_hours(calling_hours))
    settings = settings_from_environment()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    campaign_name = name or f"demo-{stamp}"
    if csv_file is None:
        csv_file = settings.data_dir / "demo" / f"{campaign_name}.csv"
        write_sample_csv(csv_file, rows)
        click.echo(f"wrote {rows} sample rows to {csv_file}")
    hook = _demo_dashboard(campaign_name) if dashboard else None
    source = CsvSource(csv_file)
    try:
        with LoadReporter(source.size_bytes, None) as reporter:
            result = await run_demo(settings, source, campaign_name, reporter, schedule, hook)
    finally:
        source.close()
    if hook is None:
        _print_demo(result, campaign_name)


def _demo_dashboard(campaign_name: str) -> DemoDashboard:
    """`demo --dashboard`: an API key made for the demo (revoked when it ends), the URL printed
    before dialing, the summary printed after, then serving until Ctrl-C."""
    from campaign.api.keys import key_hash, new_key
    from campaign.dashboard.app import installer
    from campaign.demo import DemoDashboard

    key = new_key()
    key_name = f"demo-{campaign_name}"[:100]
    held: list[asyncpg.Pool] = []

    async def opened(url: str, pool: asyncpg.Pool) -> None:
        await queries.create_api_key(pool, key_name, key_hash(key), read_only=False)
        held.append(pool)
        click.echo(f"dashboard: {url}/campaigns/{quote(campaign_name, safe='')}")
        click.echo(f"log in with the API key {key} (key {key_name}, revoked when the demo ends)")

    async def done(result: DemoResult) -> None:
        _print_demo(result, campaign_name)
        stop = stop_on_signals()
        click.echo("the dashboard keeps serving the demo's campaign; Ctrl-C to stop")
        try:
            await stop.wait()
        finally:
            await queries.revoke_api_key(held[0], key_name)

    return DemoDashboard(opened, done, installer)


def _print_demo(result: DemoResult, campaign_name: str) -> None:
    from campaign.demo import describe_answers

    summary = result.load
    click.echo(
        f"campaign {campaign_name} (id {summary.campaign.id}): rows read {summary.rows_read}, "
        f"loaded {summary.loaded}, duplicates {summary.duplicates}, rejected {summary.rejected}"
        + (f", suppressed {summary.suppressed}" if summary.suppressed else "")
    )
    content = result.content
    click.echo(f'the call says "{content.message}" and asks "{content.gather_prompt}"')
    click.echo(
        f"dialled {result.dialled} destinations through the Plivo simulator in "
        f"{result.elapsed_s:.1f} s ({result.calls} calls with the redials), at most "
        f"{result.max_calls_per_second} calls in one second "
        f"(account limit {result.calls_per_second:g}/s)"
    )
    waiting = result.progress.waiting_for_window
    if waiting:
        click.echo(
            f"{waiting} contacts wait for their calling window "
            f"({result.window.schedule.describe()})"
            + (
                f"; the next opens {result.window.next_opening.isoformat(timespec='minutes')}"
                if result.window.next_opening is not None
                else ""
            )
            + f": `campaign worker` dials them then, or see `campaign status {campaign_name}`"
        )
    else:
        click.echo(f"every callee's calling window was open ({result.window.schedule.describe()})")
    for line in describe_answers(result):
        click.echo(line)
    print_progress_table([result.progress])


def _require_token_for_callbacks(settings: Settings) -> None:
    """Refuse to serve callbacks that cannot be verified; warn if they may fail behind a proxy."""
    if settings.plivo_auth_token is None:
        fail(
            "PLIVO_AUTH_TOKEN is not set: callbacks are verified with it (X-Plivo-Signature-V3),"
            " so without it every callback would be refused",
            EXIT_USAGE,
        )
    if settings.public_url is None:
        logger.warning(
            "CAMPAIGN_PUBLIC_URL is not set: signatures are checked against the URL as this "
            "server sees it, which fails behind a proxy"
        )


def _api(api_pool: asyncpg.Pool, settings: Settings) -> web.Application:
    """The HTTP API (/api/v1/) on its own pool."""
    from campaign.api.app import create_api_app

    return create_api_app(api_pool, settings)


@contextlib.asynccontextmanager
async def _maybe_serving(
    settings: Settings, pool: asyncpg.Pool, metrics: Metrics
) -> AsyncIterator[None]:
    """Serve callbacks, /healthz and /metrics beside the worker when CAMPAIGN_HTTP_PORT is set."""
    if settings.http_port is None:
        yield
        return
    from campaign.dashboard.app import installer
    from campaign.web import WebConfig, serving

    _require_token_for_callbacks(settings)
    config = WebConfig.from_settings(settings)
    async with (
        db.open_status_pool(settings) as status_pool,
        db.open_api_pool(settings) as api_pool,
        db.open_dashboard_pool(settings) as dashboard_pool,
        serving(
            pool,
            metrics,
            config,
            settings.http_host,
            settings.http_port,
            status_pool=status_pool,
            api=_api(api_pool, settings),
            dashboard=installer(dashboard_pool, settings),
        ),
    ):
        yield


@click.command()
@click.option("--host", help="Listen address (default CAMPAIGN_HTTP_HOST, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port (default CAMPAIGN_HTTP_PORT, 8080)."
)
@run_command
async def serve(host: str | None, port: int | None) -> None:
    """Serve Plivo's callbacks (/plivo/ring, /plivo/hangup, /plivo/machine), /healthz, /metrics
    and the HTTP API under /api/v1/ (API keys: `campaign api-key create`), and deliver webhook
    events.

    Callbacks are checked against PLIVO_AUTH_TOKEN and CAMPAIGN_PUBLIC_URL (the URL Plivo
    calls, as it signs it). Runs until SIGTERM or Ctrl-C.
    """
    from campaign.dashboard.app import installer
    from campaign.metrics import Metrics
    from campaign.web import WebConfig, serving
    from campaign.webhooks.delivery import delivering

    settings = settings_from_environment()
    _require_token_for_callbacks(settings)
    stop = stop_on_signals()
    async with (
        db.open_pool(settings, min_connections=12) as pool,
        db.open_status_pool(settings) as status_pool,
        db.open_api_pool(settings) as api_pool,
        db.open_dashboard_pool(settings) as dashboard_pool,
        delivering(settings),
        serving(
            pool,
            Metrics(),
            WebConfig.from_settings(settings),
            host or settings.http_host,
            port or settings.http_port or DEFAULT_HTTP_PORT,
            status_pool=status_pool,
            api=_api(api_pool, settings),
            dashboard=installer(dashboard_pool, settings),
        ) as url,
    ):
        click.echo(
            f"serving callbacks, /healthz, /metrics and the API (/api/v1/) on {url};"
            " delivering webhooks"
        )
        click.echo(
            f"dashboard: {settings.public_url or url}/ (log in with an API key: "
            "`campaign api-key create NAME`)"
        )
        await stop.wait()


async def _dial(
    settings: Settings,
    pool: asyncpg.Pool,
    metrics: Metrics,
    *,
    drain: bool,
    stop: asyncio.Event | None,
    campaign_ids: tuple[int, ...] | None,
) -> WorkerReport:
    """Run a worker on `pool` with the settings' Plivo account until stopped or drained."""
    from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session
    from campaign.worker import Worker, WorkerConfig

    async with new_plivo_session(connection_limit=settings.worker_concurrency * 2) as session:
        client = PlivoClient(session, PlivoClientConfig.from_settings(settings))
        config = WorkerConfig.from_settings(settings, campaign_ids=campaign_ids)
        worker = Worker(pool, client, config, metrics)
        return await worker.run(drain=drain, stop=stop)


@click.command()
@click.option("--drain", is_flag=True, help="Exit once no running campaign has work left.")
@click.option(
    "--campaign",
    "campaign_names",
    metavar="NAME",
    multiple=True,
    help="Dial only this campaign (repeatable; default: every running campaign).",
)
@run_command
async def worker(drain: bool, campaign_names: tuple[str, ...]) -> None:
    """Dial the pending contacts of running campaigns, as a long-lived service.

    Run as many as you like, on as many hosts: they share the account's limits through
    Postgres. SIGTERM or Ctrl-C stops claiming, lets requests in flight finish, and exits 0.
    """
    settings = settings_from_environment()
    if not settings.has_plivo_credentials:
        fail(
            "PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are not set: the worker dials through your "
            "Plivo account (to try the engine without one, run `campaign demo`, or point "
            "PLIVO_API_URL at `campaign simulator`)",
            EXIT_USAGE,
        )
    from campaign.metrics import Metrics
    from campaign.webhooks.delivery import delivering

    stop = stop_on_signals()
    metrics = Metrics()
    async with (
        db.open_pool(settings, min_connections=settings.worker_concurrency + 4) as pool,
        _maybe_serving(settings, pool, metrics),
        # On a pool and a session of their own: no receiver can slow the dialing.
        delivering(settings),
    ):
        for warning in await db.durability_warnings(pool):
            logger.warning("%s", warning)
        campaign_ids: tuple[int, ...] | None = None
        if campaign_names:
            found = [await queries.campaign_by_name(pool, name) for name in campaign_names]
            missing = [name for name, match in zip(campaign_names, found, strict=True) if not match]
            if missing:
                fail(f"--campaign: no campaign named {missing[0]!r}; `campaign list` shows them")
            campaign_ids = tuple(match.id for match in found if match is not None)
        report = await _dial(
            settings, pool, metrics, drain=drain, stop=stop, campaign_ids=campaign_ids
        )
    if drain:
        click.echo(f"drained: {report.summary()}")
