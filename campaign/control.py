"""What `campaign pause | resume | cancel | set | status` do to a stored campaign, for the CLI and
the HTTP API alike (one copy of each rule): errors a user can cause are `ControlError`, whose
message is the line the CLI prints."""

from __future__ import annotations

from typing import Any

from campaign import queries
from campaign.models import Campaign, CampaignStatus
from campaign.queries.dashboard import notify_campaign_changed
from campaign.ratelimit import change_pacing
from campaign.specs import PacingChange

PAUSABLE = (CampaignStatus.RUNNING, CampaignStatus.DRAFT)
RESUMABLE = (CampaignStatus.PAUSED, CampaignStatus.DRAFT)
CANCELLABLE = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.DRAFT)


class ControlError(Exception):
    """A change a user asked for cannot be made; the message says why in one line. `missing`:
    the campaign does not exist (the API answers 404), else the change conflicts (409)."""

    def __init__(self, message: str, *, missing: bool = False, option: str | None = None) -> None:
        super().__init__(f"{option}: {message}" if option else message)
        self.message = message
        self.missing = missing
        self.option = option


def no_campaign(name: str) -> ControlError:
    return ControlError(
        f"no campaign named {name!r}; `campaign list` shows the campaigns", missing=True
    )


async def set_status(
    connection: queries.Connection,
    name: str,
    new_status: CampaignStatus,
    allowed_from: tuple[CampaignStatus, ...],
) -> Campaign:
    """Move campaign `name` to `new_status` (a no-op if it is there already), or ControlError.
    Wakes the workers on resume. The caller holds the transaction."""
    campaign = await queries.set_campaign_status(connection, name, new_status, allowed_from)
    if campaign is None:
        existing = await queries.campaign_by_name(connection, name)
        if existing is None:
            raise no_campaign(name)
        if existing.status != new_status:
            raise ControlError(
                f"campaign {name!r} is {existing.status}; only a campaign that is "
                f"{' or '.join(allowed_from)} can be set {new_status}"
            )
        campaign = existing
    if new_status == CampaignStatus.RUNNING:
        await queries.notify_work(connection, campaign.id)
    await notify_campaign_changed(connection, campaign.id)
    return campaign


async def cancel(connection: queries.Connection, name: str) -> tuple[Campaign, int]:
    """Cancel campaign `name`: the campaign and how many contacts were not dialled yet."""
    campaign = await set_status(connection, name, CampaignStatus.CANCELLED, CANCELLABLE)
    return campaign, await queries.cancel_contacts(connection, campaign.id)


async def set_pacing(connection: queries.Connection, name: str, change: PacingChange) -> Campaign:
    """`campaign set`: change the campaign's pacing (the caller holds the transaction)."""
    campaign = await change_pacing(connection, name, change)
    if campaign is None:
        raise no_campaign(name)
    if change.max_concurrent_calls is not None and not campaign.track_calls:
        raise ControlError(
            f"campaign {name!r} does not track its calls, so their ends are unknown; the cap "
            "needs a campaign loaded with --track-calls",
            option="--max-concurrent-calls",
        )
    if campaign.status == CampaignStatus.RUNNING:
        await queries.notify_work(connection, campaign.id)
    await notify_campaign_changed(connection, campaign.id)
    return campaign


async def status_json(
    executor: queries.Executor, name: str, *, account_max_concurrent_calls: int | None
) -> dict[str, Any] | None:
    """What `campaign status NAME --json` prints; None if there is no such campaign."""
    row = await queries.progress(executor, name)
    if row is None:
        return None
    payload: dict[str, Any] = row.as_json()
    window = await queries.calling_window(executor, name)
    if window is not None:
        payload["schedule"] = window.schedule.as_json()
        payload["next_window_opens_at"] = (
            None if window.next_opening is None else window.next_opening.isoformat()
        )
    pacing = await queries.pacing(
        executor, name, account_max_concurrent_calls=account_max_concurrent_calls
    )
    if pacing is not None:
        payload["pacing"] = pacing.as_json()
    return payload
