"""The rate-limit algorithm of schema.sql section 3, called directly on the injected database
clock: grants across limiters, per-second windows, the end-of-second guard, the API request
spacing, and fair share (a campaign's own cap never holds back the account)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from clock_fixtures import Clock
from worker_fixtures import make_campaign, numbers

from campaign import queries
from campaign.models import Limit
from campaign.ratelimit import SHARED_SLOT_SLACK_S, request_rate_per_s

ACCOUNT = "account:MATEST:calls"
REQUESTS = "account:MATEST:requests"


def second_start() -> datetime:
    """The start of a clock second an hour from now: grants' seconds are then known, and
    contacts inserted now (their column default reads the real clock) are due."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now + timedelta(hours=1)


async def claim(
    pool: asyncpg.Pool,
    campaign_id: int,
    calls: list[Limit],
    *,
    own: tuple[Limit, ...] = (),
    requests: tuple[Limit, ...] = (),
    wanted: int = 100,
    pace_window_s: float = 1.0,
) -> queries.Claim:
    """A claim that never writes ahead, so that its slot is all that is looked at."""
    return await queries.claim_batch(
        pool,
        campaign_id=campaign_id,
        worker_id="w",
        wanted=wanted,
        lease_s=60,
        pace_window_s=pace_window_s,
        call_limiters=calls,
        request_limiters=requests,
        own_limiters=own,
        shared_slot_slack_s=SHARED_SLOT_SLACK_S,
        write_ahead_within_s=-1.0,
    )


async def epoch(clock: Clock) -> float:
    return (await clock.now()).timestamp()


@pytest.fixture
async def at_second_start(clock: Clock) -> float:
    """The injected clock set to the start of a second; its epoch seconds."""
    start = second_start()
    await clock.set(start)
    return start.timestamp()


async def test_no_clock_second_holds_more_calls_than_the_rate(
    clocked_pool: asyncpg.Pool, at_second_start: float
) -> None:
    """At 3 calls per second, claims of a whole second's calls get 3 in the current second and
    the next grant starts in the next second: no second ever holds a fourth call."""
    campaign_id = await make_campaign(clocked_pool, numbers(10))
    limit = Limit(ACCOUNT, 3.0)
    first = await claim(clocked_pool, campaign_id, [limit])
    second = await claim(clocked_pool, campaign_id, [limit])
    assert len(first.contact_ids) == 3
    assert math.floor(first.send_at_s) == at_second_start
    assert math.floor(second.send_at_s) == at_second_start + 1
    assert len(second.contact_ids) == 3


async def test_a_grant_carries_at_most_its_pace_window_of_calls(
    clocked_pool: asyncpg.Pool, at_second_start: float
) -> None:
    """At 50 calls per second with a 0.1 s pace window, a grant holds 5 calls and the next one
    starts 0.1 s later, so calls are spread across each second."""
    campaign_id = await make_campaign(clocked_pool, numbers(20))
    limit = Limit(ACCOUNT, 50.0)
    first = await claim(clocked_pool, campaign_id, [limit], pace_window_s=0.1)
    second = await claim(clocked_pool, campaign_id, [limit], pace_window_s=0.1)
    assert (len(first.contact_ids), len(second.contact_ids)) == (5, 5)
    assert second.send_at_s - first.send_at_s == pytest.approx(0.1)


async def test_the_strictest_limiter_decides(
    clocked_pool: asyncpg.Pool, at_second_start: float
) -> None:
    """Of two call limiters (the account's 10/s, a campaign's own 2/s), a grant holds what the
    stricter allows and both are charged for it."""
    campaign_id = await make_campaign(clocked_pool, numbers(10))
    own = Limit(f"campaign:{campaign_id}:calls", 2.0)
    granted = await claim(clocked_pool, campaign_id, [Limit(ACCOUNT, 10.0), own], own=(own,))
    assert len(granted.contact_ids) == 2
    rows: dict[str, int] = {
        row["name"]: row["window_used"]
        for row in await clocked_pool.fetch("SELECT name, window_used FROM rate_limiters")
    }
    assert rows == {ACCOUNT: 2, own.name: 2}


async def test_no_grant_starts_in_the_last_50_ms_of_a_second(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A claim at x.97 s is granted at the next second: a batch sent that late could arrive in
    the next second beside that second's own calls."""
    start = second_start()
    await clock.set(start.replace(microsecond=970_000))
    campaign_id = await make_campaign(clocked_pool, numbers(3))
    granted = await claim(clocked_pool, campaign_id, [Limit(ACCOUNT, 10.0)])
    assert granted.send_at_s == start.timestamp() + 1


async def test_api_requests_are_spaced_so_no_window_holds_more_than_its_limit(
    clocked_pool: asyncpg.Pool, at_second_start: float
) -> None:
    """Plivo's 300 requests per 5 s: successive request slots are 5/299 s apart, so any closed
    5 s window holds at most 300 of them."""
    rate = request_rate_per_s(300, 5.0)
    assert rate is not None
    limiter = Limit(REQUESTS, rate)
    delays = [await queries.reserve_request_slot(clocked_pool, limiter) for _ in range(301)]
    slots = [at_second_start + delay for delay in delays]
    assert slots[1] - slots[0] == pytest.approx(5 / 299, abs=1e-6)
    busiest = max(sum(1 for slot in slots if start <= slot <= start + 5.0) for start in slots)
    assert busiest <= 300


async def test_a_campaigns_own_cap_never_holds_back_the_account(
    clocked_pool: asyncpg.Pool, at_second_start: float
) -> None:
    """A campaign capped at 0.05 calls per second (one every 20 s) takes its one call; its next
    claim is refused with when to come back, and charges nothing. Another campaign of the
    account is then granted the account's very next slot, not one 20 s away."""
    slow = await make_campaign(clocked_pool, numbers(5), name="slow", batch_size=1)
    fast = await make_campaign(clocked_pool, numbers(5, first=14155552000), name="fast")
    account = Limit(ACCOUNT, 10.0)
    own = Limit(f"campaign:{slow}:calls", 0.05)
    requests = (Limit(REQUESTS, 59.8),)

    first = await claim(clocked_pool, slow, [account, own], own=(own,), requests=requests)
    assert len(first.contact_ids) == 1
    before: dict[str, float] = {
        row["name"]: row["next_slot_at"]
        for row in await clocked_pool.fetch("SELECT name, next_slot_at FROM rate_limiters")
    }

    throttled = await claim(clocked_pool, slow, [account, own], own=(own,), requests=requests)
    assert throttled.contact_ids == []
    assert throttled.retry_at_s == pytest.approx(at_second_start + 20.0)
    after: dict[str, float] = {
        row["name"]: row["next_slot_at"]
        for row in await clocked_pool.fetch("SELECT name, next_slot_at FROM rate_limiters")
    }
    assert after == before  # nothing charged

    other = await claim(clocked_pool, fast, [account], requests=requests, pace_window_s=0.1)
    assert len(other.contact_ids) == 1
    assert other.send_at_s - other.db_now_s < 0.2


async def test_a_retried_batch_of_a_capped_campaign_waits_without_holding_the_account(
    clocked_pool: asyncpg.Pool, at_second_start: float
) -> None:
    """New slots for a refused batch follow the same rule: when the campaign's own cap has no
    slot yet, nothing is charged and the retry is told when to ask again."""
    slow = await make_campaign(clocked_pool, numbers(2), name="slow", batch_size=1)
    account = Limit(ACCOUNT, 10.0)
    own = Limit(f"campaign:{slow}:calls", 0.05)
    await claim(clocked_pool, slow, [account, own], own=(own,))
    slot = await queries.reserve_retry_slots(
        clocked_pool,
        call_limiters=[account, own],
        request_limiters=[],
        own_limiters=[own],
        shared_slot_slack_s=SHARED_SLOT_SLACK_S,
        calls=1,
    )
    assert slot.retry_at_s == pytest.approx(at_second_start + 20.0)
    account_next = await clocked_pool.fetchval(
        "SELECT next_slot_at FROM rate_limiters WHERE name = $1", ACCOUNT
    )
    assert account_next - at_second_start < 0.2
