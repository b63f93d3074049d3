"""Operator actions that talk to Plivo outside the worker's batches: cancelling queued calls."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from campaign import queries
from campaign.config import Settings
from campaign.models import Campaign
from campaign.plivo import PlivoClient

logger = logging.getLogger(__name__)


class RequestPacer:
    """Waits for a slot of the account's API request limit, shared with every worker."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, auth_id: str) -> None:
        self._pool = pool
        self._name = f"account:{auth_id}:requests"
        self._rate = settings.api_requests_per_s

    async def wait(self) -> None:
        if self._rate is None:
            return
        delay_s: float = await self._pool.fetchval(
            queries.sql("reserve_request_slot"), self._name, self._rate
        )
        if delay_s > 0:
            await asyncio.sleep(delay_s)


async def cancel_queued_calls(
    pool: asyncpg.Pool, client: PlivoClient, campaign: Campaign, settings: Settings
) -> tuple[int, int]:
    """Cancel at Plivo the calls of `campaign` it still holds queued; (cancelled, already gone)."""
    pacer = RequestPacer(pool, settings, client.config.auth_id)
    rows = await pool.fetch(queries.sql("queued_contacts"), campaign.id)
    # A uuid of an unsettled batch may be any of its contacts': Plivo's queued-call details say
    # whose (its `to`), so that only that contact is marked cancelled.
    candidates: dict[str, dict[str, int]] = {}
    for row in rows:
        candidates.setdefault(row["request_uuid"], {})[row["destination"]] = row["id"]
    cancelled = gone = 0
    for request_uuid, by_destination in candidates.items():
        contact_id = next(iter(by_destination.values()))
        if len(by_destination) > 1:
            await pacer.wait()
            call = await client.queued_call(request_uuid)
            owner = None if call is None else by_destination.get("+" + call.to_number.lstrip("+"))
            if owner is None:
                gone += 1  # dialled already (or not one of these contacts): nothing to cancel
                continue
            contact_id = owner
        await pacer.wait()
        if await client.cancel_queued_call(request_uuid):
            await pool.execute(queries.sql("mark_cancelled_at_plivo"), [contact_id])
            cancelled += 1
        else:
            gone += 1
    logger.info("campaign %s: %d queued calls cancelled at Plivo", campaign.name, cancelled)
    return cancelled, gone
