"""The dialing worker service: listen, dispatch, round robin, completion, drain, stop.

A worker runs `concurrency` dispatchers. Each takes the next running campaign with due contacts
(round robin), claims a batch of it and takes it through dialing.BatchDialer (slot → write ahead
→ send → record), then the next. New work wakes the dispatchers through LISTEN/NOTIFY, with
polling as a fallback. Campaigns with nothing left to dial are completed. On stop (SIGTERM),
requests in flight finish and are recorded and claims not sent are given back; with `drain`,
the worker stops by itself once no running campaign has work left.

Any number of workers, on any number of hosts, share the rate limits and the contacts through
Postgres (see campaign/ratelimit.py and campaign/dialing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from campaign import db, queries
from campaign.cancellation import cancel_queued_outside_window
from campaign.config import Settings
from campaign.dialing import BatchDialer, BatchEnd, DialingConfig, Throttled, Waiting
from campaign.metrics import Metrics
from campaign.models import Campaign
from campaign.plivo import PlivoClient, PlivoError
from campaign.ratelimit import AccountLimits, RequestPacer
from campaign.recording import DialingReport

logger = logging.getLogger(__name__)

WORK_CHANNEL = "campaign_work"
# Room for more calls: 'calls' when calls ended under a cap of concurrent calls (the callbacks
# send it), 'priority' when a campaign of higher priority stopped wanting the account's calls.
ROOM_CHANNEL = "campaign_room"
# After Plivo refused a batch for the account's concurrent calls, dial again at the next hangup,
# or after this long without one (calls of untracked campaigns end unheard).
CONCURRENCY_REFUSAL_WAIT_S = 5.0
# How often a worker forgets the calls placed more than a day ago (caps of calls per number).
PRUNE_INTERVAL_S = 60.0

# What a worker did: a name for what its run returns.
WorkerReport = DialingReport


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
    # After this many requests in a row whose fate is unknown, pause the campaigns (0: never).
    pause_after_unknown: int = 3
    # Calls placed to one number by every campaign in the previous 24 h, at most (None: no cap).
    max_calls_per_number_per_day: int | None = None
    # Calls of the account live at once, at most (None: no cap).
    account_max_concurrent_calls: int | None = None
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
            pause_after_unknown=settings.pause_after_unknown_requests,
            max_calls_per_number_per_day=settings.max_calls_per_number_per_day or None,
            account_max_concurrent_calls=settings.account_max_concurrent_calls or None,
            campaign_ids=campaign_ids,
        )

    @property
    def account_limits(self) -> AccountLimits:
        return AccountLimits(
            auth_id=self.auth_id,
            calls_per_second=self.account_cps,
            requests_per_window=self.api_requests_per_window,
            window_s=self.api_window_s,
        )

    @property
    def dialing(self) -> DialingConfig:
        return DialingConfig(
            worker_id=self.worker_id,
            lease_s=self.lease_s,
            pace_window_s=self.pace_window_s,
            backoff_s=self.backoff_s,
            backoff_max_s=self.backoff_max_s,
            record_for_s=max(self.lease_s, self.stop_timeout_s),
            pause_after_unknown=self.pause_after_unknown,
            max_calls_per_number_per_day=self.max_calls_per_number_per_day,
            account_max_concurrent_calls=self.account_max_concurrent_calls,
            campaign_ids=self.campaign_ids,
        )


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
        self._config = config
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._drained = asyncio.Event()
        self._dialer = BatchDialer(
            pool, client, config.dialing, config.account_limits, metrics or Metrics(), self._stop
        )
        self._client = client
        self._pacer = RequestPacer(pool, config.account_limits)
        self._pruned_at = -1e9
        self._campaigns: list[Campaign] = []
        self._campaigns_read_at = -1e9
        self._refresh_lock = asyncio.Lock()
        self._next_campaign = 0
        # Campaigns whose own cap has no slot yet: not claimed before then (monotonic clock);
        # and of those, the ones an event wakes earlier (campaign_room).
        self._not_before: dict[int, float] = {}
        self._waiting_for: dict[int, Waiting] = {}
        self._idle: set[int] = set()
        self._completion_checked_at = -1e9

    @property
    def report(self) -> WorkerReport:
        return self._dialer.report

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
        sweeper = asyncio.create_task(self._sweep(), name="sweep")
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
                await self._dialer.abandon_in_flight()
        finally:
            self._stop.set()
            helpers: list[asyncio.Task[Any]] = [
                listener,
                sweeper,
                stop_waiter,
                drained_waiter,
                *dispatchers,
            ]
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        logger.info("worker %s stopped: %s", self._config.worker_id, self.report.summary())
        return self.report

    # --- waking up ------------------------------------------------------------------------------

    def _notified(self, *args: Any) -> None:
        # LISTEN delivers (connection, pid, channel, payload): the campaign with new work, which
        # is claimed at once even if it was told to wait (a resume, a load, a redial).
        if len(args) == 4 and str(args[3]).isdigit():
            self._not_before.pop(int(args[3]), None)
        self._campaigns_read_at = -1e9
        self._wake.set()

    def _room(self, *args: Any) -> None:
        # LISTEN delivers (connection, pid, channel, payload): 'calls' or 'priority'. The
        # campaigns waiting for that are claimed again at once.
        waiting = Waiting.CALLS if len(args) == 4 and args[3] == "calls" else Waiting.PRIORITY
        woken = [
            campaign_id for campaign_id, reason in self._waiting_for.items() if reason == waiting
        ]
        for campaign_id in woken:
            self._not_before.pop(campaign_id, None)
            del self._waiting_for[campaign_id]
        if woken:
            self._wake.set()

    def _wait_for(self, campaign_id: int, wait_s: float, waiting: Waiting) -> None:
        """Claim `campaign_id` again in `wait_s`, or when what it waits for comes."""
        self._not_before[campaign_id] = time.monotonic() + wait_s
        if waiting == Waiting.TIME:
            self._waiting_for.pop(campaign_id, None)
        else:
            self._waiting_for[campaign_id] = waiting

    async def _listen(self) -> None:
        """LISTEN for new work; on a lost connection, reconnect (polling covers the gap)."""
        while not self._stop.is_set():
            try:
                async with self._pool.acquire() as connection:
                    lost = asyncio.Event()
                    connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                    await connection.add_listener(WORK_CHANNEL, self._notified)
                    await connection.add_listener(ROOM_CHANNEL, self._room)
                    try:
                        while not lost.is_set() and not connection.is_closed():
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(
                                    lost.wait(), self._config.poll_interval_s * 5
                                )
                    finally:
                        # A connection the server ended may already be back in the pool.
                        with contextlib.suppress(*db.CONNECTION_ERRORS):
                            if not connection.is_closed():
                                await connection.remove_listener(WORK_CHANNEL, self._notified)
                                await connection.remove_listener(ROOM_CHANNEL, self._room)
                if lost.is_set():
                    logger.warning("the connection listening for work was lost; reconnecting")
            except db.CONNECTION_ERRORS as error:
                logger.warning("listening for work: %s; retrying", error)
            await self._sleep(self._config.poll_interval_s)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early on a notification or a stop."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))

    # --- leases -----------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Every poll interval, whatever else happens: give back claims stranded while the
        database was away; recover every worker's expired leases (a dead worker's claimed
        contacts go back to pending, its sending ones become unknown), so that nothing waits for
        a claim to be recovered; expire what campaigns past their end_at did not dial; and
        cancel at Plivo the queued calls whose callee's window has closed."""
        while not self._stop.is_set():
            try:
                await self._sweep_once()
            except db.DATABASE_ERRORS as error:
                logger.debug("sweeping leases: %s; trying again", error)
            except PlivoError as error:
                logger.warning("cancelling queued calls outside their window: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._config.poll_interval_s)

    async def _sweep_once(self) -> None:
        await self._dialer.release_stranded()
        recovered = await queries.recover_expired_leases(self._pool)
        if recovered:
            logger.warning(
                "recovered %d contacts whose worker's lease ran out (claimed: back to pending;"
                " sending: unknown, for `campaign reconcile`)",
                recovered,
            )
        expired = await queries.expire_ended_campaigns(self._pool)
        for campaign_id, count in expired.items():
            logger.info("campaign %d ended: %d contacts not dialled expired", campaign_id, count)
        if recovered or expired:
            await self._complete_finished(now_or_never=True)
            self._notified()
        await cancel_queued_outside_window(
            self._pool, self._client, self._pacer, self._config.campaign_ids
        )
        if time.monotonic() - self._pruned_at > PRUNE_INTERVAL_S:
            await queries.prune_number_calls(self._pool)
            self._pruned_at = time.monotonic()

    # --- choosing what to dial ------------------------------------------------------------------

    async def _campaign_to_dial(self) -> Campaign | float | None:
        """The next running campaign with due contacts, round robin; or, when every one waits
        for its own cap, how long until the first may be claimed again; None when none."""
        stale = time.monotonic() - self._campaigns_read_at > self._config.poll_interval_s
        # One dispatcher refreshes the list; the others keep dialling from the one they have.
        if (stale or not self._campaigns) and (
            not self._refresh_lock.locked() or not self._campaigns
        ):
            async with self._refresh_lock:
                if time.monotonic() - self._campaigns_read_at > self._config.poll_interval_s or (
                    not self._campaigns
                ):
                    self._campaigns = await queries.dialable_campaigns(
                        self._pool, self._config.campaign_ids
                    )
                    self._campaigns_read_at = time.monotonic()
        if not self._campaigns:
            return None
        now = time.monotonic()
        # Of the campaigns not waiting, those of the highest priority, round robin (the list is
        # in priority order): a lower one is claimed only while every higher one waits.
        ready = [
            campaign
            for campaign in self._campaigns
            if self._not_before.get(campaign.id, 0.0) <= now
        ]
        if ready:
            top = [campaign for campaign in ready if campaign.priority == ready[0].priority]
            self._next_campaign = (self._next_campaign + 1) % len(top)
            return top[self._next_campaign]
        return min(self._not_before.get(campaign.id, now) for campaign in self._campaigns) - now

    def _drop(self, campaign: Campaign) -> None:
        """Leave `campaign` out of the round robin until the list is read again."""
        self._campaigns = [known for known in self._campaigns if known.id != campaign.id]

    async def _dispatch(self, index: int, drain: bool) -> None:
        """One batch at a time, for as long as the worker runs."""
        while not self._stop.is_set():
            try:
                chosen = await self._campaign_to_dial()
                if isinstance(chosen, float):
                    # Every campaign waits (its own cap, its start, its callees' windows): sleep
                    # until the first may go, unless draining and nothing can be dialled now.
                    self._idle.add(index)
                    if drain and await self._drain_done():
                        self._drained.set()
                        return
                    await self._sleep(min(chosen, self._config.poll_interval_s))
                    continue
                campaign = chosen
                batch = await self._dialer.claim(campaign) if campaign is not None else None
                if isinstance(batch, Throttled):
                    # Looked at again within a poll interval at most: the wait was read on the
                    # database's clock, which this process only estimates. Waiting for a call to
                    # end, a hangup's NOTIFY wakes it: the poll is only the fallback.
                    poll_s = self._config.poll_interval_s
                    if batch.waiting == Waiting.CALLS:
                        poll_s *= 5
                    self._wait_for(batch.campaign.id, min(batch.wait_s, poll_s), batch.waiting)
                    continue
                if batch is None:
                    if campaign is not None:
                        self._drop(campaign)
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
                end = await self._dialer.dial(batch)
                if end == BatchEnd.DROP_CAMPAIGN:
                    self._drop(batch.campaign)
                elif end == BatchEnd.WAIT_FOR_CALLS:
                    # The account's limit at Plivo: every campaign waits for a call to end.
                    for known in self._campaigns:
                        self._wait_for(known.id, CONCURRENCY_REFUSAL_WAIT_S, Waiting.CALLS)
            except db.CONNECTION_ERRORS as error:
                logger.warning("database connection lost (%s); retrying", error)
                await self._sleep(self._config.poll_interval_s)
            except asyncpg.PostgresError as error:
                # A deadlock with another worker's lease recovery, a statement time-out, …: the
                # contacts involved keep their state and leases, so trying again is safe.
                logger.error("database error in dispatcher %d: %s; retrying", index, error)
                await self._sleep(self._config.poll_interval_s)

    # --- completion and drain -------------------------------------------------------------------

    async def _complete_finished(
        self, *, campaign_ids: list[int] | None = None, now_or_never: bool = False
    ) -> None:
        """Mark campaigns with nothing left to dial completed.

        Unless asked for given campaigns or `now_or_never`, at most once per poll interval.
        """
        now = time.monotonic()
        scope: tuple[int, ...] | list[int] | None = campaign_ids
        if campaign_ids is None:
            if (
                not now_or_never
                and now - self._completion_checked_at < self._config.poll_interval_s
            ):
                return
            self._completion_checked_at = now
            scope = self._config.campaign_ids
        wait_s = self._config.callback_wait_s
        async with self._pool.acquire() as connection, connection.transaction():
            locked = await queries.lock_finished_campaigns(
                connection, scope, callback_wait_s=wait_s
            )
            if locked:
                for name in await queries.complete_finished(
                    connection, locked, callback_wait_s=wait_s
                ):
                    logger.info("campaign %s completed", name)
            for name in await queries.reopen_unfinished(connection, scope):
                logger.warning("campaign %s had contacts left to dial; running again", name)

    async def _drain_done(self) -> bool:
        """True when every dispatcher is idle and no running campaign has work left."""
        if len(self._idle) < self._config.concurrency or self._dialer.has_requests_in_flight:
            return False
        await queries.recover_expired_leases(self._pool)
        work_left = await queries.work_left(
            self._pool, self._config.campaign_ids, callback_wait_s=self._config.callback_wait_s
        )
        if not work_left:
            await self._complete_finished(now_or_never=True)
        return not work_left
