"""Recording what became of a request: Plivo's reply, its failure by class, or giving it back.

Each is one statement (schema.sql section 4) that settles the request once, retried through lost
connections (it records what Plivo said, so it must land). Also here: the counts the worker
reports and exports as metrics, and the circuit breaker that pauses the campaigns after a run of
requests whose fate is unknown (a 5xx storm, a PLIVO_API_URL that redirects).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from campaign import db, queries
from campaign.metrics import Metrics
from campaign.models import Campaign, DialRequest, RequestOutcome
from campaign.plivo import (
    AccountProblem,
    DestinationState,
    FateUnknown,
    MakeCallResult,
    NotSent,
    PlivoError,
    RequestRejected,
)
from campaign.sending import RetriesStopped

logger = logging.getLogger(__name__)

INVALID_NUMBER_ERROR = "Plivo refused the number as invalid"


@dataclass(slots=True)
class DialingReport:
    """What the batches did, for the worker's log line at exit and for `--drain` callers."""

    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        return f"{self.batches} batches ({counts or 'nothing dialled'})"


def failure_outcome(error: PlivoError) -> RequestOutcome:
    """The request outcome a failure class records."""
    if isinstance(error, NotSent):
        return RequestOutcome.NOT_SENT
    if isinstance(error, AccountProblem):
        return RequestOutcome.ACCOUNT_PROBLEM
    if isinstance(error, RequestRejected):
        return RequestOutcome.REJECTED
    return RequestOutcome.UNKNOWN


class Recorder:
    """Settles requests in the database and counts them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        *,
        record_for_s: float,
        backoff_s: float,
        backoff_max_s: float,
        pause_after_unknown: int,
        campaign_ids: tuple[int, ...] | None,
        caps_calls_per_number: bool,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        # How long a write that records Plivo's answer keeps trying through lost connections.
        self._record_for_s = record_for_s
        # Contacts whose request was not sent wait this long, doubling per attempt, up to the max.
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        # After this many requests in a row whose fate is unknown, pause `campaign_ids` (None:
        # every running campaign); 0: never.
        self._pause_after_unknown = pause_after_unknown
        self._campaign_ids = campaign_ids
        # Whether every campaign's calls count towards a cap of calls per number per day.
        self._caps_calls_per_number = caps_calls_per_number
        self.report = DialingReport()
        # Requests in a row whose fate is unknown (a 5xx storm, a wrong PLIVO_API_URL).
        self._unknown_in_a_row = 0

    async def unsend(
        self, request: DialRequest, reason: str, *, sends: int = 0, latency_ms: int | None = None
    ) -> None:
        """A request that placed no call and counts no attempt (never sent, or given up between
        retries): its contacts go back as if never claimed."""
        await db.retry_until_done(
            lambda: queries.unsend(
                self._pool, request=request, error=reason, sends=sends, latency_ms=latency_ms
            ),
            give_up_after_s=self._record_for_s,
            what="giving back a request not sent",
        )

    async def given_up(
        self, campaign: Campaign, request: DialRequest, stopped: RetriesStopped, latency_ms: int
    ) -> None:
        """Retries of a refused request were given up (its campaign stopped running, its lease
        ran out, its worker is stopping): no call was placed, the attempt is not counted."""
        reason = f"not sent: {stopped}; retries given up after {stopped.sends} refused"
        await self.unsend(request, reason, sends=stopped.sends, latency_ms=latency_ms)
        self._count(RequestOutcome.NOT_SENT, Counter({"not_sent": len(request.contact_ids)}))
        self._metrics.request_latency.observe(latency_ms / 1000)
        logger.warning(
            "campaign %s: batch of %d %s; %d ms; the attempt is not counted",
            campaign.name,
            len(request.contact_ids),
            reason,
            latency_ms,
        )

    async def concurrency_limited(
        self, campaign: Campaign, request: DialRequest, error: PlivoError, latency_ms: int
    ) -> None:
        """Plivo refused the request for the account's concurrent calls (5030): no call was
        placed and it is not the contacts' fault, so they go back to pending, the attempt not
        counted, to be dialled once calls end."""
        await self.unsend(
            request, f"not sent: {error}", sends=error.attempts, latency_ms=latency_ms
        )
        self._count(RequestOutcome.NOT_SENT, Counter({"not_sent": len(request.contact_ids)}))
        self._metrics.request_latency.observe(latency_ms / 1000)
        logger.warning(
            "campaign %s: batch of %d refused for the account's concurrent calls (%s); %d ms;"
            " dialled again once calls end",
            campaign.name,
            len(request.contact_ids),
            error,
            latency_ms,
        )

    async def reply(
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
                log_calls=self._caps_calls_per_number
                or campaign.max_calls_per_number_per_day is not None,
            ),
            give_up_after_s=self._record_for_s,
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

    async def failure(
        self, campaign: Campaign, request: DialRequest, error: PlivoError, latency_ms: int
    ) -> bool:
        """Record a request that failed as a whole; True when its campaign (or every campaign,
        by the circuit breaker) stopped running because of it."""
        outcome = failure_outcome(error)
        message = str(error)
        await db.retry_until_done(
            lambda: queries.record_failure(
                self._pool,
                request=request,
                outcome=outcome,
                http_status=error.http_status,
                error=message,
                backoff_s=self._backoff_s,
                backoff_max_s=self._backoff_max_s,
                latency_ms=latency_ms,
                sends=error.attempts,
            ),
            give_up_after_s=self._record_for_s,
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
            return True
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
            if 0 < self._pause_after_unknown <= self._unknown_in_a_row:
                await self._pause_for_unknown(message)
                return True
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
        return False

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
            lambda: queries.pause_running_campaigns(self._pool, self._campaign_ids, reason=reason),
            give_up_after_s=self._record_for_s,
            what="pausing campaigns",
        )
        logger.error("%s: paused %s", reason, ", ".join(paused) or "no running campaign")

    async def abandon(self, requests: list[DialRequest]) -> None:
        """Requests cut off at stop may have placed calls: their contacts become unknown (a
        request whose reply was recorded meanwhile keeps it: settling happens once)."""
        for request in requests:
            failure = FateUnknown("the worker stopped before Plivo replied")
            with contextlib.suppress(*db.CONNECTION_ERRORS):
                await queries.record_failure(
                    self._pool,
                    request=request,
                    outcome=RequestOutcome.UNKNOWN,
                    http_status=None,
                    error=str(failure),
                    backoff_s=self._backoff_s,
                    backoff_max_s=self._backoff_max_s,
                    latency_ms=None,
                    sends=1,
                )

    def _count(self, outcome: RequestOutcome, counts: Counter[str]) -> None:
        self._metrics.requests.labels(outcome.value).inc()
        self.report.batches += 1
        self.report.outcomes.update(counts)
