"""The answers the engine serves: the contact a call is for, keypresses, machines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from campaign.queries.base import Executor, sql


@dataclass(frozen=True, slots=True)
class AnswerContact:
    """The contact a call is for: its id, its campaign's id and its CSV fields."""

    contact_id: int
    campaign_id: int
    fields: dict[str, str]


async def answer_contacts(
    executor: Executor, calls: Sequence[tuple[int, str]]
) -> list[AnswerContact | None]:
    """The contact of each call (campaign id, destination), in the order given; None for a call
    no contact matches. One statement for all of them."""
    records = await executor.fetch(
        sql("answer_contacts"),
        [campaign_id for campaign_id, _ in calls],
        [destination for _, destination in calls],
    )
    found: list[AnswerContact | None] = [None] * len(calls)
    for record in records:
        fields = record["contact_fields"]
        found[record["call_index"] - 1] = AnswerContact(
            contact_id=record["contact_id"],
            campaign_id=record["campaign_id"],
            fields={str(key): "" if value is None else str(value) for key, value in fields.items()},
        )
    return found


async def record_machine_action(
    executor: Executor, campaign_id: int, destination: str, action: str, call_uuid: str | None
) -> None:
    """An answering machine took the call; the answer did `action` (hangup, message, …),
    recorded on the contact and as the attempt's `machine` call event."""
    await executor.execute(
        sql("record_machine_action"), campaign_id, destination, action, call_uuid
    )


async def record_keypress(
    executor: Executor,
    *,
    campaign_id: int,
    destination: str,
    call_uuid: str | None,
    digits: str,
    meaning: str,
    opt_out_reason: str,
) -> str:
    """Record a keypress (one per attempt; an `opt-out` suppresses the number): 'recorded',
    'duplicate' or 'unknown'."""
    record = await executor.fetchrow(
        sql("record_keypress"), campaign_id, destination, call_uuid, digits, meaning, opt_out_reason
    )
    assert record is not None
    result: str = record["result"]
    return result


@dataclass(frozen=True, slots=True)
class OptOut:
    """A number whose callee pressed the opt-out key, and its entry on the list `default`."""

    destination: str
    # None when the number is no longer on the list (`campaign suppress remove` took it off).
    reason: str | None
    suppressed_at: datetime | None


async def opt_outs(executor: Executor, campaign_id: int) -> list[OptOut]:
    """The numbers of campaign `campaign_id` whose callee opted out, by number."""
    records = await executor.fetch(sql("opt_outs"), campaign_id)
    return [OptOut(r["destination"], r["reason"], r["created_at"]) for r in records]
