"""One batch, from its claim to its recorded outcome: slot → write ahead → send → record.

Every step is one database round trip per batch (the functions of sql/schema.sql section 4):

1. `claim`: contacts and their rate-limit slots in one statement (`claim_batch`). When the slot
   has come already, the claim also writes the request ahead.
2. wait for the slot, then `write ahead` a batch claimed ahead of it: the request is recorded
   (`dial_requests`) and its contacts become `sending` before anything is sent.
3. `send` the `<`-joined Make-a-call request (campaign/sending.py: only a refusal that certainly
   placed no call is sent again, on new slots, fenced, and only while the campaign runs and the
   worker is not stopping).
4. `record` Plivo's reply, or the failure by its class, or give the request back unsent (a batch
   that missed its second, a worker that stopped first, retries given up).

So a crash at any point leaves each contact either never sent (`claimed`, back to `pending`
when its lease runs out) or maybe sent (`sending`, then `unknown`, never re-sent without
reconciling); and a request is settled once (a late settle changes nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import Enum

import asyncpg

from campaign import db, queries
from campaign.metrics import Metrics
from campaign.models import Campaign, DialRequest
from campaign.plivo import (
    ConcurrencyLimited,
    PlivoClient,
    PlivoError,
    RequestRejected,
)
from campaign.ratelimit import (
    MAX_LOOKAHEAD_S,
    SHARED_SLOT_SLACK_S,
    AccountLimits,
    SlotClock,
    SlotTiming,
    reserve_batch_slots,
    sleep_unless,
)
from campaign.recording import DialingReport, Recorder
from campaign.sending import RequestSender, RetriesStopped

logger = logging.getLogger(__name__)

# A batch that missed its slots' second is re-planned into new slots at most this many times
# before it is given back.
REPLANS = 3


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
    # Calls placed to one number by every campaign in the previous 24 h, at most (None: no cap).
    max_calls_per_number_per_day: int | None = None
    # Calls of the account live at once, at most (None: no cap).
    account_max_concurrent_calls: int | None = None
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
    # The `from` its request is sent with (a caller ID of the campaign's pool, else its own).
    caller_id: str | None = None


class Waiting(Enum):
    """What a throttled campaign waits for, besides time: what wakes it early."""

    # Time alone: its own cap's next slot, its start, its callees' windows (a whole minute).
    TIME = "time"
    # A campaign of higher priority to leave some of the account's calls (NOTIFY
    # campaign_room 'priority').
    PRIORITY = "priority"
    # A call to end, under a cap of concurrent calls (NOTIFY campaign_room 'calls').
    CALLS = "calls"


@dataclass(frozen=True, slots=True)
class Throttled:
    """Nothing claimed yet, for `wait_s` seconds at most: the campaign's own cap has no slot
    before then (a claim now would hold every campaign's slots idle until then), the campaign
    starts then, its callees' windows are closed (they open on a whole minute), its caller IDs
    had their calls of the day; or, woken earlier by what `waiting` says, a campaign of higher
    priority takes the account's calls, or a cap of concurrent calls is reached."""

    campaign: Campaign
    wait_s: float
    waiting: Waiting = Waiting.TIME


class BatchEnd(Enum):
    """What the worker should make of a batch's end."""

    # The campaign may have more to dial.
    CONTINUE = "continue"
    # Nothing more of it for now: it stopped running (paused, cancelled, refused for the
    # account) or its contacts were taken back.
    DROP_CAMPAIGN = "drop campaign"
    # Plivo refused the request for its concurrency limit (5030): the calls were not placed;
    # dial again once a call ends.
    WAIT_FOR_CALLS = "wait for calls"


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
        # The database's clock across the round trip, and how early to prepare for a slot:
        # shared by every batch of this worker and by its retries.
        self._slots = SlotClock(max_lookahead_s=min(MAX_LOOKAHEAD_S, config.lease_s / 10))
        self._sender = RequestSender(
            pool,
            client,
            limits,
            metrics,
            stop,
            worker_id=config.worker_id,
            lease_s=config.lease_s,
            slots=self._slots,
        )
        self._recorder = Recorder(
            pool,
            metrics,
            record_for_s=config.record_for_s,
            backoff_s=config.backoff_s,
            backoff_max_s=config.backoff_max_s,
            pause_after_unknown=config.pause_after_unknown,
            campaign_ids=config.campaign_ids,
            caps_calls_per_number=config.max_calls_per_number_per_day is not None,
        )
        self._config = config
        self._limits = limits
        self._metrics = metrics
        self._stop = stop
        # Requests being sent: the worker settles them as unknown if it must cut them off.
        self._in_flight: dict[int, DialRequest] = {}
        # Claims whose giving back failed (the database was away), by when they were claimed:
        # given back as soon as it answers again (release_stranded).
        self._stranded: dict[int, float] = {}

    @property
    def report(self) -> DialingReport:
        return self._recorder.report

    @property
    def has_requests_in_flight(self) -> bool:
        return bool(self._in_flight)

    # --- claim -------------------------------------------------------------------------------

    async def claim(self, campaign: Campaign) -> ClaimedBatch | Throttled | None:
        """Up to a batch of the campaign's due contacts with their slots; None when none is due;
        Throttled when the campaign's own cap has no slot yet."""
        limiters = self._limits.for_campaign(campaign)
        if not self._slots.clock.synchronised:
            await self._slots.synchronise(self._pool)
        write_ahead_within_s = self._slots.write_ahead_within_s()
        claim = await self._slots.read(
            self._pool,
            lambda connection: queries.claim_batch(
                connection,
                campaign_id=campaign.id,
                worker_id=self._config.worker_id,
                wanted=campaign.batch_size,
                lease_s=self._config.lease_s,
                pace_window_s=self._config.pace_window_s,
                call_limiters=limiters.calls,
                request_limiters=limiters.requests,
                own_limiters=limiters.own_calls,
                shared_slot_slack_s=SHARED_SLOT_SLACK_S,
                write_ahead_within_s=write_ahead_within_s,
                max_calls_per_number=self._config.max_calls_per_number_per_day,
                account_max_concurrent_calls=self._config.account_max_concurrent_calls,
            ),
        )
        self._metrics.database_round_trip.set(self._slots.clock.round_trip_s)
        if claim.retry_at_s is not None:
            waiting = {"priority": Waiting.PRIORITY, "calls": Waiting.CALLS}.get(
                claim.waiting_for or "", Waiting.TIME
            )
            return Throttled(campaign, max(claim.retry_at_s - claim.db_now_s, 0.0), waiting)
        if not claim.contact_ids:
            return None
        return ClaimedBatch(
            campaign=campaign,
            contact_ids=claim.contact_ids,
            destinations=claim.destinations,
            slot=self._slots.slot(claim.send_at_s),
            paced=limiters.paced,
            request=claim.request,
            caller_id=claim.caller_id,
        )

    # --- one batch ---------------------------------------------------------------------------

    async def dial(self, batch: ClaimedBatch) -> BatchEnd:
        """Take a claimed batch to its end: sent and recorded, or given back.

        Prepared before its slot, sent at it: a batch the claim did not write ahead is written
        ahead as long before its slot as that takes from here (SlotClock.prepare_s), then sent
        when the slot comes on the database's clock as this worker tells it.
        """
        self._metrics.rate_limit_wait.observe(max(batch.slot.seconds_until_slot(), 0.0))
        request = batch.request
        if request is None:
            await sleep_unless(
                self._stop, batch.slot.seconds_until_slot() - self._slots.prepare_s()
            )
            if self._stop.is_set():
                await self._release(batch.contact_ids)
                return BatchEnd.CONTINUE
            request = await self._write_ahead(batch)
            if request is None:
                return BatchEnd.DROP_CAMPAIGN
        await sleep_unless(self._stop, batch.slot.seconds_until_slot())
        if self._stop.is_set():
            await self._recorder.unsend(request, "the worker stopped before sending")
            return BatchEnd.CONTINUE
        if batch.paced and batch.slot.missed_its_second():
            # Sent now, its calls would land in a second whose slots belong to other batches:
            # new slots for it, the next free ones.
            refusal = await self._replan(batch, request)
            if refusal is not None:
                await self._recorder.unsend(request, refusal)
                logger.info("campaign %s: a batch %s; claimed again", batch.campaign.name, refusal)
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

    async def _replan(self, batch: ClaimedBatch, request: DialRequest) -> str | None:
        """A batch written ahead that missed its slots' second (a late answer from a far
        database, a stalled process) takes the next free slots for all its calls, as a retry
        does, rather than being given back: its contacts keep their request. First the fence
        (one statement: the campaign still runs, every contact is still `sending` in this
        request for this worker, the lease extended), then the slots, so that nothing stands
        between the new slots and the send (the next free slot is often now: a statement more
        would make it late again from a far database). None once it may be sent now; else why
        it is given back."""
        limiters = self._limits.for_campaign(batch.campaign, request.caller_id)
        for _ in range(REPLANS):
            refusal = await self._fence(request)
            if refusal is not None:
                return refusal
            slot = await reserve_batch_slots(
                self._pool, self._slots, limiters, len(request.destinations)
            )
            if not isinstance(slot, SlotTiming):
                return "missed the second of its rate-limit slots (its own cap has no slot soon)"
            self._metrics.batches_replanned.inc()
            if slot.seconds_until_slot() > self._slots.prepare_s():
                # Far ahead (other batches hold the slots before it): fenced again just before.
                await sleep_unless(self._stop, slot.seconds_until_slot() - self._slots.prepare_s())
                refusal = await self._fence(request)
                if refusal is not None:
                    return refusal
            await sleep_unless(self._stop, slot.seconds_until_slot())
            if self._stop.is_set():
                return "the worker stopped before sending"
            if not slot.missed_its_second():
                logger.info(
                    "campaign %s: a batch missed the second of its rate-limit slots; sent on"
                    " new ones",
                    batch.campaign.name,
                )
                return None
        return f"missed the second of its rate-limit slots {REPLANS + 1} times; not sent"

    async def _fence(self, request: DialRequest) -> str | None:
        """The fence before a re-planned batch goes (schema.sql: fence_dial_request): None to
        send it, else why it is given back."""
        refusal = await queries.fence(
            self._pool,
            request=request,
            worker_id=self._config.worker_id,
            lease_s=self._config.lease_s,
        )
        if refusal is None:
            return None
        return f"missed the second of its rate-limit slots; not sent again: {refusal}"

    async def _write_ahead(self, batch: ClaimedBatch) -> DialRequest | None:
        """Record the request and mark its contacts `sending`; None when none may be sent."""
        started = time.monotonic()
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
        self._slots.preparing.observe(time.monotonic() - started)
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

    async def _send_and_record(self, campaign: Campaign, request: DialRequest) -> BatchEnd:
        started = time.monotonic()
        self._metrics.destinations.inc(len(request.destinations))

        def elapsed_ms() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            result = await self._sender.send(campaign, request)
        except RetriesStopped as stopped:
            await self._recorder.given_up(campaign, request, stopped, elapsed_ms())
            return BatchEnd.CONTINUE
        except ConcurrencyLimited as error:
            await self._recorder.concurrency_limited(campaign, request, error, elapsed_ms())
            return BatchEnd.WAIT_FOR_CALLS
        except PlivoError as error:
            stopped_running = await self._recorder.failure(campaign, request, error, elapsed_ms())
            return BatchEnd.DROP_CAMPAIGN if stopped_running else BatchEnd.CONTINUE
        except ValueError as error:
            # The request could not even be built (so it was not sent).
            rejected = RequestRejected(f"not sent: {error}", error=str(error))
            await self._recorder.failure(campaign, request, rejected, elapsed_ms())
            return BatchEnd.CONTINUE
        await self._recorder.reply(campaign, request, result, elapsed_ms())
        return BatchEnd.CONTINUE

    async def abandon_in_flight(self) -> None:
        """Requests cut off at stop may have placed calls: their contacts become unknown."""
        await self._recorder.abandon(list(self._in_flight.values()))
        self._in_flight.clear()
