"""`campaign cancel --cancel-queued`: cancelling at Plivo the calls it still holds queued."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from campaign import queries
from campaign.config import Settings
from campaign.destinations import destination_of
from campaign.models import Campaign
from campaign.plivo import PlivoClient
from campaign.ratelimit import AccountLimits, RequestPacer

logger = logging.getLogger(__name__)

IN_FLIGHT_POLL_S = 0.2


async def wait_for_requests_in_flight(
    pool: asyncpg.Pool, campaign: Campaign, *, timeout_s: float
) -> int:
    """Wait until no contact of `campaign` is in a request in flight (its reply recorded, so that
    a queued call of it can be found), for at most `timeout_s`; how many still are."""
    deadline = time.monotonic() + timeout_s
    while True:
        in_flight = await queries.sending_count(pool, campaign.id)
        if not in_flight or time.monotonic() >= deadline:
            return in_flight
        # Polled: replies are recorded by workers of other processes, with no notification.
        await asyncio.sleep(IN_FLIGHT_POLL_S)


async def cancel_queued_calls(
    pool: asyncpg.Pool, client: PlivoClient, campaign: Campaign, settings: Settings
) -> tuple[int, int]:
    """Cancel at Plivo the calls of `campaign` it still holds queued; (cancelled, already gone)."""
    pacer = RequestPacer(pool, AccountLimits.from_settings(settings, client.config.auth_id))
    # A uuid of an unsettled batch may be any of its contacts': Plivo's queued-call details say
    # whose (its `to`), so that only that contact is marked cancelled.
    candidates: dict[str, dict[str, int]] = {}
    for queued in await queries.queued_contacts(pool, campaign.id):
        candidates.setdefault(queued.request_uuid, {})[queued.destination] = queued.contact_id
    cancelled = gone = 0
    for request_uuid, by_destination in candidates.items():
        contact_id = next(iter(by_destination.values()))
        if len(by_destination) > 1:
            await pacer.wait()
            call = await client.queued_call(request_uuid)
            owner = None if call is None else by_destination.get(destination_of(call.to_number))
            if owner is None:
                gone += 1  # dialled already (or not one of these contacts): nothing to cancel
                continue
            contact_id = owner
        await pacer.wait()
        if await client.cancel_queued_call(request_uuid):
            await queries.mark_cancelled_at_plivo(pool, [contact_id])
            cancelled += 1
        else:
            gone += 1
    logger.info("campaign %s: %d queued calls cancelled at Plivo", campaign.name, cancelled)
    return cancelled, gone
