"""`campaign reconcile`: settle contacts whose request had an unknown fate by asking Plivo.

A contact is `unknown` when its request was written ahead and maybe sent, but no reply came
(a 5xx, a time-out, a reset, a worker that died while sending): Plivo may or may not have placed
the call. Reconciling asks Plivo, per destination, whether a call exists since the request was
sent, in an order that leaves no gap for a call moving along its life:

1. the queue (read once per run): calls held over the account's CPS, matched by their `to`;
2. the live calls to the destination;
3. the completed calls (CDR) to the destination that ended after the request was sent.

A call is the contact's only if it comes from the campaign's caller ID, started no earlier than
the request was sent (less a small clock margin), and has a uuid no other attempt owns; when more
than one call qualifies, the look-up counts as failed (the contact stays unknown): a contact is
never settled with someone else's call, so that its person is not left uncalled.

Found: the contact takes that outcome (`queued`, or `fired` when live or completed). Not found,
with every look-up answered, and the request older than `reconcile_after_s`: Plivo never placed
the call, so the contact is dialled again (`pending`), or `failed` when out of attempts. Anything
else stays `unknown` for a later run: a contact is never dialled again on a look-up that failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from campaign import queries
from campaign.config import Settings
from campaign.models import ContactStatus
from campaign.plivo import PlivoClient
from campaign.queries import UnknownContact
from campaign.reconcile.lookups import (
    AccountRefused,
    Lookups,
    QueueIndex,
    Verdict,
    look_up,
)
from campaign.reconcile.report import (
    FOUND_IN_CDR_MESSAGE,
    FOUND_LIVE_MESSAGE,
    FOUND_QUEUED_MESSAGE,
    FoundCall,
    LookupFailure,
    ReconcileReport,
    UnknownCampaign,
)

__all__ = [
    "FOUND_IN_CDR_MESSAGE",
    "FOUND_LIVE_MESSAGE",
    "FOUND_QUEUED_MESSAGE",
    "LookupFailure",
    "ReconcileReport",
    "UnknownCampaign",
    "reconcile_unknown_contacts",
]

logger = logging.getLogger(__name__)

# Look-ups in flight at once; the account's API request limit (RequestPacer) paces them anyway,
# this only keeps Plivo's reply latency from being the bottleneck.
LOOKUP_CONCURRENCY = 8


async def reconcile_unknown_contacts(
    pool: asyncpg.Pool,
    client: PlivoClient,
    settings: Settings,
    campaign_name: str | None = None,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    concurrency: int = LOOKUP_CONCURRENCY,
) -> ReconcileReport:
    """Settle the `unknown` contacts of every campaign (or `campaign_name`) by asking Plivo.

    `now` (timezone-aware) is when the run counts ages from; None: the database's clock, the
    one that wrote `sent_at`.
    With `dry_run`, Plivo is asked but nothing is changed. Raises UnknownCampaign.
    """
    report = ReconcileReport(dry_run=dry_run)
    campaign_id: int | None = None
    if campaign_name is not None:
        campaign = await queries.campaign_by_name(pool, campaign_name)
        if campaign is None:
            raise UnknownCampaign(campaign_name)
        campaign_id = campaign.id
    if not dry_run:
        # A request whose worker died is `sending` until its lease is recovered; reconcile does
        # not wait for a worker's sweep to see it.
        await queries.recover_expired_leases(pool)
    read = await queries.unknown_contacts(pool, campaign_id, now=now)
    report.examined = len(read.contacts)
    if read.checked_at is None:
        return report
    contacts = read.contacts
    checked_at = read.checked_at
    wait = timedelta(seconds=settings.reconcile_after_s)

    lookups = Lookups(pool, client, settings)
    try:
        queue = await lookups.queue(concurrency)
    except AccountRefused:
        queue = QueueIndex(error="not looked up: Plivo refused the account")
    verdicts: list[Verdict] = []
    to_look_up: list[UnknownContact] = []
    for contact in contacts:
        queued = queue.take(contact.destination, contact.campaign_from_number)
        if queued is None:
            to_look_up.append(contact)
            continue
        in_queue = FoundCall(ContactStatus.QUEUED, queued.request_uuid, None, FOUND_QUEUED_MESSAGE)
        verdicts.append(Verdict(contact, found=in_queue))
    if lookups.account_problem is None:
        semaphore = asyncio.Semaphore(concurrency)
        verdicts += await asyncio.gather(
            *(look_up(lookups, contact, semaphore) for contact in to_look_up)
        )
    else:
        refused = f"not looked up: Plivo refused the account ({lookups.account_problem})"
        verdicts += [Verdict(contact, errors=(refused,)) for contact in to_look_up]
    report.account_problem = lookups.account_problem

    found: list[Verdict] = []
    not_found: list[UnknownContact] = []
    for verdict in sorted(verdicts, key=lambda verdict: verdict.contact.contact_id):
        contact = verdict.contact
        if verdict.found is not None:
            found.append(verdict)
            continue
        errors = list(verdict.errors)
        if queue.error is not None:
            errors.insert(0, queue.error)
        if errors:
            report.lookup_failures.append(
                LookupFailure(contact.contact_id, contact.campaign, contact.destination, errors[0])
            )
        elif checked_at - contact.uncertain_since >= wait:
            not_found.append(contact)
        else:
            report.too_recent += 1
            settle_at = contact.uncertain_since + wait
            if report.run_again_after is None or settle_at > report.run_again_after:
                report.run_again_after = settle_at

    if dry_run:
        report.found.update(verdict.found.status for verdict in found if verdict.found)
        report.not_found.update(contact.not_found_status for contact in not_found)
    else:
        await _apply(pool, report, found, not_found)
    logger.info("%s", report.summary())
    return report


async def _apply(
    pool: asyncpg.Pool,
    report: ReconcileReport,
    found: Sequence[Verdict],
    not_found: Sequence[UnknownContact],
) -> None:
    """Record the outcomes: one statement for the found, one for the not found, in one go."""
    async with pool.acquire() as connection, connection.transaction():
        if found:
            calls = [
                queries.FoundContact(
                    contact_id=verdict.contact.contact_id,
                    dial_request_id=verdict.contact.dial_request_id,
                    status=verdict.found.status,
                    request_uuid=verdict.found.request_uuid,
                    call_uuid=verdict.found.call_uuid,
                    plivo_message=verdict.found.plivo_message,
                )
                for verdict in found
                if verdict.found
            ]
            statuses = await queries.reconcile_found(connection, calls)
            report.found.update(statuses)
            report.changed_meanwhile += len(calls) - len(statuses)
        if not_found:
            # Hold the campaigns' rows first, as a load does: a worker completing a campaign
            # takes the same lock, so it cannot miss the contacts made pending here.
            await queries.lock_campaigns_of_contacts(
                connection, [contact.contact_id for contact in not_found]
            )
            settled = 0
            to_dial: dict[int, int] = defaultdict(int)
            for group in await queries.reconcile_not_found(connection, not_found):
                report.not_found[group.status] += group.contacts
                settled += group.contacts
                if group.status == ContactStatus.PENDING:
                    to_dial[group.campaign_id] += group.contacts
                reopened = group.reopened_campaign
                if reopened is not None and reopened not in report.reopened_campaigns:
                    report.reopened_campaigns.append(reopened)
            report.changed_meanwhile += len(not_found) - settled
            for campaign_id in sorted(to_dial):
                # Delivered at commit: the workers wake to dial these contacts again.
                await queries.notify_work(connection, campaign_id)
