"""One batch, from its claim to its recorded outcome: slot → write ahead → send → record.

Every step is one database round trip per batch (the functions of sql/schema.sql section 4):

1. `claim`: contacts and their rate-limit slots in one statement (`claim_batch`). When the slot
   has come already, the claim also writes the request ahead.
2. wait for the slot, then `write ahead` a batch claimed ahead of it: the request is recorded
   (`dial_requests`) and its contacts become `sending` before anything is sent.
3. `send` the `<`-joined Make-a-call request; only a refusal that certainly placed no call is
   sent again, each time on new slots, and only while the campaign runs and the worker is not
   stopping (the give-up policy).
4. `record` Plivo's reply, or the failure by its class, or give the request back unsent (a batch
   that missed its second, a worker that stopped first, retries given up).

So a crash at any point leaves each contact either never sent (`claimed`, back to `pending`
when its lease runs out) or maybe sent (`sending`, then `unknown`, never re-sent without
reconciling); and a request is settled once (a late settle changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

import asyncpg

from campaign import db, queries
from campaign.metrics import Metrics
from campaign.models import Campaign, CampaignStatus, DialRequest, RequestOutcome
from campaign.plivo import (
    AccountProblem,
    DestinationState,
    FateUnknown,
    MakeCallResult,
    NotSent,
    PlivoClient,
    PlivoError,
    RequestRejected,
)
from campaign.ratelimit import (
    SHARED_SLOT_SLACK_S,
    AccountLimits,
    SlotTiming,
    reserve_batch_slots,
    sleep_unless,
)

logger = logging.getLogger(__name__)

INVALID_NUMBER_ERROR = "Plivo refused the number as invalid"
# A batch whose rate-limit slot is at most this far away is written ahead by its claim.
WRITE_AHEAD_WITHIN_S = 0.01
# While a refused request waits to be sent again, how often it looks whether to give up.
GIVE_UP_CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class DialingConfig:
    """What dialing a batch needs from the worker's settings."""

    worker_id: str
    lease_s: float = 180.0
    pace_window_s: float = 0.1
    # Contacts whose request was not sent wait this long, doubling per attempt, up to the max.
    backoff_s: float = 30.0
    backoff_max_s: float = 3600.0
    # How long a write that records Plivo's answer keeps trying through lost connections.
    record_for_s: float = 180.0
    # After this many requests in a row whose fate is unknown, the campaigns are paused (0: never).
    pause_after_unknown: int = 3
    # The campaigns this worker dials (None: every running one): what such a pause pauses.
    campaign_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    """Contacts claimed for one request, and when the rate limits allow sending them."""

    campaign: Campaign
    contact_ids: list[int]
    destinations: list[str]
    slot: SlotTiming
    # Whether calls-per-second limits apply, so that the batch must go out in its second.
    paced: bool
    # Set when the claim wrote the request ahead (its contacts are `sending` already).
    request: DialRequest | None = None


@dataclass(frozen=True, slots=True)
class Throttled:
    """Nothing claimed: the campaign's own cap has no slot before `wait_s` seconds from now (a
    claim now would hold every campaign's slots idle until then)."""

    campaign: Campaign
    wait_s: float


class BatchEnd(Enum):
    """What the worker should make of a batch's end."""

    # The campaign may have more to dial.
    CONTINUE = "continue"
    # Nothing more of it for now: it stopped running (paused, cancelled, refused for the
    # account) or its contacts were taken back.
    DROP_CAMPAIGN = "drop campaign"


@dataclass(slots=True)
class DialingReport:
    """What the batches did, for the worker's log line at exit and for `--drain` callers."""

    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        return f"{self.batches} batches ({counts or 'nothing dialled'})"


class RetriesStopped(Exception):
    """Raised between retries of a request Plivo refused, to give up on it (never a PlivoError,
    so the client does not retry it). The request placed no call; its attempt is not counted."""

    def __init__(self, message: str, *, sends: int) -> None:
        super().__init__(message)
        self.sends = sends


def call_parameters(campaign: Campaign) -> dict[str, object]:
    """The Make-a-call parameters shared by every destination of a campaign's batches."""
    return {
        "from": campaign.from_number,
        "answer_url": campaign.answer_url,
        **campaign.call_parameters,
    }


def failure_outcome(error: PlivoError) -> RequestOutcome:
    """The request outcome a failure class records."""
    if isinstance(error, NotSent):
        return RequestOutcome.NOT_SENT
    if isinstance(error, AccountProblem):
        return RequestOutcome.ACCOUNT_PROBLEM
    if isinstance(error, RequestRejected):
        return RequestOutcome.REJECTED
    return RequestOutcome.UNKNOWN


class BatchDialer:
    """Claims batches and takes each through slot → write ahead → send → record.

    `stop` is the worker's: once set, nothing more is sent, claims not sent are given back, and
    requests refused by Plivo are not retried.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: PlivoClient,
        config: DialingConfig,
        limits: AccountLimits,
        metrics: Metrics,
        stop: asyncio.Event,
    ) -> None:
        self._pool = pool
        self._client = client
        self._config = config
        self._limits = limits
        self._metrics = metrics
        self._stop = stop
        self.report = DialingReport()
        # Requests being sent: the worker settles them as unknown if it must cut them off.
        self._in_flight: dict[int, DialRequest] = {}
        # Claims whose giving back failed (the database was away), by when they were claimed:
        # given back as soon as it answers again (release_stranded).
        self._stranded: dict[int, float] = {}
        # Requests in a row whose fate is unknown (a 5xx storm, a wrong PLIVO_API_URL).
        self._unknown_in_a_row = 0

    @property
    def has_requests_in_flight(self) -> bool:
        return bool(self._in_flight)

    # --- claim -------------------------------------------------------------------------------

    async def claim(self, campaign: Campaign) -> ClaimedBatch | Throttled | None:
        """Up to a batch of the campaign's due contacts with their slots; None when none is due;
        Throttled when the campaign's own cap has no slot yet."""
        limiters = self._limits.for_campaign(campaign)
        claim = await queries.claim_batch(
            self._pool,
            campaign_id=campaign.id,
            worker_id=self._config.worker_id,
            wanted=campaign.batch_size,
            lease_s=self._config.lease_s,
            pace_window_s=self._config.pace_window_s,
            call_limiters=limiters.calls,
            request_limiters=limiters.requests,
            own_limiters=limiters.own_calls,
            shared_slot_slack_s=SHARED_SLOT_SLACK_S,
            write_ahead_within_s=WRITE_AHEAD_WITHIN_S,
        )
        if claim.retry_at_s is not None:
            return Throttled(campaign, max(claim.retry_at_s - claim.db_now_s, 0.0))
        if not claim.contact_ids:
            return None
        return ClaimedBatch(
            campaign=campaign,
            contact_ids=claim.contact_ids,
            destinations=claim.destinations,
            slot=SlotTiming.read_now(claim.send_at_s, claim.db_now_s),
            paced=limiters.paced,
            request=claim.request,
        )

    # --- one batch ---------------------------------------------------------------------------

    async def dial(self, batch: ClaimedBatch) -> BatchEnd:
        """Take a claimed batch to its end: sent and recorded, or given back."""
        delay_s = batch.slot.seconds_until_slot()
        self._metrics.rate_limit_wait.observe(max(delay_s, 0.0))
        await sleep_unless(self._stop, delay_s)
        request = batch.request
        if request is None:
            if self._stop.is_set():
                await self._release(batch.contact_ids)
                return BatchEnd.CONTINUE
            request = await self._write_ahead(batch)
            if request is None:
                return BatchEnd.DROP_CAMPAIGN
        if self._stop.is_set():
            await self._unsend(request, "the worker stopped before sending")
            return BatchEnd.CONTINUE
        if batch.paced and batch.slot.missed_its_second():
            # Sent now, its calls would land in a second whose slots belong to other batches.
            await self._unsend(request, "missed the second of its rate-limit slots; not sent")
            logger.info(
                "campaign %s: a batch missed its second; claimed again", batch.campaign.name
            )
            return BatchEnd.CONTINUE
        self._in_flight[request.id] = request
        # Left in _in_flight if cancelled at stop: the worker then settles it as unknown. On any
        # other error the contacts stay `sending` and their lease makes them unknown.
        try:
            end = await self._send_and_record(batch.campaign, request)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._in_flight.pop(request.id, None)
            raise
        self._in_flight.pop(request.id, None)
        return end

    async def _write_ahead(self, batch: ClaimedBatch) -> DialRequest | None:
        """Record the request and mark its contacts `sending`; None when none may be sent."""
        try:
            request = await queries.write_ahead(
                self._pool,
                campaign_id=batch.campaign.id,
                worker_id=self._config.worker_id,
                contact_ids=batch.contact_ids,
                lease_s=self._config.lease_s,
            )
        except db.DATABASE_ERRORS:
            # Nothing was written ahead, so nothing is sent: give the claims back (later, if the
            # database is away).
            await self._release(batch.contact_ids)
            raise
        sent = set() if request is None else set(request.contact_ids)
        if len(sent) < len(batch.contact_ids):
            # Paused or cancelled since the claim, or a lease recovered by another worker.
            await self._release([cid for cid in batch.contact_ids if cid not in sent])
        return request

    async def _release(self, contact_ids: list[int]) -> None:
        """Give back claims not sent; if the database is away, as soon as it answers again."""
        if not contact_ids:
            return
        try:
            await queries.release_claims(
                self._pool, contact_ids=contact_ids, worker_id=self._config.worker_id
            )
        except db.DATABASE_ERRORS as error:
            logger.warning(
                "giving back %d claims failed (%s); trying again when the database answers",
                len(contact_ids),
                error,
            )
            now = time.monotonic()
            self._stranded.update(dict.fromkeys(contact_ids, now))

    async def release_stranded(self) -> int:
        """Give back the claims whose giving back failed; how many. Raises the database's error
        while it is still away."""
        # Older than a lease: recovered by then (and maybe claimed again, not to be touched).
        horizon = time.monotonic() - self._config.lease_s
        for contact_id, since in list(self._stranded.items()):
            if since < horizon:
                del self._stranded[contact_id]
        if not self._stranded:
            return 0
        contact_ids = sorted(self._stranded)
        await queries.release_claims(
            self._pool, contact_ids=contact_ids, worker_id=self._config.worker_id
        )
        for contact_id in contact_ids:
            self._stranded.pop(contact_id, None)
        logger.info("gave back %d claims stranded while the database was away", len(contact_ids))
        return len(contact_ids)

    async def _unsend(
        self, request: DialRequest, reason: str, *, sends: int = 0, latency_ms: int | None = None
    ) -> None:
        """A request that placed no call and counts no attempt (never sent, or given up between
        retries): its contacts go back as if never claimed."""
        await db.retry_until_done(
            lambda: queries.unsend(
                self._pool, request=request, error=reason, sends=sends, latency_ms=latency_ms
            ),
            give_up_after_s=self._config.record_for_s,
            what="giving back a request not sent",
        )

    # --- send, with the give-up policy ---------------------------------------------------------

    async def why_give_up(self, campaign: Campaign) -> str | None:
        """Why a request Plivo refused (not placed) must not be sent again, or None to retry.

        It is retried only while the campaign still runs and the worker is not stopping, so that
        pause, cancel and SIGTERM are not held up by a retry budget.
        """
        if self._stop.is_set():
            return "the worker is stopping"
        try:
            status = await queries.campaign_status(self._pool, campaign.id)
        except db.DATABASE_ERRORS as error:
            logger.warning("reading campaign %s's status: %s", campaign.name, error)
            return None  # cannot tell: retry as if nothing changed
        return None if status == CampaignStatus.RUNNING else f"the campaign is {status}"

    async def _wait_or_give_up(self, campaign: Campaign, seconds: float) -> str | None:
        """Wait `seconds`, looking every second whether to give up: the reason as soon as there
        is one (a stop, a pause, a cancel), None once the wait is over."""
        deadline = time.monotonic() + seconds
        while True:
            reason = await self.why_give_up(campaign)
            left = deadline - time.monotonic()
            if reason is not None or left <= 0:
                return reason
            await sleep_unless(self._stop, min(left, GIVE_UP_CHECK_S))

    async def _before_retry(self, campaign: Campaign, request: DialRequest, sends: int) -> None:
        """Before sending a refused request again: new rate-limit slots for it (a retry is a new
        request) and the wait for them, then the fence (one statement: the lease extended, the
        campaign still running, every contact still `sending` in it). Raises RetriesStopped to
        give up: a stop, pause or cancel ends any wait within a second."""
        limiters = self._limits.for_campaign(campaign)
        while True:
            reason = await self.why_give_up(campaign)
            if reason is not None:
                raise RetriesStopped(reason, sends=sends)
            slot = await reserve_batch_slots(self._pool, limiters, len(request.destinations))
            if isinstance(slot, float):
                # The campaign's own cap has no slot yet: nothing was taken; wait for it.
                wait_s = slot
            elif slot is not None:
                wait_s = slot.seconds_until_slot()
                self._metrics.rate_limit_wait.observe(max(wait_s, 0.0))
            else:
                wait_s = 0.0
            reason = await self._wait_or_give_up(campaign, wait_s) if wait_s > 0 else None
            if reason is not None:
                raise RetriesStopped(reason, sends=sends)
            if isinstance(slot, float):
                continue
            refusal = await queries.fence(
                self._pool,
                request=request,
                worker_id=self._config.worker_id,
                lease_s=self._config.lease_s,
            )
            if refusal is not None:
                raise RetriesStopped(refusal, sends=sends)
            if slot is not None and limiters.paced and slot.missed_its_second():
                continue  # late for its slots' second: take new ones
            return

    async def _back_off(self, campaign: Campaign, seconds: float) -> None:
        """Wait out a back-off, but not past a reason to give up (_before_retry, right after,
        then gives up)."""
        await self._wait_or_give_up(campaign, seconds)

    async def _send_and_record(self, campaign: Campaign, request: DialRequest) -> BatchEnd:
        started = time.monotonic()
        self._metrics.destinations.inc(len(request.destinations))
        sends = 0

        async def before_retry() -> None:
            nonlocal sends
            sends += 1
            await self._before_retry(campaign, request, sends)

        async def back_off(seconds: float) -> None:
            await self._back_off(campaign, seconds)

        def elapsed_ms() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            result = await self._client.make_call(
                call_parameters(campaign),
                request.destinations,
                before_retry=before_retry,
                sleep=back_off,
            )
        except RetriesStopped as stopped:
            latency_ms = elapsed_ms()
            reason = f"not sent: {stopped}; retries given up after {stopped.sends} refused"
            await self._unsend(request, reason, sends=stopped.sends, latency_ms=latency_ms)
            self._count(RequestOutcome.NOT_SENT, Counter({"not_sent": len(request.contact_ids)}))
            self._metrics.request_latency.observe(latency_ms / 1000)
            logger.warning(
                "campaign %s: batch of %d %s; %d ms; the attempt is not counted",
                campaign.name,
                len(request.contact_ids),
                reason,
                latency_ms,
            )
            return BatchEnd.CONTINUE
        except PlivoError as error:
            return await self._record_failure(campaign, request, error, elapsed_ms())
        except ValueError as error:
            # The request could not even be built (so it was not sent).
            rejected = RequestRejected(f"not sent: {error}", error=str(error))
            return await self._record_failure(campaign, request, rejected, elapsed_ms())
        await self._record_reply(campaign, request, result, elapsed_ms())
        return BatchEnd.CONTINUE

    # --- record --------------------------------------------------------------------------------

    async def _record_reply(
        self, campaign: Campaign, request: DialRequest, result: MakeCallResult, latency_ms: int
    ) -> None:
        replies = [
            queries.ContactReply("failed", None, INVALID_NUMBER_ERROR)
            if outcome.state == DestinationState.INVALID
            else queries.ContactReply(outcome.state.value, outcome.request_uuid, None)
            for outcome in result.destinations
        ]
        outcome = RequestOutcome.QUEUED if result.queued else RequestOutcome.FIRED
        await db.retry_until_done(
            lambda: queries.record_reply(
                self._pool,
                request=request,
                replies=replies,
                outcome=outcome,
                http_status=result.http_status,
                api_id=result.api_id,
                message=result.message,
                reply_uuids=result.request_uuids,
                uuids_mapped=result.mapped,
                sends=result.attempts,
                latency_ms=latency_ms,
            ),
            give_up_after_s=self._config.record_for_s,
            what="recording a reply",
        )
        self._unknown_in_a_row = 0
        counts = Counter(reply.status for reply in replies)
        self._count(outcome, counts)
        self._metrics.request_latency.observe(latency_ms / 1000)
        logger.info(
            "campaign %s: batch of %d: %s; %d ms%s",
            campaign.name,
            len(request.contact_ids),
            ", ".join(f"{status} {count}" for status, count in sorted(counts.items())),
            latency_ms,
            "" if result.mapped else "; request_uuids not mapped to destinations (unsettled)",
        )

    async def _record_failure(
        self, campaign: Campaign, request: DialRequest, error: PlivoError, latency_ms: int
    ) -> BatchEnd:
        outcome = failure_outcome(error)
        message = str(error)
        await db.retry_until_done(
            lambda: queries.record_failure(
                self._pool,
                request=request,
                outcome=outcome,
                http_status=error.http_status,
                error=message,
                backoff_s=self._config.backoff_s,
                backoff_max_s=self._config.backoff_max_s,
                latency_ms=latency_ms,
                sends=error.attempts,
            ),
            give_up_after_s=self._config.record_for_s,
            what="recording a failed request",
        )
        self._count(outcome, Counter({outcome.value: len(request.contact_ids)}))
        self._metrics.request_latency.observe(latency_ms / 1000)
        if outcome == RequestOutcome.ACCOUNT_PROBLEM:
            logger.error(
                "campaign %s paused: Plivo refused the account (%s); check PLIVO_AUTH_ID and "
                "PLIVO_AUTH_TOKEN, then `campaign resume %s`",
                campaign.name,
                message,
                campaign.name,
            )
            return BatchEnd.DROP_CAMPAIGN
        if isinstance(error, FateUnknown):
            logger.error(
                "campaign %s: batch of %d has an unknown fate (%s); %d ms; its contacts are"
                " `unknown` and will not be dialled again until `campaign reconcile`",
                campaign.name,
                len(request.contact_ids),
                message,
                latency_ms,
            )
            self._unknown_in_a_row += 1
            if 0 < self._config.pause_after_unknown <= self._unknown_in_a_row:
                await self._pause_for_unknown(message)
                return BatchEnd.DROP_CAMPAIGN
        else:
            self._unknown_in_a_row = 0
            logger.warning(
                "campaign %s: batch of %d %s: %s; %d ms",
                campaign.name,
                len(request.contact_ids),
                "not sent" if outcome == RequestOutcome.NOT_SENT else "rejected",
                message,
                latency_ms,
            )
        return BatchEnd.CONTINUE

    async def _pause_for_unknown(self, last_error: str) -> None:
        """The circuit breaker: so many requests in a row with an unknown fate say that Plivo is
        failing or PLIVO_API_URL is wrong; dialing on would make every batch unknown."""
        count = self._unknown_in_a_row
        self._unknown_in_a_row = 0
        reason = (
            f"paused by the engine: {count} requests in a row had an unknown fate (last:"
            f" {last_error}); check PLIVO_API_URL and Plivo's status, run `campaign reconcile`,"
            " then `campaign resume`"
        )
        paused = await db.retry_until_done(
            lambda: queries.pause_running_campaigns(
                self._pool, self._config.campaign_ids, reason=reason
            ),
            give_up_after_s=self._config.record_for_s,
            what="pausing campaigns",
        )
        logger.error("%s: paused %s", reason, ", ".join(paused) or "no running campaign")

    async def abandon_in_flight(self) -> None:
        """Requests cut off at stop may have placed calls: their contacts become unknown (a
        request whose reply was recorded meanwhile keeps it: settling happens once)."""
        for request in list(self._in_flight.values()):
            failure = FateUnknown("the worker stopped before Plivo replied")
            with contextlib.suppress(*db.CONNECTION_ERRORS):
                await queries.record_failure(
                    self._pool,
                    request=request,
                    outcome=RequestOutcome.UNKNOWN,
                    http_status=None,
                    error=str(failure),
                    backoff_s=self._config.backoff_s,
                    backoff_max_s=self._config.backoff_max_s,
                    latency_ms=None,
                    sends=1,
                )
        self._in_flight.clear()

    def _count(self, outcome: RequestOutcome, counts: Counter[str]) -> None:
        self._metrics.requests.labels(outcome.value).inc()
        self.report.batches += 1
        self.report.outcomes.update(counts)
