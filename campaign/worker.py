"""The dialing worker: claim → pace → write ahead → send → record, for any number of processes.

Every step is one database round trip per batch. Rate limits live in Postgres (the
`claim_dial_request` function), so every worker on every host shares them. A request is written
ahead before it is sent (by the claim itself when the batch's slot has come, else by a second
statement once it comes), so a crash at any point leaves each contact either never sent
(`claimed`, back to `pending` when its lease runs out) or maybe sent (`sending`, then `unknown`,
never re-sent without reconciling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from campaign import db, queries
from campaign.config import Settings, request_rate_per_s
from campaign.metrics import Metrics
from campaign.models import Campaign
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

logger = logging.getLogger(__name__)

WORK_CHANNEL = "campaign_work"
INVALID_NUMBER_ERROR = "Plivo refused the number as invalid"
# A batch must leave at least this long before the end of the clock second its calls count in.
SEND_GUARD_S = 0.02
# A batch whose rate-limit slot is at most this far away is written ahead by its claim.
WRITE_AHEAD_WITHIN_S = 0.01
# Database errors that mean "the connection or server went away": retried, never fatal.
# (InternalClientError: see db.DATABASE_ERRORS.)
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


# Database errors that undo only the statement that hit them (a deadlock with another worker's
# lease recovery or a callback batch): running the same statement again is safe.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


class RetriesStopped(Exception):
    """Raised between retries of a request Plivo refused, to give up on it (never a PlivoError,
    so the client does not retry it). The request placed no call; its attempt is not counted."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def default_worker_id() -> str:
    """host:pid, unique among live workers and readable in the contacts table."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What the worker needs from Settings."""

    worker_id: str
    auth_id: str
    concurrency: int = 4
    lease_s: float = 180.0
    poll_interval_s: float = 1.0
    backoff_s: float = 30.0
    backoff_max_s: float = 3600.0
    pace_window_s: float = 0.1
    stop_timeout_s: float = 30.0
    account_cps: float = 2.0
    api_requests_per_window: int = 300
    api_window_s: float = 5.0
    # How long a redialable call waits for its hangup before its campaign may complete.
    callback_wait_s: float = 3600.0
    # Dial only these campaigns (None: every running campaign).
    campaign_ids: tuple[int, ...] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, campaign_ids: tuple[int, ...] | None = None
    ) -> WorkerConfig:
        if settings.plivo_auth_id is None:
            raise ValueError("PLIVO_AUTH_ID is not set")
        return cls(
            worker_id=settings.worker_id or default_worker_id(),
            auth_id=settings.plivo_auth_id,
            concurrency=settings.worker_concurrency,
            lease_s=settings.worker_lease_s,
            poll_interval_s=settings.worker_poll_interval_s,
            backoff_s=settings.worker_backoff_s,
            backoff_max_s=settings.worker_backoff_max_s,
            pace_window_s=settings.worker_pace_window_s,
            stop_timeout_s=settings.worker_stop_timeout_s,
            account_cps=settings.account_cps,
            api_requests_per_window=settings.api_requests_per_window,
            api_window_s=settings.api_window_s,
            callback_wait_s=settings.callback_wait_s,
            campaign_ids=campaign_ids,
        )

    def limiters(self, campaign: Campaign) -> tuple[list[str], list[float], list[str], list[float]]:
        """The rate limiters a batch of `campaign` draws from: (call names, rates, request …)."""
        call_names: list[str] = []
        call_rates: list[float] = []
        if self.account_cps > 0:
            call_names.append(f"account:{self.auth_id}:calls")
            call_rates.append(self.account_cps)
        if campaign.calls_per_second is not None:
            call_names.append(f"campaign:{campaign.id}:calls")
            call_rates.append(campaign.calls_per_second)
        request_names: list[str] = []
        request_rates: list[float] = []
        request_rate = request_rate_per_s(self.api_requests_per_window, self.api_window_s)
        if request_rate is not None:
            request_names.append(f"account:{self.auth_id}:requests")
            request_rates.append(request_rate)
        return call_names, call_rates, request_names, request_rates


@dataclass(slots=True)
class WorkerReport:
    """What a worker did, for the log line at exit and for `--drain` callers."""

    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        return f"{self.batches} batches ({counts or 'nothing dialled'})"


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    """Contacts claimed for one request, and when (database clock) the limits allow sending."""

    campaign: Campaign
    contact_ids: list[int]
    destinations: list[str]
    send_at_s: float
    db_now_s: float
    claimed_at_monotonic: float
    # Whether calls-per-second limits apply, so that the batch must go out in its second.
    paced: bool = False
    # Set when the claim wrote the request ahead (its contacts are `sending` already).
    dial_request_id: int | None = None


def call_parameters(campaign: Campaign) -> dict[str, object]:
    """The Make-a-call parameters shared by every destination of a campaign's batches."""
    return {
        "from": campaign.from_number,
        "answer_url": campaign.answer_url,
        **campaign.call_parameters,
    }


class Worker:
    """Dials the pending contacts of running campaigns until stopped (or drained)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: PlivoClient,
        config: WorkerConfig,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics or Metrics()
        self._client = client
        self._config = config
        self._report = WorkerReport()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._drained = asyncio.Event()
        self._campaigns: list[Campaign] = []
        self._campaigns_read_at = -1e9
        self._refresh_lock = asyncio.Lock()
        self._next_campaign = 0
        self._idle: set[int] = set()
        self._completion_checked_at = -1e9
        self._in_flight: dict[int, tuple[int, list[int]]] = {}

    @property
    def _campaign_filter(self) -> list[int] | None:
        ids = self._config.campaign_ids
        return None if ids is None else list(ids)

    @property
    def report(self) -> WorkerReport:
        return self._report

    async def run(self, *, drain: bool = False, stop: asyncio.Event | None = None) -> WorkerReport:
        """Dial until `stop` is set (or, with `drain`, until no running campaign has work left)."""
        external_stop = stop or asyncio.Event()
        logger.info(
            "worker %s started (concurrency %d, account cps %g)",
            self._config.worker_id,
            self._config.concurrency,
            self._config.account_cps,
        )
        listener = asyncio.create_task(self._listen(), name="listen")
        dispatchers = [
            asyncio.create_task(self._dispatch(index, drain), name=f"dispatch-{index}")
            for index in range(self._config.concurrency)
        ]
        stop_waiter = asyncio.create_task(external_stop.wait())
        drained_waiter = asyncio.create_task(self._drained.wait())
        try:
            await asyncio.wait(
                [stop_waiter, drained_waiter, *dispatchers], return_when=asyncio.FIRST_COMPLETED
            )
            for task in dispatchers:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]  # a bug: surface it
            self._stop.set()
            self._wake.set()
            # Requests in flight finish and are recorded; claims not sent are given back.
            _done, pending = await asyncio.wait(dispatchers, timeout=self._config.stop_timeout_s)
            if pending:
                logger.error(
                    "stopping: %d batches still in flight after %gs; their contacts are marked"
                    " unknown",
                    len(pending),
                    self._config.stop_timeout_s,
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await self._abandon_in_flight()
        finally:
            self._stop.set()
            helpers: list[asyncio.Task[Any]] = [listener, stop_waiter, drained_waiter, *dispatchers]
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        logger.info("worker %s stopped: %s", self._config.worker_id, self._report.summary())
        return self._report

    # --- waking up ------------------------------------------------------------------------------

    def _notified(self, *_args: Any) -> None:
        self._campaigns_read_at = -1e9
        self._wake.set()

    async def _listen(self) -> None:
        """LISTEN for new work; on a lost connection, reconnect (polling covers the gap)."""
        while not self._stop.is_set():
            try:
                async with self._pool.acquire() as connection:
                    lost = asyncio.Event()
                    connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                    await connection.add_listener(WORK_CHANNEL, self._notified)
                    try:
                        while not lost.is_set() and not connection.is_closed():
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(
                                    lost.wait(), self._config.poll_interval_s * 5
                                )
                    finally:
                        # A connection the server ended may already be back in the pool.
                        with contextlib.suppress(*CONNECTION_ERRORS):
                            if not connection.is_closed():
                                await connection.remove_listener(WORK_CHANNEL, self._notified)
                if lost.is_set():
                    logger.warning("the connection listening for work was lost; reconnecting")
            except CONNECTION_ERRORS as error:
                logger.warning("listening for work: %s; retrying", error)
            await self._sleep(self._config.poll_interval_s)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early on a notification or a stop."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))

    # --- choosing what to dial ------------------------------------------------------------------

    async def _campaign_to_dial(self) -> Campaign | None:
        """The next running campaign with due contacts, round robin."""
        stale = time.monotonic() - self._campaigns_read_at > self._config.poll_interval_s
        # One dispatcher refreshes the list; the others keep dialling from the one they have.
        if (stale or not self._campaigns) and (
            not self._refresh_lock.locked() or not self._campaigns
        ):
            async with self._refresh_lock:
                if time.monotonic() - self._campaigns_read_at > self._config.poll_interval_s or (
                    not self._campaigns
                ):
                    records = await self._pool.fetch(
                        queries.sql("dialable_campaigns"), self._campaign_filter
                    )
                    self._campaigns = [Campaign.from_record(record) for record in records]
                    self._campaigns_read_at = time.monotonic()
        if not self._campaigns:
            return None
        self._next_campaign = (self._next_campaign + 1) % len(self._campaigns)
        return self._campaigns[self._next_campaign]

    def _exhausted(self, campaign: Campaign) -> None:
        self._campaigns = [known for known in self._campaigns if known.id != campaign.id]

    async def _dispatch(self, index: int, drain: bool) -> None:
        """One batch at a time, for as long as the worker runs."""
        while not self._stop.is_set():
            try:
                campaign = await self._campaign_to_dial()
                batch = await self._claim(campaign) if campaign is not None else None
                if batch is None:
                    if campaign is not None:
                        self._exhausted(campaign)
                        await self._complete_finished(campaign_ids=[campaign.id])
                        continue
                    self._idle.add(index)
                    await self._complete_finished()
                    if drain and await self._drain_done():
                        self._drained.set()
                        return
                    await self._sleep(self._config.poll_interval_s)
                    continue
                self._idle.discard(index)
                await self._dial(index, batch)
            except CONNECTION_ERRORS as error:
                logger.warning("database connection lost (%s); retrying", error)
                await self._sleep(self._config.poll_interval_s)
            except asyncpg.PostgresError as error:
                # A deadlock with another worker's lease recovery, a statement time-out, …: the
                # contacts involved keep their state and leases, so trying again is safe.
                logger.error("database error in dispatcher %d: %s; retrying", index, error)
                await self._sleep(self._config.poll_interval_s)

    async def _complete_finished(
        self, *, campaign_ids: list[int] | None = None, now_or_never: bool = False
    ) -> None:
        """Mark campaigns with nothing left to dial completed.

        Unless asked for given campaigns or `now_or_never`, at most once per poll interval.
        """
        now = time.monotonic()
        if campaign_ids is None:
            if (
                not now_or_never
                and now - self._completion_checked_at < self._config.poll_interval_s
            ):
                return
            self._completion_checked_at = now
            campaign_ids = self._campaign_filter
        async with self._pool.acquire() as connection, connection.transaction():
            wait_s = self._config.callback_wait_s
            locked = await connection.fetch(
                queries.sql("lock_finished_campaigns"), campaign_ids, wait_s
            )
            if locked:
                finished = await connection.fetch(
                    queries.sql("complete_finished"), [record["id"] for record in locked], wait_s
                )
                for record in finished:
                    logger.info("campaign %s completed", record["name"])
            for record in await connection.fetch(queries.sql("reopen_unfinished"), campaign_ids):
                logger.warning(
                    "campaign %s had contacts left to dial; running again", record["name"]
                )

    async def _drain_done(self) -> bool:
        """True when every dispatcher is idle and no running campaign has work left."""
        if len(self._idle) < self._config.concurrency or self._in_flight:
            return False
        await self._pool.fetchval(queries.sql("recover_expired_leases"))
        work_left: bool = await self._pool.fetchval(
            queries.sql("work_left"), self._campaign_filter, self._config.callback_wait_s
        )
        if not work_left:
            await self._complete_finished(now_or_never=True)
        return not work_left

    async def _claim(self, campaign: Campaign) -> ClaimedBatch | None:
        call_names, call_rates, request_names, request_rates = self._config.limiters(campaign)
        records = await self._pool.fetch(
            queries.sql("claim_dial_request"),
            campaign.id,
            self._config.worker_id,
            campaign.batch_size,
            self._config.lease_s,
            self._config.pace_window_s,
            call_names,
            call_rates,
            request_names,
            request_rates,
            WRITE_AHEAD_WITHIN_S,
        )
        if not records:
            return None
        return ClaimedBatch(
            campaign=campaign,
            contact_ids=[record["contact_id"] for record in records],
            destinations=[record["destination"] for record in records],
            send_at_s=records[0]["send_at"],
            db_now_s=records[0]["db_now"],
            claimed_at_monotonic=time.monotonic(),
            paced=bool(call_names),
            dial_request_id=records[0]["dial_request_id"],
        )

    # --- one batch ------------------------------------------------------------------------------

    async def _dial(self, index: int, batch: ClaimedBatch) -> None:
        # Wait for the batch's slot, on the database's clock as measured at the claim.
        delay_s = batch.send_at_s - batch.db_now_s - (time.monotonic() - batch.claimed_at_monotonic)
        self._metrics.rate_limit_wait.observe(max(delay_s, 0.0))
        if delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay_s)
        written: tuple[int, list[int], list[str]] | None
        if batch.dial_request_id is not None:
            # Written ahead by the claim.
            written = (batch.dial_request_id, batch.contact_ids, batch.destinations)
        elif self._stop.is_set():
            await self._release(batch.contact_ids)
            return
        else:
            written = await self._write_ahead(batch)
        if written is None:
            return
        request_id, contact_ids, destinations = written
        if self._stop.is_set():
            await self._unsend(request_id, contact_ids, "the worker stopped before sending")
            return
        if batch.paced and self._missed_its_second(batch):
            # Sent now, its calls would land in a second whose slots belong to other batches.
            await self._unsend(
                request_id, contact_ids, "missed the second of its rate-limit slots; not sent"
            )
            logger.info(
                "campaign %s: a batch missed its second; claimed again", batch.campaign.name
            )
            return
        self._in_flight[index] = (request_id, contact_ids)
        # Left in _in_flight if cancelled at stop: run() then marks these contacts unknown. On
        # any other error the contacts stay `sending` and their lease makes them unknown.
        try:
            await self._send_and_record(batch.campaign, request_id, contact_ids, destinations)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._in_flight.pop(index, None)
            raise
        self._in_flight.pop(index, None)

    async def _write_ahead(self, batch: ClaimedBatch) -> tuple[int, list[int], list[str]] | None:
        """Record the request and mark its contacts `sending`; None when none may be sent."""
        try:
            rows = await self._pool.fetch(
                queries.sql("write_ahead"),
                batch.contact_ids,
                self._config.worker_id,
                batch.campaign.id,
                self._config.lease_s,
            )
        except asyncpg.PostgresError:
            # Nothing was written ahead, so nothing is sent: give the claims back.
            with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                await self._release(batch.contact_ids)
            raise
        if len(rows) < len(batch.contact_ids):
            # Paused or cancelled since the claim, or a lease recovered by another worker.
            sent_ids = {row["contact_id"] for row in rows}
            await self._release([cid for cid in batch.contact_ids if cid not in sent_ids])
        if not rows:
            self._exhausted(batch.campaign)
            return None
        return (
            rows[0]["dial_request_id"],
            [row["contact_id"] for row in rows],
            [row["destination"] for row in rows],
        )

    async def _unsend(
        self,
        request_id: int,
        contact_ids: list[int],
        reason: str,
        *,
        sends: int = 0,
        latency_ms: int | None = None,
    ) -> None:
        """A request that placed no call and counts no attempt (never sent, or given up between
        retries): its contacts go back as if never claimed."""
        await self._retrying_write(
            queries.sql("unsend"), request_id, contact_ids, reason, sends, latency_ms
        )

    async def _wait_for_slots(self, campaign: Campaign, calls: int) -> None:
        """Take fresh rate-limit slots for `calls` calls and one request, and wait for them."""
        call_names, call_rates, request_names, request_rates = self._config.limiters(campaign)
        if not call_names and not request_names:
            return
        row = await self._pool.fetchrow(
            queries.sql("reserve_dial_slots"),
            call_names,
            call_rates,
            request_names,
            request_rates,
            calls,
        )
        received = time.monotonic()
        if row is not None:
            delay_s = row["send_at"] - row["db_now"] - (time.monotonic() - received)
            self._metrics.rate_limit_wait.observe(max(delay_s, 0.0))
            if delay_s > 0:
                await asyncio.sleep(delay_s)

    @staticmethod
    def _missed_its_second(batch: ClaimedBatch) -> bool:
        """Whether it is now (database clock) too late to send in the second of its slots."""
        now_s = batch.db_now_s + (time.monotonic() - batch.claimed_at_monotonic)
        return now_s >= math.floor(batch.send_at_s) + 1 - SEND_GUARD_S

    async def _send_and_record(
        self,
        campaign: Campaign,
        request_id: int,
        contact_ids: list[int],
        destinations: list[str],
    ) -> None:
        started = time.monotonic()
        self._metrics.destinations.inc(len(destinations))

        sends = 0

        async def why_give_up() -> str | None:
            """Plivo refused the request (not placed): it is retried only while the campaign
            still runs and the worker is not stopping, so that pause, cancel and SIGTERM are not
            held up by a retry budget."""
            if self._stop.is_set():
                return "the worker is stopping"
            try:
                status = await self._pool.fetchval(queries.sql("campaign_status"), campaign.id)
            except db.DATABASE_ERRORS as error:
                logger.warning("reading campaign %s's status: %s", campaign.name, error)
                return None  # cannot tell: retry as if nothing changed
            return None if status == "running" else f"the campaign is {status}"

        async def new_slots() -> None:
            nonlocal sends
            sends += 1
            reason = await why_give_up()
            if reason is not None:
                raise RetriesStopped(reason, attempts=sends)
            # A retry is a new request: it waits for its own share of the global limits.
            await self._wait_for_slots(campaign, len(destinations))

        async def back_off(seconds: float) -> None:
            # Wait out the back-off, but look every second whether to give up (new_slots, right
            # after, then does).
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), min(left, 1.0))
                if time.monotonic() < deadline and await why_give_up() is not None:
                    return

        try:
            result = await self._client.make_call(
                call_parameters(campaign), destinations, before_retry=new_slots, sleep=back_off
            )
        except RetriesStopped as stopped:
            latency_ms = round((time.monotonic() - started) * 1000)
            reason = f"not sent: {stopped}; retries given up after {stopped.attempts} refused"
            await self._unsend(
                request_id, contact_ids, reason, sends=stopped.attempts, latency_ms=latency_ms
            )
            self._count("not_sent", Counter({"not_sent": len(contact_ids)}), latency_ms)
            logger.warning(
                "campaign %s: batch of %d %s; %d ms; the attempt is not counted",
                campaign.name,
                len(contact_ids),
                reason,
                latency_ms,
            )
            return
        except PlivoError as error:
            latency_ms = round((time.monotonic() - started) * 1000)
            await self._record_failure(campaign, request_id, contact_ids, error, latency_ms)
            return
        except ValueError as error:
            # The request could not even be built (so it was not sent).
            latency_ms = round((time.monotonic() - started) * 1000)
            rejected = RequestRejected(f"not sent: {error}", error=str(error))
            await self._record_failure(campaign, request_id, contact_ids, rejected, latency_ms)
            return
        latency_ms = round((time.monotonic() - started) * 1000)
        await self._record_reply(campaign, request_id, contact_ids, result, latency_ms)

    async def _record_reply(
        self,
        campaign: Campaign,
        request_id: int,
        contact_ids: Sequence[int],
        result: MakeCallResult,
        latency_ms: int,
    ) -> None:
        statuses: list[str] = []
        errors: list[str | None] = []
        for outcome in result.destinations:
            if outcome.state == DestinationState.INVALID:
                statuses.append("failed")
                errors.append(INVALID_NUMBER_ERROR)
            else:
                statuses.append(outcome.state.value)
                errors.append(None)
        await self._retrying_write(
            queries.sql("record_reply"),
            request_id,
            list(contact_ids),
            statuses,
            [outcome.request_uuid for outcome in result.destinations],
            errors,
            result.api_id,
            result.message,
            result.http_status,
            latency_ms,
            "queued" if result.queued else "fired",
            list(result.request_uuids),
            result.mapped,
            result.attempts,
        )
        counts = Counter(statuses)
        self._count("queued" if result.queued else "fired", counts, latency_ms)
        logger.info(
            "campaign %s: batch of %d: %s; %d ms%s",
            campaign.name,
            len(contact_ids),
            ", ".join(f"{status} {count}" for status, count in sorted(counts.items())),
            latency_ms,
            "" if result.mapped else "; request_uuids not mapped to destinations (unsettled)",
        )

    async def _record_failure(
        self,
        campaign: Campaign,
        request_id: int,
        contact_ids: Sequence[int],
        error: PlivoError,
        latency_ms: int,
    ) -> None:
        if isinstance(error, NotSent):
            outcome = "not_sent"
        elif isinstance(error, AccountProblem):
            outcome = "account_problem"
        elif isinstance(error, RequestRejected):
            outcome = "rejected"
        else:
            outcome = "unknown"
        message = str(error)
        await self._retrying_write(
            queries.sql("record_failure"),
            request_id,
            list(contact_ids),
            outcome,
            error.http_status,
            message,
            self._config.backoff_s,
            self._config.backoff_max_s,
            latency_ms,
            error.attempts,
        )
        self._count(outcome, Counter({outcome: len(contact_ids)}), latency_ms)
        if outcome == "account_problem":
            self._exhausted(campaign)
            logger.error(
                "campaign %s paused: Plivo refused the account (%s); check PLIVO_AUTH_ID and "
                "PLIVO_AUTH_TOKEN, then `campaign resume %s`",
                campaign.name,
                message,
                campaign.name,
            )
        elif isinstance(error, FateUnknown):
            logger.error(
                "campaign %s: batch of %d has an unknown fate (%s); %d ms; its contacts are"
                " `unknown` and will not be dialled again until `campaign reconcile`",
                campaign.name,
                len(contact_ids),
                message,
                latency_ms,
            )
        else:
            logger.warning(
                "campaign %s: batch of %d %s: %s; %d ms",
                campaign.name,
                len(contact_ids),
                "not sent" if outcome == "not_sent" else "rejected",
                message,
                latency_ms,
            )

    async def _retrying_write(self, sql: str, *arguments: object) -> asyncpg.Record | None:
        """Run a write that must land (it records what Plivo said), through lost connections."""
        deadline = time.monotonic() + max(self._config.lease_s, self._config.stop_timeout_s)
        delay_s = 0.1
        while True:
            try:
                return await self._pool.fetchrow(sql, *arguments)
            except (*CONNECTION_ERRORS, *RETRYABLE_ERRORS) as error:
                if time.monotonic() > deadline:
                    raise
                logger.warning("recording a reply: %s; retrying in %.1fs", error, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _release(self, contact_ids: list[int]) -> None:
        if contact_ids:
            await self._pool.execute(
                queries.sql("release_claims"), contact_ids, self._config.worker_id
            )

    async def _abandon_in_flight(self) -> None:
        """Requests cut off at stop may have placed calls: their contacts become unknown."""
        for request_id, contact_ids in list(self._in_flight.values()):
            failure = FateUnknown("the worker stopped before Plivo replied")
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._pool.fetchrow(
                    queries.sql("record_failure"),
                    request_id,
                    contact_ids,
                    "unknown",
                    None,
                    str(failure),
                    self._config.backoff_s,
                    self._config.backoff_max_s,
                    None,
                    1,
                )
        self._in_flight.clear()

    def _count(self, outcome: str, counts: Counter[str], latency_ms: int | None) -> None:
        self._metrics.requests.labels(outcome).inc()
        if latency_ms is not None:
            self._metrics.request_latency.observe(latency_ms / 1000)
        self._report.batches += 1
        self._report.outcomes.update(counts)
