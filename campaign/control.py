"""What `campaign pause | resume | cancel | set | status | redial` do to a stored campaign, for
the CLI, the HTTP API and the dashboard alike (one copy of each rule): errors a user can cause
are `ControlError`, whose message is the line the CLI prints."""

from __future__ import annotations

from typing import Any

from campaign import queries
from campaign.contact_filter import ContactFilter, FilterError
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


async def _redial_campaign(
    connection: queries.Connection, name: str, flt: ContactFilter, *, lock: bool
) -> tuple[Campaign, queries.RedialCounts]:
    """The campaign a redial acts on and its counts, or ControlError (no such campaign, a bad
    filter, a cancelled or ended campaign)."""
    try:
        flt.checked()
    except FilterError as error:
        raise ControlError(error.message, option=error.field) from error
    campaign = await queries.campaign_by_name(connection, name, for_update=lock)
    if campaign is None:
        raise no_campaign(name)
    if campaign.status == CampaignStatus.CANCELLED:
        raise ControlError(
            f"campaign {name!r} is cancelled and is never dialled again; load the contacts "
            "into a new campaign (`campaign load`) to call them"
        )
    counts = await queries.redial_counts(connection, campaign.id, flt)
    if counts.ended:
        raise ControlError(
            f"campaign {name!r} ended at its end_at ({campaign.schedule.end_at}); nothing of it is "
            "dialled after that: load the contacts into a new campaign (`campaign load`)"
        )
    return campaign, counts


async def redial_counts(
    connection: queries.Connection, name: str, flt: ContactFilter
) -> queries.RedialCounts:
    """How many of campaign `name`'s contacts the filter matches, and how many of them a redial
    would dial again now (or ControlError, as `redial` would raise)."""
    _, counts = await _redial_campaign(connection, name, flt, lock=False)
    return counts


async def redial_count(connection: queries.Connection, name: str, flt: ContactFilter) -> int:
    """How many contacts `redial` would set to dial again now."""
    return (await redial_counts(connection, name, flt)).redialable


async def redial(connection: queries.Connection, name: str, flt: ContactFilter) -> int:
    """Dial again the contacts of campaign `name` that the filter matches and that are settled:
    failed, or fired/queued with their call ended (fired, when the campaign does not track its
    calls), and on none of its suppression lists now. Never a contact in a worker's hands,
    pending, queued at Plivo without a hangup, of unknown fate (`campaign reconcile` settles
    those), cancelled, suppressed or expired. Each becomes pending, due now; its history stays,
    and its next attempt is allowed even past max_attempts (the claim never counts attempts:
    only the automatic redials and the retries of unsent requests stop at max_attempts, so a
    contact that had used all its attempts gets exactly one more, and one that had not keeps
    the rest of its budget). A completed campaign runs again; the workers are woken. Returns how
    many were set to dial again. The caller holds the transaction: the campaign's row is locked
    first (as by a cancel and by the completion), then the contacts in id order."""
    campaign, counts = await _redial_campaign(connection, name, flt, lock=True)
    if counts.redialable == 0:
        return 0
    redialled = await queries.redial_contacts(connection, campaign.id, flt)
    if redialled == 0:
        return 0
    if campaign.status == CampaignStatus.COMPLETED:
        # Through the status machinery, so that campaign.status_changed fires (its trigger).
        await set_status(connection, name, CampaignStatus.RUNNING, (CampaignStatus.COMPLETED,))
    elif campaign.status == CampaignStatus.RUNNING:
        await queries.notify_work(connection, campaign.id)
    return redialled


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
