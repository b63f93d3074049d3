"""`campaign reconcile`: contacts whose request had an unknown fate, and settling them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from campaign.models import ContactStatus
from campaign.queries.base import Connection, Executor, sql


@dataclass(frozen=True, slots=True)
class UnknownContact:
    """A contact whose latest request had an unknown fate, with what the look-ups need."""

    contact_id: int
    campaign_id: int
    campaign: str
    campaign_from_number: str
    destination: str
    dial_request_id: int | None
    # When its call may have started (the request's sent_at), and what "long enough ago"
    # counts from.
    look_up_since: datetime
    uncertain_since: datetime
    # What the contact becomes if Plivo has no call for it.
    not_found_status: ContactStatus


@dataclass(frozen=True, slots=True)
class UnknownContacts:
    """The unknown contacts read, and the time their ages count to."""

    contacts: list[UnknownContact]
    checked_at: datetime | None


async def unknown_contacts(
    executor: Executor, campaign_id: int | None, *, now: datetime | None
) -> UnknownContacts:
    """The `unknown` contacts of every campaign (or one), aged as of `now` (None: the database's
    clock)."""
    records = await executor.fetch(sql("unknown_contacts"), campaign_id, now)
    contacts = [
        UnknownContact(
            contact_id=record["contact_id"],
            campaign_id=record["campaign_id"],
            campaign=record["campaign"],
            campaign_from_number=record["from_number"],
            destination=record["destination"],
            dial_request_id=record["dial_request_id"],
            look_up_since=record["look_up_since"],
            uncertain_since=record["uncertain_since"],
            not_found_status=ContactStatus(record["not_found_status"]),
        )
        for record in records
    ]
    return UnknownContacts(contacts, records[0]["checked_at"] if records else None)


async def known_request_uuids(executor: Executor, request_uuids: Sequence[str]) -> set[str]:
    """Which of these request_uuids already belong to a contact (or to an unsettled request)."""
    records = await executor.fetch(sql("known_request_uuids"), list(request_uuids))
    return {record["request_uuid"] for record in records}


async def known_call_uuids(
    executor: Executor, destinations: Sequence[str], call_uuids: Sequence[str]
) -> set[str]:
    """Which of these call uuids already belong to an attempt to one of `destinations`."""
    records = await executor.fetch(sql("known_call_uuids"), list(destinations), list(call_uuids))
    return {record["call_uuid"] for record in records}


@dataclass(frozen=True, slots=True)
class FoundContact:
    """An unknown contact whose call Plivo has, and the outcome the contact takes from it."""

    contact_id: int
    dial_request_id: int | None
    status: ContactStatus
    request_uuid: str | None
    call_uuid: str | None
    plivo_message: str


async def reconcile_found(
    connection: Connection, calls: Sequence[FoundContact]
) -> list[ContactStatus]:
    """Contacts with a call found take its outcome; the statuses of those that did (a contact
    changed since it was read is left alone)."""
    records = await connection.fetch(
        sql("reconcile_found"),
        [call.contact_id for call in calls],
        [call.dial_request_id for call in calls],
        [call.status.value for call in calls],
        [call.request_uuid for call in calls],
        [call.call_uuid for call in calls],
        [call.plivo_message for call in calls],
    )
    return [ContactStatus(record["status"]) for record in records]


@dataclass(frozen=True, slots=True)
class NotFoundSettled:
    """Contacts of one campaign that no look-up found, and the status they took."""

    campaign_id: int
    status: ContactStatus
    contacts: int
    # The campaign's name when it was completed and runs again.
    reopened_campaign: str | None


async def lock_campaigns_of_contacts(connection: Connection, contact_ids: Sequence[int]) -> None:
    """Lock the campaigns of these contacts (in id order), before making contacts dialable."""
    await connection.execute(sql("lock_campaigns_of_contacts"), list(contact_ids))


async def reconcile_not_found(
    connection: Connection, contacts: Sequence[UnknownContact]
) -> list[NotFoundSettled]:
    """Contacts no look-up found, long after their request: dialled again, failed when out of
    attempts, or cancelled with their campaign. One row per campaign and new status."""
    records = await connection.fetch(
        sql("reconcile_not_found"),
        [contact.contact_id for contact in contacts],
        [contact.dial_request_id for contact in contacts],
    )
    return [
        NotFoundSettled(
            campaign_id=record["campaign_id"],
            status=ContactStatus(record["status"]),
            contacts=record["contacts"],
            reopened_campaign=record["reopened_campaign"],
        )
        for record in records
    ]
