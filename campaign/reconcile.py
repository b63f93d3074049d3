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
from collections import Counter, defaultdict
from collections.abc import Sequence
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

logger = logging.getLogger(__name__)

# Look-ups in flight at once; the account's API request limit (RequestPacer) paces them anyway,
# this only keeps Plivo's reply latency from being the bottleneck.
LOOKUP_CONCURRENCY = 8
# A call may have started this long before its request's sent_at (database clock) and still be
# its request's: the margin for a clock of Plivo's running behind ours. Earlier calls are some
# other attempt's (a redial due at once must not be settled by the previous attempt's call).
CLOCK_SKEW_MARGIN_S = 5.0
# Call-record pages read per contact at most (20 records each): more calls to one destination
# since the request than that and the look-up counts as failed rather than guessed.
CDR_MAX_PAGES = 5

FOUND_QUEUED_MESSAGE = "reconciled: found queued at Plivo"
FOUND_LIVE_MESSAGE = "reconciled: found live at Plivo"
FOUND_IN_CDR_MESSAGE = "reconciled: found in CDR"


class UnknownCampaign(LookupError):
    """No campaign has the name given to reconcile."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no campaign named {name!r}; `campaign list` shows the campaigns")
        self.name = name


@dataclass(frozen=True, slots=True)
class FoundCall:
    """The call Plivo has for a contact, and the outcome the contact takes from it."""

    status: ContactStatus
    request_uuid: str | None
    call_uuid: str | None
    plivo_message: str


@dataclass(frozen=True, slots=True)
class LookupFailure:
    """A contact left unknown because a look-up that might have found its call failed."""

    contact_id: int
    campaign: str
    destination: str
    error: str

    def as_json(self) -> dict[str, object]:
        return {
            "contact_id": self.contact_id,
            "campaign": self.campaign,
            "destination": self.destination,
            "error": self.error,
        }


@dataclass(slots=True)
class ReconcileReport:
    """What a reconcile run found and did (or, in a dry run, would do)."""

    dry_run: bool = False
    examined: int = 0
    found: Counter[str] = field(default_factory=Counter)
    not_found: Counter[str] = field(default_factory=Counter)
    too_recent: int = 0
    run_again_after: datetime | None = None
    lookup_failures: list[LookupFailure] = field(default_factory=list)
    reopened_campaigns: list[str] = field(default_factory=list)
    # Contacts that changed between the read and the update (a late reply, another run).
    changed_meanwhile: int = 0
    # Plivo refused the account: the look-ups stopped there (the contacts not looked up are
    # among lookup_failures).
    account_problem: str | None = None

    @property
    def found_total(self) -> int:
        return sum(self.found.values())

    def summary(self) -> str:
        """One line, e.g. `reconciled: 2 found (queued 1, fired 1), 1 back to pending, …`."""
        verb = "would reconcile (dry run)" if self.dry_run else "reconciled"
        queued = self.found[ContactStatus.QUEUED]
        fired = self.found[ContactStatus.FIRED]
        parts = [
            f"{self.found_total} found (queued {queued}, fired {fired})",
            f"{self.not_found[ContactStatus.PENDING]} back to pending",
        ]
        if self.not_found[ContactStatus.FAILED]:
            parts.append(f"{self.not_found[ContactStatus.FAILED]} failed (out of attempts)")
        if self.not_found[ContactStatus.CANCELLED]:
            parts.append(
                f"{self.not_found[ContactStatus.CANCELLED]} cancelled (campaign cancelled)"
            )
        recent = f"{self.too_recent} still unknown"
        if self.run_again_after is not None:
            when = self.run_again_after.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            recent += f" (too recent: run again after {when})"
        parts.append(recent)
        failed = len(self.lookup_failures)
        parts.append(f"{failed} look-up{'' if failed == 1 else 's'} failed")
        line = f"{verb}: {', '.join(parts)}"
        if self.changed_meanwhile:
            line += f"; {self.changed_meanwhile} changed meanwhile and were left as they were"
        if self.reopened_campaigns:
            line += f"; running again: {', '.join(self.reopened_campaigns)}"
        return line

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict, as `campaign reconcile --json` prints it."""
        return {
            "dry_run": self.dry_run,
            "examined": self.examined,
            "found": self.found_total,
            "queued": self.found[ContactStatus.QUEUED],
            "fired": self.found[ContactStatus.FIRED],
            "pending": self.not_found[ContactStatus.PENDING],
            "failed": self.not_found[ContactStatus.FAILED],
            "cancelled": self.not_found[ContactStatus.CANCELLED],
            "still_unknown": self.too_recent,
            "run_again_after": (
                self.run_again_after.astimezone(UTC).isoformat()
                if self.run_again_after is not None
                else None
            ),
            "lookups_failed": len(self.lookup_failures),
            "lookup_failures": [failure.as_json() for failure in self.lookup_failures],
            "reopened_campaigns": list(self.reopened_campaigns),
            "changed_meanwhile": self.changed_meanwhile,
            "account_problem": self.account_problem,
        }


@dataclass(slots=True)
class _QueueIndex:
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


class _AccountRefused(Exception):
    """Plivo refused the account (401/403/404): stop looking anything up."""


class _Lookups:
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
            raise _AccountRefused(self.account_problem)
        await self._pacer.wait()

    def _refused(self, error: AccountProblem) -> _AccountRefused:
        self.account_problem = self.account_problem or str(error)
        return _AccountRefused(self.account_problem)

    async def queue(self, concurrency: int) -> _QueueIndex:
        """Read the queue once: its request_uuids, then the destination of each not already ours.

        Raises _AccountRefused when Plivo refuses the account.
        """
        index = _QueueIndex()
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
                except _AccountRefused:
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
            raise _AccountRefused(self.account_problem)
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
class _Verdict:
    """What the look-ups said about one contact."""

    contact: UnknownContact
    found: FoundCall | None = None
    errors: tuple[str, ...] = ()


async def _look_up(
    lookups: _Lookups, contact: UnknownContact, semaphore: asyncio.Semaphore
) -> _Verdict:
    """Live calls, then call records: every look-up that might find the contact's call."""
    errors: list[str] = []
    async with semaphore:
        for look_up in (lookups.live, lookups.completed):
            try:
                found = await look_up(contact)
            except _AccountRefused as refused:
                errors.append(f"not looked up: Plivo refused the account ({refused})")
                break
            except PlivoError as error:
                errors.append(str(error))
                continue
            if found is not None:
                return _Verdict(contact, found=found)
    return _Verdict(contact, errors=tuple(errors))


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

    lookups = _Lookups(pool, client, settings)
    try:
        queue = await lookups.queue(concurrency)
    except _AccountRefused:
        queue = _QueueIndex(error="not looked up: Plivo refused the account")
    verdicts: list[_Verdict] = []
    to_look_up: list[UnknownContact] = []
    for contact in contacts:
        queued = queue.take(contact.destination, contact.campaign_from_number)
        if queued is None:
            to_look_up.append(contact)
            continue
        in_queue = FoundCall(ContactStatus.QUEUED, queued.request_uuid, None, FOUND_QUEUED_MESSAGE)
        verdicts.append(_Verdict(contact, found=in_queue))
    if lookups.account_problem is None:
        semaphore = asyncio.Semaphore(concurrency)
        verdicts += await asyncio.gather(
            *(_look_up(lookups, contact, semaphore) for contact in to_look_up)
        )
    else:
        refused = f"not looked up: Plivo refused the account ({lookups.account_problem})"
        verdicts += [_Verdict(contact, errors=(refused,)) for contact in to_look_up]
    report.account_problem = lookups.account_problem

    found: list[_Verdict] = []
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
    found: Sequence[_Verdict],
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
