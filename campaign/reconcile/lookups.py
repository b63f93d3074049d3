"""The look-ups of a reconcile run: Plivo's queue, its live calls and its call records, paced
by the account's API request limit, and the rules that make a call a contact's own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from campaign import queries
from campaign.config import Settings
from campaign.destinations import bare_number
from campaign.models import ContactStatus
from campaign.plivo import (
    CDR_PAGE_MAX_LIMIT,
    AccountProblem,
    CallRecord,
    PlivoClient,
    PlivoError,
    QueuedCall,
)
from campaign.queries import UnknownContact
from campaign.ratelimit import AccountLimits, RequestPacer
from campaign.reconcile.report import (
    FOUND_IN_CDR_MESSAGE,
    FOUND_LIVE_MESSAGE,
    FoundCall,
)

# A call may have started this long before its request's sent_at (database clock) and still be
# its request's: the margin for a clock of Plivo's running behind ours. Earlier calls are some
# other attempt's (a redial due at once must not be settled by the previous attempt's call).
CLOCK_SKEW_MARGIN_S = 5.0
# Call-record pages read per contact at most (20 records each): more calls to one destination
# since the request than that and the look-up counts as failed rather than guessed.
CDR_MAX_PAGES = 5


@dataclass(slots=True)
class QueueIndex:
    """The calls Plivo holds queued, by destination, and whether the whole queue could be read."""

    by_destination: dict[str, list[QueuedCall]] = field(default_factory=dict)
    # Why some queued call's destination is not known; then nothing not found may be re-dialled.
    error: str | None = None

    def take(self, destination: str, from_number: str) -> QueuedCall | None:
        """A queued call to `destination` from `from_number`, each handed to one contact only."""
        calls = self.by_destination.get(bare_number(destination), [])
        for position, call in enumerate(calls):
            if bare_number(call.from_number) == bare_number(from_number):
                return calls.pop(position)
        return None


class AccountRefused(Exception):
    """Plivo refused the account (401/403/404): stop looking anything up."""


class Lookups:
    """The look-ups of one run: paced by the account's API limit, stopped on an account problem."""

    def __init__(self, pool: asyncpg.Pool, client: PlivoClient, settings: Settings) -> None:
        self._pool = pool
        self._client = client
        self._pacer = RequestPacer(
            pool, AccountLimits.from_settings(settings, client.config.auth_id)
        )
        self.account_problem: str | None = None

    async def _paced(self) -> None:
        if self.account_problem is not None:
            raise AccountRefused(self.account_problem)
        await self._pacer.wait()

    def _refused(self, error: AccountProblem) -> AccountRefused:
        self.account_problem = self.account_problem or str(error)
        return AccountRefused(self.account_problem)

    async def queue(self, concurrency: int) -> QueueIndex:
        """Read the queue once: its request_uuids, then the destination of each not already ours.

        Raises AccountRefused when Plivo refuses the account.
        """
        index = QueueIndex()
        await self._paced()
        try:
            request_uuids = await self._client.queued_calls()
        except AccountProblem as error:
            raise self._refused(error) from None
        except PlivoError as error:
            index.error = f"the queued-calls look-up failed: {error}"
            return index
        if not request_uuids:
            return index
        known = await queries.known_request_uuids(self._pool, request_uuids)
        strangers = [request_uuid for request_uuid in request_uuids if request_uuid not in known]
        semaphore = asyncio.Semaphore(concurrency)

        async def details(request_uuid: str) -> QueuedCall | None:
            # Never raises, so that one refusal does not leave the other look-ups orphaned.
            async with semaphore:
                try:
                    await self._paced()
                    return await self._client.queued_call(request_uuid)
                except AccountRefused:
                    return None
                except AccountProblem as error:
                    self._refused(error)
                    return None
                except PlivoError as error:
                    index.error = index.error or (
                        f"the look-up of queued call {request_uuid} failed: {error}"
                    )
                    return None

        calls = await asyncio.gather(*(details(uuid) for uuid in strangers))
        if self.account_problem is not None:
            raise AccountRefused(self.account_problem)
        for call in calls:
            if call is not None and call.to_number:
                index.by_destination.setdefault(bare_number(call.to_number), []).append(call)
        return index

    async def live(self, contact: UnknownContact) -> FoundCall | None:
        """A call in progress to the contact's destination from its campaign's caller ID that
        no other attempt owns, if any. Raises PlivoError when several could be the contact's."""
        await self._paced()
        try:
            call_uuids = await self._client.live_calls(
                to_number=bare_number(contact.destination),
                from_number=bare_number(contact.campaign_from_number),
            )
        except AccountProblem as error:
            raise self._refused(error) from None
        if call_uuids:
            owned = await queries.known_call_uuids(self._pool, [contact.destination], call_uuids)
            call_uuids = [call_uuid for call_uuid in call_uuids if call_uuid not in owned]
        if not call_uuids:
            return None
        if len(call_uuids) > 1:
            raise PlivoError(
                f"{len(call_uuids)} live calls to {contact.destination} from the campaign's caller"
                " ID could be this contact's; not guessing"
            )
        return FoundCall(ContactStatus.FIRED, None, call_uuids[0], FOUND_LIVE_MESSAGE)

    async def completed(self, contact: UnknownContact) -> FoundCall | None:
        """A completed call to the contact's destination from its campaign's caller ID, started
        since its request was sent, that no other attempt owns.

        Raises PlivoError when several calls qualify, or when Plivo lists calls that its filter
        should have left out (neither found nor surely absent).
        """
        since = contact.look_up_since - timedelta(seconds=CLOCK_SKEW_MARGIN_S)
        wanted = bare_number(contact.destination)
        caller = bare_number(contact.campaign_from_number)
        records: list[CallRecord] = []
        for page_number in range(CDR_MAX_PAGES):
            await self._paced()
            try:
                page = await self._client.call_records(
                    wanted,
                    end_time_after=since,
                    from_number=caller,
                    offset=page_number * CDR_PAGE_MAX_LIMIT,
                )
            except AccountProblem as error:
                raise self._refused(error) from None
            records += page.records
            if len(page.records) < CDR_PAGE_MAX_LIMIT or len(records) >= page.total_count:
                break
        else:
            raise PlivoError(
                f"more than {len(records)} call records to {wanted} since the request; not guessing"
            )
        others = sorted({bare_number(record.to_number) for record in records} - {wanted})
        if others:
            listed = ", ".join(others[:3])
            raise PlivoError(f"the call records for {wanted} list calls to other numbers: {listed}")
        candidates = [
            record
            for record in records
            if bare_number(record.from_number) == caller and _started_since(record, since)
        ]
        if candidates:
            owned = await queries.known_call_uuids(
                self._pool, [contact.destination], [record.call_uuid for record in candidates]
            )
            candidates = [record for record in candidates if record.call_uuid not in owned]
        if not candidates:
            return None
        if len(candidates) > 1:
            raise PlivoError(
                f"{len(candidates)} calls to {wanted} from the campaign's caller ID since the"
                " request could be this contact's; not guessing"
            )
        (record,) = candidates
        raw_request_uuid = record.raw.get("request_uuid")
        return FoundCall(
            ContactStatus.FIRED,
            raw_request_uuid if isinstance(raw_request_uuid, str) and raw_request_uuid else None,
            record.call_uuid or None,
            FOUND_IN_CDR_MESSAGE,
        )


def _started_since(record: CallRecord, since: datetime) -> bool:
    """Whether the call began at or after `since` (Plivo writes UTC times, `2026-12-02 10:00:00`).
    A record without a readable start is not taken: it cannot be told from an older call."""
    if not record.initiation_time:
        return False
    try:
        started = datetime.fromisoformat(record.initiation_time[:19]).replace(tzinfo=UTC)
    except ValueError:
        return False
    return started >= since


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the look-ups said about one contact."""

    contact: UnknownContact
    found: FoundCall | None = None
    errors: tuple[str, ...] = ()


async def look_up(
    lookups: Lookups, contact: UnknownContact, semaphore: asyncio.Semaphore
) -> Verdict:
    """Live calls, then call records: every look-up that might find the contact's call."""
    errors: list[str] = []
    async with semaphore:
        for look_up in (lookups.live, lookups.completed):
            try:
                found = await look_up(contact)
            except AccountRefused as refused:
                errors.append(f"not looked up: Plivo refused the account ({refused})")
                break
            except PlivoError as error:
                errors.append(str(error))
                continue
            if found is not None:
                return Verdict(contact, found=found)
    return Verdict(contact, errors=tuple(errors))
