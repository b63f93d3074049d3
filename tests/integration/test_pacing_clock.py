"""The time rules of pacing, on the injected database clock: a call whose hangup never comes
stops counting towards a cap of concurrent calls; caps per caller ID per day; a campaign of
higher priority holds back a lower one only while it wants the account's calls."""

from __future__ import annotations

import asyncpg
from clock_fixtures import Clock
from worker_fixtures import claim_now

from campaign import queries
from campaign.callerids import CallerIdMode, pool_number
from campaign.models import CampaignSpec
from campaign.queries.batches import Claim
from campaign.ratelimit import change_pacing
from campaign.specs import pacing_change


async def add_campaign(pool: asyncpg.Pool, destinations: list[str], **spec: object) -> int:
    values: dict[str, object] = {
        "name": "test",
        "from_number": "+14155550100",
        "answer_url": "https://example.com/a.xml",
        **spec,
    }
    async with pool.acquire() as connection:
        campaign = await queries.create_campaign(connection, CampaignSpec(**values))  # type: ignore[arg-type]  # the test's own spec values
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, next_attempt_at)"
            " VALUES ($1, $2, $2, now())",
            [(campaign.id, destination) for destination in destinations],
        )
    return campaign.id


async def claim(
    pool: asyncpg.Pool, campaign_id: int, *, account_cap: int | None = None, wanted: int = 100
) -> Claim:
    """One claim, written ahead at once (no rate limits)."""
    return await claim_now(
        pool, campaign_id, wanted=wanted, write_ahead=True, account_cap=account_cap
    )


async def reply_fired(pool: asyncpg.Pool, batch: Claim) -> None:
    """Plivo's reply: every call of the batch fired (replied now, on the database's clock)."""
    assert batch.request is not None
    await pool.execute(
        "UPDATE dial_requests SET outcome = 'fired', replied_at = now() WHERE id = $1",
        batch.request.id,
    )
    await pool.execute(
        "UPDATE contacts SET status = 'fired', worker_id = NULL, lease_expires_at = NULL"
        " WHERE id = ANY ($1)",
        batch.contact_ids,
    )


async def test_a_call_whose_hangup_never_comes_stops_counting(clocked_pool: asyncpg.Pool) -> None:
    """Cap 2, ring_timeout 30 s and time_limit 120 s: two calls fired and never hung up hold
    the cap for 30 + 120 + 60 s after the reply, not a second less; then the next two are
    claimed. A hung-up call frees its place at once."""
    pool = clocked_pool
    clock = Clock(pool)
    destinations = [f"+1415555{1000 + index}" for index in range(6)]
    campaign_id = await add_campaign(
        pool,
        destinations,
        max_concurrent_calls=2,
        call_parameters={"ring_timeout": 30, "time_limit": 120},
    )
    first = await claim(pool, campaign_id)
    assert len(first.contact_ids) == 2
    waiting = await claim(pool, campaign_id)
    assert (waiting.contact_ids, waiting.waiting_for) == ([], "calls")
    await reply_fired(pool, first)
    await clock.advance(209)
    blocked = await claim(pool, campaign_id)
    assert blocked.contact_ids == []
    assert blocked.retry_at_s is not None
    assert round(blocked.retry_at_s - blocked.db_now_s) == 1  # when the first stops counting
    await clock.advance(1)
    second = await claim(pool, campaign_id)
    assert len(second.contact_ids) == 2
    await reply_fired(pool, second)
    # A hangup ends the count at once.
    await pool.execute(
        "UPDATE contacts SET call_status = 'completed' WHERE id = $1", second.contact_ids[0]
    )
    third = await claim(pool, campaign_id)
    assert len(third.contact_ids) == 1
    # Rows that no longer count were deleted by the claims that found them.
    counted = await pool.fetchval("SELECT count(*) FROM counted_calls")
    assert counted == 2


async def test_the_account_cap_counts_every_campaign(clocked_pool: asyncpg.Pool) -> None:
    """With an account cap of 3, a second campaign gets only what the first left; without the
    cap (a claim that passes none), it is not held back by the first's calls."""
    pool = clocked_pool
    first = await add_campaign(pool, [f"+1415555{1000 + i}" for i in range(2)], name="a")
    second = await add_campaign(pool, [f"+1415555{2000 + i}" for i in range(5)], name="b")
    assert len((await claim(pool, first, account_cap=3)).contact_ids) == 2
    assert len((await claim(pool, second, account_cap=3)).contact_ids) == 1
    full = await claim(pool, second, account_cap=3)
    assert (full.contact_ids, full.waiting_for) == ([], "calls")
    assert len((await claim(pool, second)).contact_ids) == 4


async def test_caller_ids_have_their_calls_per_day(clocked_pool: asyncpg.Pool) -> None:
    """Two caller IDs of at most 3 calls a day each: 6 contacts are claimed (spread 3 and 3),
    then the claim waits ('caller_id') until the oldest hour counted leaves the day, 25 h
    later at the latest; then the rest are claimed."""
    pool = clocked_pool
    clock = Clock(pool)
    campaign_id = await add_campaign(
        pool,
        [f"+1415555{1000 + index}" for index in range(9)],
        caller_ids=(pool_number("+14155550100"), pool_number("+12125550100")),
        caller_id_mode=CallerIdMode.ROTATE,
        max_calls_per_caller_id_per_day=3,
    )
    used: list[str] = []
    for _ in range(4):
        batch = await claim(pool, campaign_id, wanted=2)
        assert batch.caller_id is not None
        used += [batch.caller_id] * len(batch.contact_ids)
    # 2 from each, then the last call of the day of each.
    assert sorted(used) == ["+12125550100"] * 3 + ["+14155550100"] * 3
    full = await claim(pool, campaign_id)
    assert (full.contact_ids, full.waiting_for) == ([], "caller_id")
    assert full.retry_at_s is not None
    assert full.retry_at_s - full.db_now_s <= 3600
    await clock.advance(23 * 3600)
    assert (await claim(pool, campaign_id)).contact_ids == []
    await clock.advance(2 * 3600)
    assert len((await claim(pool, campaign_id)).contact_ids) == 3


async def test_priority_holds_back_lower_campaigns_only_while_wanted(
    clocked_pool: asyncpg.Pool,
) -> None:
    """Once a campaign of priority 5 has claimed (it wants the account's calls), a campaign of
    priority 0 claims nothing ('priority') for as long as that lasts, while another of priority
    5 does (equal priorities share); when neither of the higher ones has anything left to claim,
    the lower one claims at once."""
    pool = clocked_pool
    low = await add_campaign(pool, [f"+1415555{1000 + i}" for i in range(3)], name="low")
    equal = await add_campaign(
        pool, [f"+1415555{3000 + i}" for i in range(3)], name="equal", priority=5
    )
    high = await add_campaign(
        pool, [f"+1415555{2000 + i}" for i in range(2)], name="high", priority=5
    )
    assert len((await claim(pool, high, wanted=1)).contact_ids) == 1
    held = await claim(pool, low)
    assert (held.contact_ids, held.waiting_for) == ([], "priority")
    assert len((await claim(pool, equal, wanted=1)).contact_ids) == 1
    assert len((await claim(pool, high, wanted=1)).contact_ids) == 1
    assert (await claim(pool, low)).waiting_for == "priority"
    # Nothing left for the high ones: their claims say so, and the lower one goes.
    assert (await claim(pool, high)).contact_ids == []
    assert (await claim(pool, low)).waiting_for == "priority"
    assert len((await claim(pool, equal)).contact_ids) == 2
    assert (await claim(pool, equal)).contact_ids == []
    assert len((await claim(pool, low)).contact_ids) == 3


async def test_local_presence_falls_back_to_a_free_number_with_contacts_it_may_call(
    clocked_pool: asyncpg.Pool,
) -> None:
    """--caller-id local, one call a day per number: once the 415 number has had its call, the
    415 contact due first waits, and the claim uses the 646 number for the 646 contact instead
    of picking a number (212) that may call no due contact and claiming nothing."""
    pool = clocked_pool
    numbers = ("+14155550100", "+12125550100", "+16465550100")
    campaign_id = await add_campaign(
        pool,
        [],
        caller_ids=tuple(pool_number(number) for number in numbers),
        caller_id_mode=CallerIdMode.LOCAL,
        max_calls_per_caller_id_per_day=1,
    )
    await pool.executemany(
        "INSERT INTO contacts (campaign_id, destination, raw_destination, next_attempt_at,"
        " caller_id_group) VALUES ($1, $2, $2, now() - make_interval(secs => $3),"
        " caller_id_group($1, $2))",
        [
            (campaign_id, "+14155551001", 30.0),
            (campaign_id, "+14155551002", 20.0),
            (campaign_id, "+16465551001", 10.0),
        ],
    )
    first = await claim(pool, campaign_id, wanted=5)
    assert (first.caller_id, first.destinations) == ("+14155550100", ["+14155551001"])
    second = await claim(pool, campaign_id, wanted=5)
    assert (second.caller_id, second.destinations) == ("+16465550100", ["+16465551001"])


async def test_calls_given_back_unsent_give_back_their_caller_ids_calls(
    clocked_pool: asyncpg.Pool,
) -> None:
    """A batch charged to a caller ID's calls of the day at its claim, then given back unsent
    (Plivo refused it for concurrency), no longer counts: the number can still make them."""
    pool = clocked_pool
    campaign_id = await add_campaign(
        pool,
        [f"+1415555{1000 + index}" for index in range(3)],
        caller_ids=(pool_number("+14155550100"), pool_number("+12125550100")),
        caller_id_mode=CallerIdMode.ROTATE,
        max_calls_per_caller_id_per_day=5,
    )
    batch = await claim(pool, campaign_id)
    assert batch.request is not None
    assert await pool.fetchval("SELECT sum(calls) FROM caller_id_calls") == 3
    released = await queries.unsend(
        pool, request=batch.request, error="not sent: 5030", sends=1, latency_ms=1
    )
    assert released == 3
    assert await pool.fetchval("SELECT sum(calls) FROM caller_id_calls") == 0


async def test_a_cap_set_on_a_running_campaign_counts_its_calls_in_flight(
    clocked_pool: asyncpg.Pool,
) -> None:
    """`campaign set --max-concurrent-calls 2` on a campaign that has 3 calls live (claimed
    before any cap, so never counted): the next claim sees them and claims nothing."""
    pool = clocked_pool
    campaign_id = await add_campaign(
        pool, [f"+1415555{1000 + index}" for index in range(5)], track_calls_at="http://x"
    )
    first = await claim(pool, campaign_id, wanted=3)
    await reply_fired(pool, first)
    assert await pool.fetchval("SELECT count(*) FROM counted_calls") == 0
    async with pool.acquire() as connection, connection.transaction():
        await change_pacing(connection, "test", pacing_change(None, None, None, "2"))
    blocked = await claim(pool, campaign_id)
    assert (blocked.contact_ids, blocked.waiting_for) == ([], "calls")
