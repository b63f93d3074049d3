"""What the pages show, as JSON-ready snapshots: the same dict renders the first page and is
sent over SSE to update it, so a page and its live updates never disagree.

The ETA is an estimate, said as one: the contacts left (pending, claimed, sending) divided by
the rate of the last minute (or, while nothing is dialled, the campaign's calls per second,
else the account's), stretched by the share of the week the calling hours and days leave open
(08:00-21:00 every day: 13/24), plus the wait for the next window when every contact left is
waiting for one. Redials, caps and other campaigns sharing the account are not foreseen.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from campaign import queries
from campaign.config import Settings
from campaign.models import CONTACT_STATUSES, Campaign, CampaignStatus, Progress, Schedule
from campaign.queries import dashboard as dq

# Statuses a contact does not leave (the `done` counter).
TERMINAL_STATUSES = ("fired", "queued", "failed", "unknown", "cancelled", "suppressed", "expired")
LEFT_STATUSES = ("pending", "claimed", "sending")
RATE_WINDOW_S = 60.0
OUTCOME_NAMES = ("answered", "busy", "no_answer", "call_failed", "timeout")


def open_share(schedule: Schedule) -> float:
    """The share of a week the calling hours and days leave open (1.0: any time)."""
    share = 1.0
    if schedule.calling_hours is not None:
        seconds = 0.0
        for start, end in schedule.calling_hours:
            end_s = 86_400.0 if end is None else end.hour * 3600 + end.minute * 60 + end.second
            seconds += max(0.0, end_s - (start.hour * 3600 + start.minute * 60 + start.second))
        share *= seconds / 86_400.0
    if schedule.calling_days is not None:
        share *= len(schedule.calling_days) / 7.0
    return share


def eta(
    left: int,
    rate_per_s: float | None,
    schedule: Schedule,
    now: datetime,
    *,
    next_opening: datetime | None = None,
    all_waiting: bool = False,
) -> datetime | None:
    """When the contacts left should have been dialled (see the module's docstring)."""
    if left == 0:
        return now
    share = open_share(schedule)
    if rate_per_s is None or rate_per_s <= 0 or share <= 0:
        return None
    start = next_opening if all_waiting and next_opening is not None else now
    return start + timedelta(seconds=left / rate_per_s / share)


def _base_rate(campaign: Campaign, calls_last_window: int, settings: Settings) -> float | None:
    measured = calls_last_window / RATE_WINDOW_S
    if measured > 0:
        return measured
    return campaign.calls_per_second or settings.account_cps or None


def paused_reason(campaign: Campaign) -> str | None:
    """Why the campaign is paused (the engine's words), when it is."""
    return campaign.status_reason if campaign.status == CampaignStatus.PAUSED else None


def status_text(campaign: Campaign) -> str:
    """The status word, and the engine's reason when it paused the campaign."""
    reason = paused_reason(campaign)
    if reason:
        return f"{campaign.status.value} ({reason})"
    return campaign.status.value


def _progress_json(progress: Progress) -> dict[str, Any]:
    counts = dict(progress.counts)
    return {
        "status": progress.status.value,
        "total": progress.total,
        "counts": counts,
        "done": sum(counts.get(status, 0) for status in TERMINAL_STATUSES),
        "left": sum(counts.get(status, 0) for status in LEFT_STATUSES),
        "outcomes": {name: getattr(progress, name) for name in OUTCOME_NAMES},
        "answer_rate": progress.answer_rate,
        "waiting_for_window": progress.waiting_for_window,
        "responses": dict(sorted(progress.responses.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


async def campaigns_snapshot(pool: asyncpg.Pool, settings: Settings) -> dict[str, Any]:
    """Every campaign with its progress, rate now and ETA (the campaigns page)."""

    async def rates_now() -> tuple[datetime, dict[int, int]]:
        async with pool.acquire() as connection:
            now: datetime = await connection.fetchval("SELECT now()")
            return now, await dq.dashboard_rates(connection, RATE_WINDOW_S)

    rows, (now, rates) = await asyncio.gather(queries.progress_all(pool), rates_now())
    campaigns = {
        c.id: c for c in await queries.campaigns_by_id(pool, [r.campaign_id for r in rows])
    }
    items = []
    for row in rows:
        campaign = campaigns.get(row.campaign_id)
        if campaign is None:
            continue
        item = _progress_json(row)
        calls = rates.get(row.campaign_id, 0)
        item["name"] = row.campaign
        item["status_reason"] = paused_reason(campaign)
        item["status_text"] = status_text(campaign)
        item["rate"] = round(calls / RATE_WINDOW_S, 2)
        running = campaign.status == CampaignStatus.RUNNING
        finish = (
            eta(item["left"], _base_rate(campaign, calls, settings), campaign.schedule, now)
            if running
            else None
        )
        item["eta"] = _when(finish)
        items.append(item)
    return {"now": _when(now), "campaigns": items}


async def campaign_snapshot(
    pool: asyncpg.Pool, settings: Settings, name: str
) -> dict[str, Any] | None:
    """One campaign, live (the campaign page); None if there is no such campaign."""
    account_cap = settings.account_max_concurrent_calls or None
    campaign = await queries.campaign_by_name(pool, name)
    if campaign is None:
        return None

    async def rest() -> tuple[Any, ...]:
        async with pool.acquire() as connection:
            return (
                await connection.fetchval("SELECT now()"),
                await dq.dashboard_calls_per_minute(connection, campaign.id),
                await queries.pacing(connection, name, account_max_concurrent_calls=account_cap),
                await dq.dashboard_plivo_latency(connection, campaign.id),
                await dq.dashboard_plivo_errors(connection, campaign.id),
                await dq.dashboard_failing_webhooks(connection, campaign.id),
            )

    # The counts (the one read that grows with the campaign: an index-only scan of its
    # contacts) and the calling windows run beside the rest, each on a connection of its own.
    progress, waiting, (now, per_minute, pacing, latency, errors, webhooks) = await asyncio.gather(
        queries.progress(pool, name), dq.dashboard_waiting_windows(pool, campaign.id), rest()
    )
    if progress is None:
        return None
    snapshot = _progress_json(progress)
    calls_last_minute = per_minute[-1]
    openings = [row["next_opening"] for row in waiting if row["next_opening"] is not None]
    next_opening = min(openings) if openings else None
    all_waiting = snapshot["left"] > 0 and progress.waiting_for_window >= snapshot["counts"].get(
        "pending", 0
    )
    finish = (
        eta(
            snapshot["left"],
            _base_rate(campaign, calls_last_minute, settings),
            campaign.schedule,
            now,
            next_opening=next_opening,
            all_waiting=all_waiting,
        )
        if campaign.status == CampaignStatus.RUNNING
        else None
    )
    snapshot.update(
        {
            "name": campaign.name,
            "now": _when(now),
            "status_reason": paused_reason(campaign),
            "status_text": status_text(campaign),
            "rate": round(calls_last_minute / RATE_WINDOW_S, 2),
            "eta": _when(finish),
            "calls_per_minute": per_minute,
            "live_calls": None if pacing is None else pacing.live_calls,
            "max_concurrent_calls": None if pacing is None else pacing.max_concurrent_calls,
            "calls_per_second": campaign.calls_per_second,
            "priority": campaign.priority,
            "schedule": campaign.schedule.describe(),
            "latency": {
                "requests": latency["requests"],
                "mean_ms": None if latency["mean_ms"] is None else round(latency["mean_ms"], 1),
                "p95_ms": None if latency["p95_ms"] is None else round(latency["p95_ms"], 1),
            },
            "errors": [
                {
                    "at": _when(row["sent_at"]),
                    "outcome": row["outcome"],
                    "http_status": row["http_status"],
                    "reason": row["reason"],
                    "calls": row["calls"],
                }
                for row in errors
            ],
            "waiting": [
                {
                    "time_zones": ", ".join(row["time_zones"]) or "(none)",
                    "waiting": row["waiting"],
                    "next_opening": _when(row["next_opening"]),
                }
                for row in waiting
            ],
            "webhooks": [
                {
                    "id": row["id"],
                    "type": row["type"],
                    "contact_id": row["contact_id"],
                    "status": row["status"],
                    "attempts": row["attempts"],
                    "last_status": row["last_status"],
                    "last_error": row["last_error"],
                    "url": row["url"],
                }
                for row in webhooks
            ],
        }
    )
    return snapshot


__all__ = ["CONTACT_STATUSES", "campaign_snapshot", "campaigns_snapshot", "eta", "open_share"]
