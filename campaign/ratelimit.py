"""Rate limits shared by every worker on every host, kept in Postgres.

A Plivo account allows so many calls per second (CPS; over it, calls are queued at Plivo) and
300 API requests per 5 s (over it, 429). A campaign may add its own cap on calls per second.
Each limit is a row of `rate_limiters`, named here (a caller ID's by the claim too); the SQL
functions of sql/schema.sql (section 4, "Rate limits, …") hand out its slots on the database's
clock:

- `plan_dial_slots` / `charge_dial_slots`: a grant of calls, used by `claim_batch`, which
  claims a batch of contacts and its slots in one statement. A grant never leaves the clock
  second it starts in, so no second holds more calls than the rate, and it carries at most
  `pace_window_s` of calls, so calls are spread across each second. A campaign's own cap only
  ever delays that campaign: a claim never holds the shared limiters (the account's calls and
  requests) waiting for it, so what one campaign does not use flows to the others.
- `reserve_retry_slots`: new slots for a whole batch sent again after Plivo refused it, by the
  same rule.
- `reserve_request_slot`: one API request outside the batches (look-ups, cancels).

A caller ID of a pool may have its own limiter (`caller_id:<number>:calls`), which the claim
adds once it has chosen the caller ID. This module names the limiters
(`AccountLimits.for_campaign`), waits for slots, and decides
when a batch has missed the second its slots were granted in (it is then given back unsent:
sent late, its calls would land in a second whose slots belong to other batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import asyncpg

from campaign import queries
from campaign.config import Settings
from campaign.dbclock import ClockSample, DatabaseClock, Durations
from campaign.models import Campaign, Limit
from campaign.specs import PacingChange

# A batch must leave at least this long before the end of the clock second its calls count in.
SEND_GUARD_S = 0.02
# A claim whose campaign's own cap puts its slot more than this after the shared limiters' next
# one claims nothing (it would hold every campaign's slots idle) and comes back at its slot.
SHARED_SLOT_SLACK_S = 0.02
# A batch whose slot is at least this close is written ahead by its claim (next to Postgres; a
# far worker writes ahead earlier, SlotClock.write_ahead_within_s).
WRITE_AHEAD_WITHIN_S = 0.01
# Preparing a batch's request starts this much earlier than it usually takes (the event loop's
# own delays), and never more than MAX_LOOKAHEAD_S before its slot.
PREPARE_MARGIN_S = 0.01
MAX_LOOKAHEAD_S = 2.0
# A batch is never sent in the first moments of its slot's second (SlotTiming.fire_at_s).
FIRE_EDGE_MIN_S = 0.001
FIRE_EDGE_MAX_S = 0.03
# Readings of the database's clock a worker takes before its first claim.
CLOCK_READINGS = 4


def request_rate_per_s(per_window: int, window_s: float) -> float | None:
    """Requests per second that never put more than `per_window` in any window of `window_s`.

    Requests spaced exactly window_s / per_window apart would fit per_window + 1 in a closed
    window; one fewer per window leaves the margin. None: no limit (per_window 0).
    """
    if per_window <= 0:
        return None
    return max(per_window - 1, 1) / window_s


@dataclass(frozen=True, slots=True)
class Limiters:
    """The limiters one batch draws from: of calls, the account's (shared by every campaign)
    and the campaign's own cap; of API requests, the account's (Plivo's 300 per 5 s)."""

    shared_calls: tuple[Limit, ...] = ()
    own_calls: tuple[Limit, ...] = ()
    requests: tuple[Limit, ...] = ()

    @property
    def calls(self) -> tuple[Limit, ...]:
        return self.shared_calls + self.own_calls

    @property
    def shared(self) -> Limiters:
        """Only those shared with other campaigns."""
        return Limiters(shared_calls=self.shared_calls, requests=self.requests)

    @property
    def own(self) -> Limiters:
        """Only the campaign's own."""
        return Limiters(own_calls=self.own_calls)

    @property
    def paced(self) -> bool:
        """Whether calls per second are limited, so that a batch must go out in its second."""
        return bool(self.shared_calls or self.own_calls)

    @property
    def unlimited(self) -> bool:
        return not (self.shared_calls or self.own_calls or self.requests)


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """A Plivo account's limits (0: none, for simulators), shared by every worker through the
    database under names built from its auth id."""

    auth_id: str
    calls_per_second: float = 2.0
    requests_per_window: int = 300
    window_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings, auth_id: str) -> AccountLimits:
        return cls(
            auth_id=auth_id,
            calls_per_second=settings.account_cps,
            requests_per_window=settings.api_requests_per_window,
            window_s=settings.api_window_s,
        )

    @property
    def request_limiter(self) -> Limit | None:
        """The account's API request limiter; None when requests are not limited."""
        rate = request_rate_per_s(self.requests_per_window, self.window_s)
        if rate is None:
            return None
        return Limit(f"account:{self.auth_id}:requests", rate)

    def for_campaign(self, campaign: Campaign, caller_id: str | None = None) -> Limiters:
        """The limiters a batch of `campaign` draws from; with `caller_id`, its limiter too (the
        claim adds it itself: claim_batch chooses the caller ID)."""
        shared: tuple[Limit, ...] = ()
        if self.calls_per_second > 0:
            shared = (Limit(f"account:{self.auth_id}:calls", self.calls_per_second),)
        own: tuple[Limit, ...] = ()
        if campaign.calls_per_second is not None:
            own = (Limit(campaign_calls_limiter(campaign.id), campaign.calls_per_second),)
        rate = campaign.calls_per_second_per_caller_id
        if caller_id is not None and rate is not None:
            own += (Limit(caller_id_calls_limiter(caller_id), rate),)
        request = self.request_limiter
        return Limiters(shared, own, () if request is None else (request,))


@dataclass(frozen=True, slots=True)
class SlotTiming:
    """A grant's slot on the database's clock, and the worker's estimate of that clock
    (campaign/dbclock.py), so that the database's "now" is told without asking it."""

    send_at_s: float
    clock: DatabaseClock

    @property
    def fire_at_s(self) -> float:
        """When to send, on the database's clock: the slot, but not in the first moments of its
        second, by as much as the clock's estimate may be off (half the least delayed round
        trip, between 1 and 30 ms). Many grants start on the very turn of a second (the one
        before was full); sent even a millisecond early, a grant's calls would land in the
        second before, beside its own full share. The end of the second is kept by the plan (a
        grant starts at least 50 ms before it) and by missed_its_second."""
        edge_s = min(max(self.clock.round_trip_s / 2, FIRE_EDGE_MIN_S), FIRE_EDGE_MAX_S)
        return max(self.send_at_s, math.floor(self.send_at_s) + edge_s)

    def seconds_until_slot(self) -> float:
        """How long until the batch should be sent (negative once that has passed)."""
        return self.clock.seconds_until(self.fire_at_s)

    def missed_its_second(self) -> bool:
        """Whether it is too late to send in the clock second of the slot."""
        return self.clock.now_s() >= math.floor(self.send_at_s) + 1 - SEND_GUARD_S


class ServerTimed(Protocol):
    """A statement's answer that says when the server answered (database clock) and how long it
    worked on it (queries.Claim, queries.Slot)."""

    @property
    def replied_at_s(self) -> float: ...

    @property
    def served_s(self) -> float: ...


Timed = TypeVar("Timed", bound=ServerTimed)


class SlotClock:
    """What a worker far from Postgres needs to send each batch at its slot: the database's
    clock, read across each claim's round trip (dbclock.DatabaseClock), and how long before a
    slot to start preparing its request (writing it ahead, or fencing a retry), from how long
    that took lately (dbclock.Durations), so that the request is ready when the slot comes.

    The look-ahead follows the measured round trip, never more than `max_lookahead_s` (a bound
    kept well under the lease: a request written ahead waits at most that long to be sent).
    """

    def __init__(self, *, max_lookahead_s: float = MAX_LOOKAHEAD_S) -> None:
        self.clock = DatabaseClock()
        self._max_lookahead_s = max_lookahead_s
        # A statement through the pool that must be done before a batch goes: a write ahead,
        # a fence (its round trip, plus the pool's reset of the connection).
        self.preparing = Durations(WRITE_AHEAD_WITHIN_S)

    def slot(self, send_at_s: float) -> SlotTiming:
        return SlotTiming(send_at_s, self.clock)

    def prepare_s(self) -> float:
        """How long before its slot to start preparing a batch's request."""
        measured = max(self.preparing.allowance_s, 2 * self.clock.round_trip_s)
        return min(measured + PREPARE_MARGIN_S, self._max_lookahead_s)

    def write_ahead_within_s(self) -> float:
        """A claim whose slot is this close writes its request ahead itself (claim_batch's
        p_write_ahead_within_s): its answer needs half a round trip to come back, and a write
        ahead of its own would take prepare_s."""
        return min(
            max(self.prepare_s() + self.clock.round_trip_s / 2, WRITE_AHEAD_WITHIN_S),
            self._max_lookahead_s,
        )

    async def synchronise(self, pool: asyncpg.Pool, readings: int = CLOCK_READINGS) -> None:
        """Read the database's clock a few times on one connection (the first reading also
        prepares the statement, a round trip of its own that the others do not pay), so that the
        first batches are timed on a good sample, not on a first claim's."""
        async with pool.acquire() as connection:
            for _ in range(readings):
                sent_at = self.clock.monotonic()
                reading = await queries.read_clock(connection)
                received_at = self.clock.monotonic()
                self.clock.observe(
                    ClockSample(sent_at, received_at, reading.replied_at_s, reading.served_s)
                )

    async def read(
        self, pool: asyncpg.Pool, statement: Callable[[queries.Connection], Awaitable[Timed]]
    ) -> Timed:
        """Run `statement` on a connection of `pool`, and take its answer's times into the
        clock: when it left and came back are read around the statement alone (not the pool's
        acquiring and resetting of the connection)."""
        async with pool.acquire() as connection:
            sent_at = self.clock.monotonic()
            answer = await statement(connection)
            received_at = self.clock.monotonic()
        self.clock.observe(ClockSample(sent_at, received_at, answer.replied_at_s, answer.served_s))
        return answer


async def sleep_unless(event: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `event` is set meanwhile; True when the sleep was cut short."""
    if seconds <= 0:
        return event.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def reserve_batch_slots(
    pool: asyncpg.Pool, slots: SlotClock, limiters: Limiters, calls: int
) -> SlotTiming | float | None:
    """Take new slots for a whole batch sent again, or re-planned after it missed its slots'
    second (`calls` calls in one second, and one request): when to send; or, when the
    campaign's own cap has no slot soon enough, how many seconds to wait before asking again;
    None when nothing is limited."""
    if limiters.unlimited:
        return None
    slot = await slots.read(
        pool,
        lambda connection: queries.reserve_retry_slots(
            connection,
            call_limiters=limiters.calls,
            request_limiters=limiters.requests,
            own_limiters=limiters.own_calls,
            shared_slot_slack_s=SHARED_SLOT_SLACK_S,
            calls=calls,
        ),
    )
    if slot.retry_at_s is not None:
        return max(slot.retry_at_s - slot.db_now_s, 0.0)
    return slots.slot(slot.send_at_s)


class RequestPacer:
    """Waits for a slot of the account's API request limit, shared with every worker (look-ups
    and cancels outside the worker's batches)."""

    def __init__(self, executor: queries.Executor, limits: AccountLimits) -> None:
        self._executor = executor
        self._limiter = limits.request_limiter

    async def wait(self) -> None:
        if self._limiter is None:
            return
        delay_s = await queries.reserve_request_slot(self._executor, self._limiter)
        if delay_s > 0:
            await asyncio.sleep(delay_s)


def campaign_calls_limiter(campaign_id: int) -> str:
    """The name of a campaign's own limiter of calls per second (rate_limiters.name)."""
    return f"campaign:{campaign_id}:calls"


def caller_id_calls_limiter(caller_id: str) -> str:
    """The name of a caller ID's limiter of calls per second, shared by every campaign that
    calls from it (claim_batch spells it the same way)."""
    return f"caller_id:{caller_id}:calls"


async def change_pacing(
    connection: queries.Connection, name: str, change: PacingChange
) -> Campaign | None:
    """`campaign set`: change campaign `name`'s own calls per second, batch size, priority and
    cap of concurrent calls; every worker reads them with its campaign list, within a poll
    interval (the claims read the priority and the cap from the campaign's row). A faster rate
    applies to the next claim, not after the slots already granted at the old one. The campaign
    as it is now, or None if there is none."""
    campaign = await queries.set_pacing(
        connection,
        name,
        cps_given=change.cps_given,
        calls_per_second=change.calls_per_second,
        batch_size=change.batch_size,
        priority=change.priority,
        concurrency_given=change.concurrency_given,
        max_concurrent_calls=change.max_concurrent_calls,
    )
    if campaign is not None and change.cps_given:
        await queries.restart_limiter(connection, campaign_calls_limiter(campaign.id))
    if campaign is not None and change.max_concurrent_calls is not None:
        await queries.count_calls_in_flight(connection, campaign.id)
    return campaign
