"""Cancelling at Plivo the calls it still holds queued: `campaign cancel --cancel-queued`, and
the calls whose callee's calling window closed while they waited in Plivo's queue."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

import asyncpg

from campaign import queries
from campaign.config import Settings
from campaign.destinations import destination_of
from campaign.models import Campaign
from campaign.plivo import PlivoClient
from campaign.ratelimit import AccountLimits, RequestPacer

logger = logging.getLogger(__name__)

IN_FLIGHT_POLL_S = 0.2
# The advisory lock under which one worker at a time cancels calls outside their window.
WINDOW_CLOSE_LOCK_KEY = 0x63616E63656C77  # "cancelw"


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


async def cancel_at_plivo(
    client: PlivoClient, pacer: RequestPacer, candidates: Iterable[queries.QueuedContact]
) -> tuple[set[int], int]:
    """Cancel the queued calls of these candidates at Plivo (each a contact with a request_uuid
    that may be its own); the contacts whose call was cancelled, and how many uuids had left the
    queue already."""
    # A uuid of an unsettled batch may be any of its contacts': Plivo's queued-call details say
    # whose (its `to`), so that only that contact is marked cancelled.
    by_uuid: dict[str, dict[str, int]] = {}
    for queued in candidates:
        by_uuid.setdefault(queued.request_uuid, {})[queued.destination] = queued.contact_id
    cancelled: set[int] = set()
    gone = 0
    for request_uuid, by_destination in by_uuid.items():
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
            cancelled.add(contact_id)
        else:
            gone += 1
    return cancelled, gone


async def cancel_queued_calls(
    pool: asyncpg.Pool, client: PlivoClient, campaign: Campaign, settings: Settings
) -> tuple[int, int]:
    """Cancel at Plivo the calls of `campaign` it still holds queued; (cancelled, already gone)."""
    pacer = RequestPacer(pool, AccountLimits.from_settings(settings, client.config.auth_id))
    candidates = await queries.queued_contacts(pool, campaign.id)
    cancelled, gone = await cancel_at_plivo(client, pacer, candidates)
    if cancelled:
        await queries.mark_cancelled_at_plivo(pool, sorted(cancelled))
    logger.info("campaign %s: %d queued calls cancelled at Plivo", campaign.name, len(cancelled))
    return len(cancelled), gone


async def cancel_queued_outside_window(
    pool: asyncpg.Pool,
    client: PlivoClient,
    pacer: RequestPacer,
    campaign_ids: Sequence[int] | None,
) -> int:
    """Cancel at Plivo the calls it still holds queued whose callee's window has closed: those
    contacts wait for their next window, the attempt not counted. A call no longer queued (it
    rang already) is left as it is, and taken for fired. How many were cancelled."""
    # One worker at a time: two cancelling the same call would see "no longer queued" for the
    # other's cancel and take it for a call that rang.
    async with pool.acquire() as lock:
        if not await queries.try_advisory_lock(lock, WINDOW_CLOSE_LOCK_KEY):
            return 0
        try:
            return await _cancel_outside_window(pool, client, pacer, campaign_ids)
        finally:
            await queries.advisory_unlock(lock, WINDOW_CLOSE_LOCK_KEY)


async def _cancel_outside_window(
    pool: asyncpg.Pool,
    client: PlivoClient,
    pacer: RequestPacer,
    campaign_ids: Sequence[int] | None,
) -> int:
    rows = await queries.queued_outside_window(pool, campaign_ids)
    if not rows:
        return 0
    candidates = [
        queries.QueuedContact(row.contact_id, row.destination, row.request_uuid) for row in rows
    ]
    cancelled, _gone = await cancel_at_plivo(client, pacer, candidates)
    if cancelled:
        await queries.requeue_cancelled_calls(pool, sorted(cancelled))
    left_queue = sorted({row.contact_id for row in rows} - cancelled)
    if left_queue:
        await queries.mark_left_queue(pool, left_queue)
    if cancelled:
        logger.info(
            "%d calls queued at Plivo were cancelled as their calling window closed; they wait "
            "for the next one",
            len(cancelled),
        )
    return len(cancelled)
