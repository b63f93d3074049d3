"""`campaign webhook secret | list | redeliver`: the endpoints' secrets and the deliveries.

The events are written by the database's triggers and sent by the workers and `campaign serve`
(campaign.webhooks); these commands show what was sent and send again what failed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from campaign import db
from campaign.cli.app import EXIT_USAGE, fail, run_command, settings_from_environment
from campaign.queries import webhooks as queries
from campaign.queries.webhooks import DeliveryRow

# `webhook list` shows this many deliveries unless told otherwise.
DEFAULT_LIST_LIMIT = 50


@click.group("webhook")
def webhook() -> None:
    """Webhook endpoints and the deliveries of their events."""


@webhook.command("secret")
@click.argument("url")
@run_command
async def secret(url: str) -> None:
    """Print the secret URL's events are signed with (`whsec_…`), alone on stdout."""
    settings = settings_from_environment()
    if settings.webhook_secret is not None:
        click.echo(settings.webhook_secret.get_secret_value())
        return
    async with db.open_pool(settings) as pool:
        endpoint = await queries.webhook_endpoint_by_url(pool, url)
    if endpoint is None:
        fail(
            f"no webhook endpoint has the URL {url!r}; a load with --webhook-url makes one, and "
            "`campaign webhook list` shows the URLs in use",
            EXIT_USAGE,
        )
    click.echo(endpoint.secret)


def _as_json(row: DeliveryRow) -> dict[str, object]:
    document: dict[str, object] = {
        "id": row.id,
        "event_id": str(row.event_id),
        "type": row.type,
        "campaign": row.campaign,
        "contact_id": row.contact_id,
        "sequence": row.sequence,
        "occurred_at": row.occurred_at.isoformat(),
        "url": row.url,
        "endpoint_disabled": row.endpoint_disabled,
        "status": row.status,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
        "delivered_at": None if row.delivered_at is None else row.delivered_at.isoformat(),
    }
    return document


def _line(row: DeliveryRow) -> str:
    when = row.occurred_at.isoformat(timespec="seconds")
    state = row.status
    if row.status == "pending":
        state += f" (next try {row.next_attempt_at.isoformat(timespec='seconds')})"
    if row.endpoint_disabled:
        state += " [endpoint disabled]"
    last = "" if row.last_status is None else f" HTTP {row.last_status}"
    if row.last_error and row.status != "delivered":
        last += f" {row.last_error}"
    return (
        f"{row.id:>8}  {when}  {row.type:<24} {row.campaign}  {row.url}  {state}  "
        f"attempts {row.attempts}{last}"
    )


@webhook.command("list")
@click.option("--failed", is_flag=True, help="Only the deliveries that failed.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_LIST_LIMIT,
    show_default=True,
    help="The latest this many.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@run_command
async def list_deliveries(failed: bool, limit: int, as_json: bool) -> None:
    """The latest deliveries, newest first: event, endpoint, attempts, last status, next try."""
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        rows = await queries.webhook_deliveries(pool, failed_only=failed, limit=limit)
    for row in rows:
        click.echo(json.dumps(_as_json(row)) if as_json else _line(row))


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since: {value!r} is not a date or time, e.g. 2026-12-03T14:00Z", EXIT_USAGE)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@webhook.command("redeliver")
@click.argument("delivery_ids", metavar="ID...", nargs=-1, type=click.IntRange(1))
@click.option("--failed", is_flag=True, help="Every failed delivery (with --since).")
@click.option("--since", metavar="TIME", help="With --failed: of events at or after TIME (UTC).")
@run_command
async def redeliver(delivery_ids: tuple[int, ...], failed: bool, since: str | None) -> None:
    """Send deliveries again, from the start of their retry schedule (IDs from `webhook list`),
    or every failed one since a time. An endpoint disabled by 410 Gone is enabled again."""
    if bool(delivery_ids) == failed:
        fail("give delivery IDs, or --failed --since TIME, not both", EXIT_USAGE)
    if failed and since is None:
        fail("--failed needs --since TIME (e.g. --since 2026-12-03T00:00Z)", EXIT_USAGE)
    if since is not None and not failed:
        fail("--since goes with --failed", EXIT_USAGE)
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        ids = list(delivery_ids)
        if since is not None:
            ids = await queries.failed_webhook_deliveries_since(pool, _since(since))
        again = await queries.redeliver_webhook_deliveries(pool, ids)
    missing = sorted(set(delivery_ids) - set(again))
    click.echo(f"{len(again)} deliveries will be sent again")
    if missing:
        fail("no such delivery, or one being sent now: " + ", ".join(str(i) for i in missing[:10]))
