"""Webhooks: endpoints, the outbox's numbering, claims and attempts, listing and redelivery.

The events themselves are written by triggers (schema.sql section 12), never by this code: a
change and the event that tells of it commit together whatever path made the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from campaign.models import EndpointHealth
from campaign.queries.base import Executor, sql


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """Where a campaign's events go, and the secret they are signed with (never shown)."""

    id: int
    url: str
    secret: str = field(repr=False)
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A claimed delivery: the event to send and how many attempts it has had (this one too)."""

    id: int
    event_id: UUID
    type: str
    campaign_id: int
    contact_id: int | None
    sequence: int
    occurred_at: datetime
    data: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt came to: `delivered`, `pending` (again in `delay_s`) or `failed`."""

    delivery_id: int
    status: str
    http_status: int | None = None
    error: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One row of `campaign webhook list`."""

    id: int
    event_id: UUID
    type: str
    campaign: str
    contact_id: int | None
    sequence: int | None
    occurred_at: datetime
    url: str
    endpoint_disabled: bool
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime
    delivered_at: datetime | None


async def webhook_endpoint_by_url(executor: Executor, url: str) -> WebhookEndpoint | None:
    record = await executor.fetchrow(sql("webhook_endpoint_by_url"), url)
    return None if record is None else WebhookEndpoint(**dict(record))


async def sequence_webhook_deliveries(executor: Executor, *, per_campaign: int) -> int:
    """Number the committed events not numbered yet; how many were."""
    numbered: int = await executor.fetchval(sql("sequence_webhook_deliveries"), per_campaign)
    return numbered


async def webhook_endpoints_due(executor: Executor) -> list[WebhookEndpoint]:
    """The enabled endpoints with deliveries due now."""
    records = await executor.fetch(sql("webhook_endpoints_due"))
    return [WebhookEndpoint(**dict(record)) for record in records]


async def claim_webhook_deliveries(
    executor: Executor, *, endpoint_id: int, worker_id: str, limit: int, lease_s: float
) -> list[WebhookEvent]:
    """Up to `limit` of an endpoint's due deliveries, held for `lease_s`, attempts counted."""
    records = await executor.fetch(
        sql("claim_webhook_deliveries"), endpoint_id, worker_id, limit, lease_s
    )
    return [WebhookEvent(**dict(record)) for record in records]


@dataclass(frozen=True, slots=True)
class FailingEndpoint:
    """An endpoint that failed a whole claim: since when it has failed without a success, for
    how long (on the database's clock), and whether that record disabled it."""

    endpoint_id: int
    failing_since: datetime
    failing_s: float
    disabled: bool


async def record_webhook_attempts(
    executor: Executor,
    results: Sequence[AttemptResult],
    *,
    worker_id: str,
    disable_after_s: float,
) -> list[FailingEndpoint]:
    """Record the attempts of one claim, and their endpoint's health, in one statement; the
    endpoints that failed the whole claim (disabled when failing `disable_after_s`, 0: never)."""
    records = await executor.fetch(
        sql("record_webhook_attempts"),
        [result.delivery_id for result in results],
        [result.status for result in results],
        [result.http_status for result in results],
        [result.error for result in results],
        [result.delay_s for result in results],
        worker_id,
        disable_after_s,
    )
    return [FailingEndpoint(**dict(record)) for record in records]


async def webhook_health(executor: Executor) -> list[EndpointHealth]:
    """Every endpoint's health, for /metrics."""
    records = await executor.fetch(sql("webhook_health"))
    return [EndpointHealth(**dict(record)) for record in records]


async def disable_webhook_endpoint(executor: Executor, endpoint_id: int, reason: str) -> None:
    await executor.execute(sql("disable_webhook_endpoint"), endpoint_id, reason)


async def webhook_deliveries(
    executor: Executor, *, failed_only: bool, limit: int
) -> list[DeliveryRow]:
    """The latest deliveries, newest first."""
    records = await executor.fetch(sql("webhook_deliveries"), failed_only, limit)
    return [DeliveryRow(**dict(record)) for record in records]


async def redeliver_webhook_deliveries(
    executor: Executor, delivery_ids: Sequence[int]
) -> list[int]:
    """Deliver these again from the start of their schedule; the ids that will be."""
    records = await executor.fetch(sql("redeliver_webhook_deliveries"), list(delivery_ids))
    return [record["id"] for record in records]


async def failed_webhook_deliveries_since(executor: Executor, since: datetime) -> list[int]:
    records = await executor.fetch(sql("failed_webhook_deliveries_since"), since)
    return [record["id"] for record in records]
