"""Campaigns: create, find, change status, progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import time

import asyncpg

from campaign.models import (
    CallingWindow,
    Campaign,
    CampaignSpec,
    CampaignStatus,
    Pacing,
    Progress,
    Schedule,
)
from campaign.queries.base import Connection, Executor, sql
from campaign.voice import VoiceContent


def _calling_hours(schedule: Schedule) -> list[asyncpg.Range[time]] | None:
    """The calling hours as a timemultirange (an end of None: up to midnight, unbounded)."""
    if schedule.calling_hours is None:
        return None
    return [asyncpg.Range(start, end) for start, end in schedule.calling_hours]


async def create_campaign(connection: Connection, spec: CampaignSpec) -> Campaign:
    """Insert a campaign; a duplicate name raises asyncpg.UniqueViolationError."""
    parameters = spec.call_parameters
    record = await connection.fetchrow(
        sql("create_campaign"),
        spec.name,
        spec.status.value,
        spec.from_number,
        spec.answer_url,
        parameters.get("answer_method"),
        parameters.get("ring_url"),
        parameters.get("ring_method"),
        parameters.get("hangup_url"),
        parameters.get("hangup_method"),
        parameters.get("fallback_url"),
        parameters.get("fallback_method"),
        parameters.get("caller_name"),
        parameters.get("send_digits"),
        parameters.get("send_on_preanswer"),
        parameters.get("time_limit"),
        parameters.get("hangup_on_ring"),
        parameters.get("machine_detection"),
        parameters.get("machine_detection_time"),
        parameters.get("machine_detection_url"),
        parameters.get("machine_detection_method"),
        parameters.get("sip_headers"),
        parameters.get("ring_timeout"),
        spec.calls_per_second,
        spec.batch_size,
        spec.max_attempts,
        list(spec.redial_on),
        list(spec.redial_delays_s),
        _calling_hours(spec.schedule),
        None if spec.schedule.calling_days is None else list(spec.schedule.calling_days),
        list(spec.schedule.skip_dates),
        spec.schedule.start_at,
        spec.schedule.end_at,
        spec.default_time_zone,
        list(spec.suppression_lists),
        spec.max_calls_per_number_per_day,
        spec.priority,
        spec.max_concurrent_calls,
        spec.caller_id_mode,
        spec.calls_per_second_per_caller_id,
        spec.max_calls_per_caller_id_per_day,
        *_content_values(spec.content),
        spec.webhook_url,
    )
    assert record is not None
    if spec.serve_answers_at is not None:
        record = await connection.fetchrow(
            sql("serve_campaign_answers"), record["id"], spec.serve_answers_at
        )
        assert record is not None
    if spec.caller_ids:
        await connection.execute(
            sql("add_caller_ids"),
            record["id"],
            [member.number for member in spec.caller_ids],
            [member.area_key for member in spec.caller_ids],
            [member.country_key for member in spec.caller_ids],
        )
    if spec.track_calls_at is not None:
        record = await connection.fetchrow(
            sql("track_campaign_calls"), record["id"], spec.track_calls_at
        )
    return Campaign.from_record(record)


def _content_values(content: VoiceContent) -> tuple[object, ...]:
    """The content columns of create_campaign, in order."""
    return (
        content.message,
        content.voice,
        content.language,
        content.play_url,
        content.play_after_url,
        content.answer_template,
        dict(content.gather) if content.gather else None,
        content.gather_prompt,
        content.gather_timeout_s,
        content.gather_retries,
        dict(content.after_keypress) if content.after_keypress else None,
        content.on_machine,
        content.voicemail_message,
    )


async def campaign_by_name(
    connection: Executor, name: str, *, for_update: bool = False
) -> Campaign | None:
    """The campaign called `name`, locked against concurrent changes when `for_update`."""
    query = sql("campaign_by_name_for_update" if for_update else "campaign_by_name")
    record = await connection.fetchrow(query, name)
    return None if record is None else Campaign.from_record(record)


async def campaigns_by_id(executor: Executor, campaign_ids: Sequence[int]) -> list[Campaign]:
    """The campaigns with these ids (those that exist, in no particular order)."""
    records = await executor.fetch(sql("campaigns_by_id"), list(campaign_ids))
    return [Campaign.from_record(record) for record in records]


async def campaign_for_load(connection: Connection, name: str) -> Campaign | None:
    """The campaign called `name`, held for a load (it cannot complete meanwhile, but its
    status can change)."""
    record = await connection.fetchrow(sql("campaign_by_name_for_load"), name)
    return None if record is None else Campaign.from_record(record)


async def hold_campaign_for_load(connection: Connection, name: str) -> None:
    """Wait until no other load into campaign `name` is under way, and hold it until this
    transaction ends."""
    await connection.execute(sql("hold_campaign_for_load"), name)


async def lock_campaign_status(connection: Connection, campaign_id: int) -> CampaignStatus:
    """The campaign's status now, its row locked until the transaction ends."""
    status: str = await connection.fetchval(sql("lock_campaign_status"), campaign_id)
    return CampaignStatus(status)


async def sending_count(executor: Executor, campaign_id: int) -> int:
    """How many of the campaign's contacts are in a request in flight."""
    count: int = await executor.fetchval(sql("sending_count"), campaign_id)
    return count


async def campaign_status(executor: Executor, campaign_id: int) -> CampaignStatus | None:
    """The campaign's status now; None when it no longer exists."""
    status: str | None = await executor.fetchval(sql("campaign_status"), campaign_id)
    return None if status is None else CampaignStatus(status)


async def set_campaign_status(
    connection: Connection,
    name: str,
    status: CampaignStatus,
    allowed_from: Sequence[CampaignStatus],
) -> Campaign | None:
    """Move campaign `name` to `status` if it is in one of `allowed_from`; None otherwise."""
    record = await connection.fetchrow(
        sql("set_campaign_status"), name, status.value, [state.value for state in allowed_from]
    )
    return None if record is None else Campaign.from_record(record)


async def set_pacing(
    connection: Connection,
    name: str,
    *,
    cps_given: bool,
    calls_per_second: float | None,
    batch_size: int | None,
    priority: int | None = None,
    concurrency_given: bool = False,
    max_concurrent_calls: int | None = None,
) -> Campaign | None:
    """Change campaign `name`'s own calls per second (when `cps_given`; None lifts its cap),
    batch size and priority (None: unchanged), and cap of concurrent calls (when
    `concurrency_given`; None lifts it); the campaign as it is now, or None if there is none."""
    record = await connection.fetchrow(
        sql("set_pacing"),
        name,
        cps_given,
        calls_per_second,
        batch_size,
        priority,
        concurrency_given,
        max_concurrent_calls,
    )
    return None if record is None else Campaign.from_record(record)


async def count_calls_in_flight(connection: Connection, campaign_id: int) -> None:
    """A cap of concurrent calls set on a running campaign counts the calls it has in flight
    already (under the lock its claims count under, until the transaction ends)."""
    await connection.execute(sql("lock_campaign_calls"), campaign_id)
    await connection.execute(sql("count_calls_in_flight"), campaign_id)


async def caller_ids(executor: Executor, campaign_id: int) -> list[tuple[str, int]]:
    """The campaign's pool of caller IDs in order, each with its calls in the last day (empty:
    it calls from its "from" alone)."""
    return [
        (record["caller_id"], record["calls_in_a_day"])
        for record in await executor.fetch(sql("caller_ids"), campaign_id)
    ]


async def live_calls(
    executor: Executor, campaign_id: int, *, account_capped: bool
) -> tuple[int, int]:
    """Calls counting now towards the caps of concurrent calls: (the account's, when it has a
    cap, else 0; the campaign's)."""
    record = await executor.fetchrow(sql("live_calls"), campaign_id, account_capped)
    assert record is not None
    return record["account_calls"], record["campaign_calls"]


async def pacing(
    executor: Executor, name: str, *, account_max_concurrent_calls: int | None
) -> Pacing | None:
    """How campaign `name` is paced now (`campaign status`); None if there is none."""
    campaign = await campaign_by_name(executor, name)
    if campaign is None:
        return None
    account_live, live = await live_calls(
        executor, campaign.id, account_capped=account_max_concurrent_calls is not None
    )
    return Pacing(
        priority=campaign.priority,
        calls_per_second=campaign.calls_per_second,
        batch_size=campaign.batch_size,
        max_concurrent_calls=campaign.max_concurrent_calls,
        live_calls=live,
        account_max_concurrent_calls=account_max_concurrent_calls,
        account_live_calls=account_live,
        caller_id_mode=campaign.caller_id_mode,
        caller_ids=tuple(await caller_ids(executor, campaign.id)),
    )


async def cancel_contacts(connection: Connection, campaign_id: int) -> int:
    """Cancel the campaign's contacts not dialled yet; return how many."""
    cancelled: int = await connection.fetchval(sql("cancel_contacts"), campaign_id)
    return cancelled


async def reopen_campaign(connection: Connection, campaign_id: int) -> None:
    """A completed campaign that got new contacts to dial runs again."""
    await connection.execute(sql("reopen_campaign"), campaign_id)


async def notify_work(connection: Connection, campaign_id: int) -> None:
    """Wake the workers (delivered when the surrounding transaction commits)."""
    await connection.execute(sql("notify_work"), campaign_id)


async def progress(executor: Executor, name: str) -> Progress | None:
    """One campaign's row of `campaign_progress`."""
    record = await executor.fetchrow(sql("progress_by_name"), name)
    return None if record is None else Progress.from_record(record)


@dataclass(frozen=True, slots=True)
class Redials:
    """A campaign's calls that were followed by another attempt: how many, to how many
    contacts, and by the call status that made the campaign dial again (busy, no-answer, …)."""

    contacts: int = 0
    calls: int = 0
    by_call_status: dict[str, int] = field(default_factory=dict)


async def redials(executor: Executor, campaign_id: int) -> Redials:
    """How campaign `campaign_id` dialled its contacts again (of `dial_attempts`)."""
    records = await executor.fetch(sql("redials"), campaign_id)
    total = next((r for r in records if r["total"]), None)
    return Redials(
        contacts=total["contacts"] if total is not None else 0,
        calls=total["calls"] if total is not None else 0,
        by_call_status={r["call_status"]: r["calls"] for r in records if not r["total"]},
    )


async def calling_window(executor: Executor, name: str) -> CallingWindow | None:
    """Campaign `name`'s schedule and when the next window of its waiting contacts opens."""
    record = await executor.fetchrow(sql("calling_window"), name)
    if record is None:
        return None
    return CallingWindow(Schedule.from_record(record), record["next_opening"])


async def progress_all(executor: Executor) -> list[Progress]:
    """Every campaign's row of `campaign_progress`, oldest first."""
    return [Progress.from_record(record) for record in await executor.fetch(sql("progress_all"))]
