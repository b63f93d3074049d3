"""What the worker service asks between batches: which campaigns to dial, leases that ran out,
whether work is left, and completing finished campaigns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from campaign.models import Campaign
from campaign.queries.base import Connection, Executor, sql


def _ids(campaign_ids: Sequence[int] | None) -> list[int] | None:
    return None if campaign_ids is None else list(campaign_ids)


async def dialable_campaigns(
    executor: Executor, campaign_ids: Sequence[int] | None
) -> list[Campaign]:
    """Running campaigns (of `campaign_ids`, or all when None) with contacts due now."""
    records = await executor.fetch(sql("dialable_campaigns"), _ids(campaign_ids))
    return [Campaign.from_record(record) for record in records]


async def recover_expired_leases(executor: Executor) -> int:
    """Contacts whose lease ran out: claimed → pending, sending → unknown; how many."""
    recovered: int = await executor.fetchval(sql("recover_expired_leases"))
    return recovered


async def work_left(
    executor: Executor, campaign_ids: Sequence[int] | None, *, callback_wait_s: float
) -> bool:
    """Whether a running campaign (of `campaign_ids`, or any) still has contacts to dial, in a
    worker's hands, or waiting up to `callback_wait_s` for a hangup it may redial."""
    left: bool = await executor.fetchval(sql("work_left"), _ids(campaign_ids), callback_wait_s)
    return left


async def lock_finished_campaigns(
    connection: Connection, campaign_ids: Sequence[int] | None, *, callback_wait_s: float
) -> list[int]:
    """Step 1 of completing campaigns, in a transaction: lock those that look finished."""
    records = await connection.fetch(
        sql("lock_finished_campaigns"), _ids(campaign_ids), callback_wait_s
    )
    return [record["id"] for record in records]


async def complete_finished(
    connection: Connection, campaign_ids: Sequence[int], *, callback_wait_s: float
) -> list[str]:
    """Step 2, with a fresh snapshot: complete those with nothing left; their names."""
    records = await connection.fetch(sql("complete_finished"), list(campaign_ids), callback_wait_s)
    return [record["name"] for record in records]


async def pause_running_campaigns(
    executor: Executor, campaign_ids: Sequence[int] | None, *, reason: str
) -> list[str]:
    """Pause the running campaigns (of `campaign_ids`, or all) with the engine's reason; the
    names of those paused."""
    records = await executor.fetch(sql("pause_running_campaigns"), _ids(campaign_ids), reason)
    return [record["name"] for record in records]


async def reopen_unfinished(
    connection: Connection, campaign_ids: Sequence[int] | None
) -> list[str]:
    """Completed campaigns that have contacts to dial again run again; their names."""
    records = await connection.fetch(sql("reopen_unfinished"), _ids(campaign_ids))
    return [record["name"] for record in records]


async def expire_ended_campaigns(executor: Executor) -> dict[int, int]:
    """Contacts not dialled by their campaign's end_at become expired; how many per campaign."""
    records = await executor.fetch(sql("expire_ended_campaigns"))
    return {record["campaign_id"]: record["expired"] for record in records}


async def prune_number_calls(executor: Executor) -> None:
    """Forget calls placed more than a day ago (they count towards no cap)."""
    await executor.execute(sql("prune_number_calls"))


@dataclass(frozen=True, slots=True)
class QueuedOutsideWindow:
    """A call Plivo may still hold queued whose callee's window has closed, with a request_uuid
    that may be its own."""

    contact_id: int
    campaign_id: int
    destination: str
    request_uuid: str


async def queued_outside_window(
    executor: Executor, campaign_ids: Sequence[int] | None
) -> list[QueuedOutsideWindow]:
    """Calls to cancel at Plivo because their callee's window has closed."""
    records = await executor.fetch(sql("queued_outside_window"), _ids(campaign_ids))
    return [
        QueuedOutsideWindow(
            record["contact_id"],
            record["campaign_id"],
            record["destination"],
            record["request_uuid"],
        )
        for record in records
    ]


async def requeue_cancelled_calls(executor: Executor, contact_ids: Sequence[int]) -> int:
    """Contacts whose queued call was cancelled at Plivo at their window's close wait for their
    next window, the attempt not counted; how many."""
    requeued: int = await executor.fetchval(sql("requeue_cancelled_calls"), list(contact_ids))
    return requeued
