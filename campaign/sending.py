"""Sending one request to Plivo, and sending it again only when that is safe.

Only a refusal that certainly placed no call (plivo.NotSent: connection refused, 429, a 503 from
Plivo) is ever sent again, and each time only:

- on new rate-limit slots of its own (a retry is a new request), taken by the fair-share rule;
- while its campaign still runs and its worker is not stopping: every wait (the back-off, the
  slots) looks every second whether to give up, so that pause, cancel and SIGTERM reach a retry
  within a second;
- after the fence (schema.sql: fence_dial_request): one statement extends the lease and checks
  that the campaign runs and every contact is still `sending` in this request for this worker,
  so that a retry never outlives its lease (its contacts then `unknown`, for reconcile).

Giving up raises RetriesStopped: the request placed no call, and its attempt is not counted.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from campaign import db, queries
from campaign.metrics import Metrics
from campaign.models import Campaign, CampaignStatus, DialRequest
from campaign.plivo import MakeCallResult, PlivoClient
from campaign.ratelimit import AccountLimits, SlotClock, reserve_batch_slots, sleep_unless

logger = logging.getLogger(__name__)

# While a refused request waits to be sent again, how often it looks whether to give up.
GIVE_UP_CHECK_S = 1.0


class RetriesStopped(Exception):
    """Raised between retries of a request Plivo refused, to give up on it (never a PlivoError,
    so the client does not retry it). The request placed no call; its attempt is not counted."""

    def __init__(self, message: str, *, sends: int) -> None:
        super().__init__(message)
        self.sends = sends


def call_parameters(campaign: Campaign, caller_id: str | None = None) -> dict[str, object]:
    """The Make-a-call parameters shared by every destination of a campaign's batch sent from
    `caller_id` (None: the campaign's "from")."""
    return {
        "from": caller_id or campaign.from_number,
        "answer_url": campaign.answer_url,
        **campaign.call_parameters,
    }


class RequestSender:
    """Sends written-ahead requests with the Make-a-call client, by the rules above."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: PlivoClient,
        limits: AccountLimits,
        metrics: Metrics,
        stop: asyncio.Event,
        *,
        worker_id: str,
        lease_s: float,
        slots: SlotClock | None = None,
    ) -> None:
        self._pool = pool
        self._slots = slots or SlotClock()
        self._client = client
        self._limits = limits
        self._metrics = metrics
        self._stop = stop
        self._worker_id = worker_id
        self._lease_s = lease_s

    async def send(self, campaign: Campaign, request: DialRequest) -> MakeCallResult:
        """Send `request`: Plivo's reply; or PlivoError (plivo's failure classes), ValueError
        (the request could not be built: not sent), or RetriesStopped."""
        sends = 0

        async def before_retry() -> None:
            nonlocal sends
            sends += 1
            await self._before_retry(campaign, request, sends)

        async def back_off(seconds: float) -> None:
            await self._back_off(campaign, seconds)

        return await self._client.make_call(
            call_parameters(campaign, request.caller_id),
            request.destinations,
            before_retry=before_retry,
            sleep=back_off,
        )

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
        limiters = self._limits.for_campaign(campaign, request.caller_id)
        while True:
            reason = await self.why_give_up(campaign)
            if reason is not None:
                raise RetriesStopped(reason, sends=sends)
            slot = await reserve_batch_slots(
                self._pool, self._slots, limiters, len(request.destinations)
            )
            if isinstance(slot, float):
                # The campaign's own cap has no slot yet: nothing was taken; wait for it.
                wait_s = slot
            elif slot is not None:
                # The fence is prepared before the slot (as long before as it takes), so that
                # the request goes at its slot.
                self._metrics.rate_limit_wait.observe(max(slot.seconds_until_slot(), 0.0))
                wait_s = slot.seconds_until_slot() - self._slots.prepare_s()
            else:
                wait_s = 0.0
            reason = await self._wait_or_give_up(campaign, wait_s) if wait_s > 0 else None
            if reason is not None:
                raise RetriesStopped(reason, sends=sends)
            if isinstance(slot, float):
                continue
            started = time.monotonic()
            refusal = await queries.fence(
                self._pool,
                request=request,
                worker_id=self._worker_id,
                lease_s=self._lease_s,
            )
            self._slots.preparing.observe(time.monotonic() - started)
            if refusal is not None:
                raise RetriesStopped(refusal, sends=sends)
            if slot is None:
                return
            await sleep_unless(self._stop, slot.seconds_until_slot())
            if self._stop.is_set():
                raise RetriesStopped("the worker is stopping", sends=sends)
            if limiters.paced and slot.missed_its_second():
                continue  # late for its slots' second: take new ones
            return

    async def _back_off(self, campaign: Campaign, seconds: float) -> None:
        """Wait out a back-off, but not past a reason to give up (_before_retry, right after,
        then gives up)."""
        await self._wait_or_give_up(campaign, seconds)
