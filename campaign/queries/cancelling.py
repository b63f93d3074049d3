"""Cancelling at Plivo the calls it still holds queued for a campaign."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from campaign.queries.base import Connection, Executor, sql


@dataclass(frozen=True, slots=True)
class QueuedContact:
    """A contact whose call Plivo may still hold queued, with a request_uuid to cancel: its own,
    or, for a batch whose uuids could not be mapped, one of its batch's (a row each)."""

    contact_id: int
    destination: str
    request_uuid: str


async def queued_contacts(executor: Executor, campaign_id: int) -> list[QueuedContact]:
    """The campaign's `queued` contacts with the request_uuids that may be theirs."""
    records = await executor.fetch(sql("queued_contacts"), campaign_id)
    return [
        QueuedContact(record["id"], record["destination"], record["request_uuid"])
        for record in records
    ]


async def mark_cancelled_at_plivo(executor: Executor, contact_ids: Sequence[int]) -> None:
    """Contacts whose queued call was cancelled at Plivo become `cancelled`."""
    await executor.execute(sql("mark_cancelled_at_plivo"), list(contact_ids))


async def mark_left_queue(executor: Executor, contact_ids: Sequence[int]) -> None:
    """Contacts whose queued call Plivo no longer holds (it rang already) become `fired`."""
    await executor.execute(sql("mark_left_queue"), list(contact_ids))


async def try_advisory_lock(connection: Connection, key: int) -> bool:
    """Take a session advisory lock if no one holds it; whether it was taken."""
    taken: bool = await connection.fetchval(sql("try_advisory_lock"), key)
    return taken


async def advisory_unlock(connection: Connection, key: int) -> None:
    """Give back a session advisory lock taken by try_advisory_lock."""
    await connection.execute(sql("advisory_unlock"), key)
