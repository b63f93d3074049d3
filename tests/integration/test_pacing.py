"""Pacing by concurrent calls, campaign priorities and caller-ID pools: real workers, real
Postgres, the simulator over loopback with its signed callbacks to the engine's web app.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import aiohttp
import asyncpg
from plivo_fixtures import client_config
from web_fixtures import rig
from worker_fixtures import FROM, numbers, wait_for, worker_config

from campaign import queries
from campaign.callerids import CallerIdMode, pool_number
from campaign.models import CampaignSpec
from campaign.plivo import PlivoClient
from campaign.worker import Worker, WorkerConfig


async def add_campaign(pool: asyncpg.Pool, destinations: Sequence[str], **spec: Any) -> int:
    """A running campaign of these pending contacts (due now on the database's clock)."""
    values: dict[str, Any] = {
        "name": "test",
        "from_number": FROM,
        "answer_url": "http://127.0.0.1:9/answer.xml",
        **spec,
    }
    async with pool.acquire() as connection:
        campaign = await queries.create_campaign(connection, CampaignSpec(**values))
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, line_number,"
            " next_attempt_at, caller_id_group)"
            " VALUES ($1, $2, $2, $3, now(),"
            "         CASE WHEN $4 THEN caller_id_group($1, $2) END)",
            [
                (campaign.id, d, line, values.get("caller_id_mode") == CallerIdMode.LOCAL)
                for line, d in enumerate(destinations, start=2)
            ],
        )
    return campaign.id


async def run_workers(
    pool: asyncpg.Pool,
    base_url: str,
    configs: Sequence[WorkerConfig],
    done: Any,
    timeout_s: float = 30.0,
) -> None:
    """Run these workers until `done()` is true."""
    async with aiohttp.ClientSession() as session:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                Worker(pool, PlivoClient(session, client_config(base_url)), config).run(stop=stop)
            )
            for config in configs
        ]
        try:
            await wait_for(done, timeout_s=timeout_s)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def all_ended(pool: asyncpg.Pool, count: int) -> bool:
    """Every contact's call placed and hung up."""
    ended: int = await pool.fetchval(
        "SELECT count(*) FROM contacts WHERE status = 'fired' AND call_status = 'completed'"
    )
    return ended == count


async def test_a_campaign_cap_of_concurrent_calls_holds_with_two_workers(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """--max-concurrent-calls 3, two workers, calls of 0.3 s: the simulator never has more than
    3 calls live, yet it does reach 3 (a hangup frees its call for the next contact), and every
    contact is called once."""
    async with rig(pool, status_pool, talk_s=0.3) as plivo:
        await add_campaign(pool, numbers(15), max_concurrent_calls=3, track_calls_at=plivo.app_url)
        configs = [worker_config(worker_id=f"w{index}", concurrency=3) for index in (1, 2)]
        await run_workers(pool, plivo.simulator.base_url, configs, lambda: all_ended(pool, 15))
        assert plivo.ledger.max_live_calls() == 3
        assert sorted(plivo.ledger.dial_counts().values()) == [1] * 15
    assert await pool.fetchval("SELECT max(attempts) FROM contacts") == 1


async def test_the_account_cap_is_shared_by_every_campaign(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS 2 over two campaigns and two workers: never more
    than 2 live calls in all, though each campaign alone has no cap."""
    async with rig(pool, status_pool, account_capped=True, talk_s=0.3) as plivo:
        await add_campaign(pool, numbers(6), name="a", track_calls_at=plivo.app_url)
        await add_campaign(
            pool, numbers(6, first=14155552000), name="b", track_calls_at=plivo.app_url
        )
        configs = [
            worker_config(worker_id=f"w{index}", concurrency=3, account_max_concurrent_calls=2)
            for index in (1, 2)
        ]
        await run_workers(pool, plivo.simulator.base_url, configs, lambda: all_ended(pool, 12))
        assert plivo.ledger.max_live_calls() == 2


async def test_a_higher_priority_campaign_is_dialled_first(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """Two campaigns under the account's 20 calls per second, two workers: while the one of
    priority 5 has due contacts, the one of priority 0 places no call; then it gets the
    account's calls."""
    async with rig(pool, status_pool) as plivo:
        await add_campaign(pool, numbers(10), name="low")
        await add_campaign(pool, numbers(10, first=14155552000), name="high", priority=5)
        configs = [
            worker_config(worker_id=f"w{index}", concurrency=2, account_cps=20.0)
            for index in (1, 2)
        ]
        await run_workers(
            pool,
            plivo.simulator.base_url,
            configs,
            lambda: pool.fetchval("SELECT count(*) = 20 FROM contacts WHERE status = 'fired'"),
        )
        order = [call.destination.lstrip("+") for call in plivo.ledger.dials]
    high = {number.lstrip("+") for number in numbers(10, first=14155552000)}
    assert set(order[:10]) == high


async def test_a_lower_priority_campaign_gets_what_a_capped_higher_one_leaves(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """The higher campaign capped at 2 calls per second of the account's 20 keeps its pace, and
    the lower one dials in the slots between, long before the higher one is done."""
    async with rig(pool, status_pool) as plivo:
        await add_campaign(pool, numbers(30), name="low")
        await add_campaign(
            pool,
            numbers(8, first=14155552000),
            name="high",
            priority=5,
            calls_per_second=2.0,
        )
        config = worker_config(concurrency=2, account_cps=20.0)

        async def high_done() -> bool:
            done: bool = await pool.fetchval(
                "SELECT count(*) = 4 FROM contacts c JOIN campaigns k ON k.id = c.campaign_id"
                " WHERE k.name = 'high' AND c.status = 'fired'"
            )
            return done

        started = asyncio.get_running_loop().time()

        await run_workers(pool, plivo.simulator.base_url, [config], high_done)
        high_took_s = asyncio.get_running_loop().time() - started
        low_fired: int = await pool.fetchval(
            "SELECT count(*) FROM contacts c JOIN campaigns k ON k.id = c.campaign_id"
            " WHERE k.name = 'low' AND c.status = 'fired'"
        )
    # The high one needs about 3.5 s for its 8 calls at its own 2 per second, not slowed by the
    # low one; the low one places calls in the slots between (held back entirely: none).
    assert high_took_s < 6.0
    assert low_fired >= 5


async def test_a_pool_of_caller_ids_rotates_one_from_per_request(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """Three caller IDs, batches of 2: each request has one `from`, the calls spread evenly over
    the three, and each contact and request records the number it was sent with."""
    pool_numbers = ("+14155550100", "+12125550100", "+16465550100")
    async with rig(pool, status_pool) as plivo:
        await add_campaign(
            pool,
            numbers(12),
            from_number=pool_numbers[0],
            batch_size=2,
            caller_ids=tuple(pool_number(number) for number in pool_numbers),
            caller_id_mode=CallerIdMode.ROTATE,
        )
        await run_workers(
            pool,
            plivo.simulator.base_url,
            [worker_config(concurrency=1)],
            lambda: pool.fetchval("SELECT count(*) = 12 FROM contacts WHERE status = 'fired'"),
        )
        calls_from = {
            f"+{call.destination.lstrip('+')}": f"+{call.from_number.lstrip('+')}"
            for call in plivo.ledger.dials
        }
    rows = await pool.fetch("SELECT destination, caller_id FROM contacts")
    assert {row["destination"]: row["caller_id"] for row in rows} == calls_from
    spread = await pool.fetch(
        "SELECT caller_id, count(*) AS calls, sum(cardinality(destinations)) AS destinations"
        " FROM dial_requests GROUP BY caller_id ORDER BY caller_id"
    )
    assert [(row["caller_id"], row["destinations"]) for row in spread] == [
        (number, 4) for number in sorted(pool_numbers)
    ]


async def test_local_presence_matches_area_code_then_country(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """--caller-id local: a San Francisco callee gets the 415 number, a New York one the 212
    number, a London one the London number, a Manchester one the London number (same country
    code), a Paris one any number of the pool."""
    london = "+442071234567"
    pool_numbers = ("+14155550100", "+12125550100", london)
    callees = {
        "+14155551234": "+14155550100",
        "+12125557777": "+12125550100",
        "+442079460000": london,
        "+441619460000": london,
        "+33142685300": None,
    }
    async with rig(pool, status_pool) as plivo:
        await add_campaign(
            pool,
            list(callees),
            from_number=pool_numbers[0],
            caller_ids=tuple(pool_number(number) for number in pool_numbers),
            caller_id_mode=CallerIdMode.LOCAL,
        )
        await run_workers(
            pool,
            plivo.simulator.base_url,
            [worker_config(concurrency=1)],
            lambda: pool.fetchval("SELECT count(*) = 5 FROM contacts WHERE status = 'fired'"),
        )
    rows = await pool.fetch("SELECT destination, caller_id FROM contacts")
    used = {row["destination"]: row["caller_id"] for row in rows}
    for callee, expected in callees.items():
        if expected is None:
            assert used[callee] in pool_numbers
        else:
            assert used[callee] == expected, callee
    # Each request went from one number to callees that number may call.
    requests = await pool.fetch("SELECT caller_id, destinations FROM dial_requests")
    for request in requests:
        assert all(
            used[destination] == request["caller_id"] for destination in request["destinations"]
        )


async def test_caller_ids_per_second_are_spaced(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """--calls-per-second-per-caller-id 2 on a pool of two: each number's requests are at least
    half a second apart on the database's clock, and both numbers place calls."""
    pool_numbers = ("+14155550100", "+12125550100")
    async with rig(pool, status_pool) as plivo:
        await add_campaign(
            pool,
            numbers(8),
            from_number=pool_numbers[0],
            batch_size=1,
            caller_ids=tuple(pool_number(number) for number in pool_numbers),
            caller_id_mode=CallerIdMode.ROTATE,
            calls_per_second_per_caller_id=2.0,
        )
        await run_workers(
            pool,
            plivo.simulator.base_url,
            [worker_config(concurrency=2)],
            lambda: pool.fetchval("SELECT count(*) = 8 FROM contacts WHERE status = 'fired'"),
        )
    rows = await pool.fetch(
        "SELECT caller_id, extract(epoch FROM sent_at)::float8 AS sent_s FROM dial_requests"
        " ORDER BY caller_id, sent_at"
    )
    by_number: dict[str, list[float]] = {}
    for row in rows:
        by_number.setdefault(row["caller_id"], []).append(row["sent_s"])
    # Each number takes the next call whose slot comes first, so both are used.
    assert sorted(by_number) == sorted(pool_numbers)
    assert sum(len(times) for times in by_number.values()) == 8
    for times in by_number.values():
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= 0.45, gaps


async def test_a_hangup_wakes_a_worker_waiting_at_the_cap(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """Cap 1 and a 2 s poll interval (a worker at the cap falls back to looking again after
    10 s): four calls of 0.2 s one after the other still take about a second, because each
    hangup's NOTIFY wakes the worker at once."""
    async with rig(pool, status_pool, talk_s=0.2) as plivo:
        await add_campaign(pool, numbers(4), max_concurrent_calls=1, track_calls_at=plivo.app_url)
        config = worker_config(poll_interval_s=2.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await run_workers(
            pool, plivo.simulator.base_url, [config], lambda: all_ended(pool, 4), timeout_s=8.0
        )
        assert loop.time() - started < 6.0
        assert plivo.ledger.max_live_calls() == 1


async def test_plivos_concurrency_refusal_is_not_sent_and_dialled_after_calls_end(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """The account's limit lives only at Plivo (2 concurrent calls; the engine has no cap):
    batches over it get 403 with error 5030. Those contacts are not failed and their attempt
    is not counted; they are dialled once calls end, every contact once, and the campaign is
    not paused (a 403 for the account would pause it)."""
    async with rig(pool, status_pool, talk_s=0.3, max_concurrent_calls=2) as plivo:
        campaign_id = await add_campaign(
            pool, numbers(8), batch_size=1, track_calls_at=plivo.app_url
        )
        await run_workers(
            pool,
            plivo.simulator.base_url,
            [worker_config(concurrency=4)],
            lambda: all_ended(pool, 8),
        )
        assert plivo.ledger.refusals("concurrent_calls") >= 1
        assert plivo.ledger.max_live_calls() == 2
        assert sorted(plivo.ledger.dial_counts().values()) == [1] * 8
    rows = await pool.fetch("SELECT status, attempts FROM contacts")
    assert {(row["status"], row["attempts"]) for row in rows} == {("fired", 1)}
    refused = await pool.fetchval(
        "SELECT count(*) FROM dial_requests WHERE http_status = 403 OR error LIKE '%5030%'"
    )
    assert refused >= 1
    status = await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id)
    assert status in ("running", "completed")


async def test_hangups_wake_workers_only_where_a_cap_applies(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """A NOTIFY serialises committing transactions, so recorded hangups send one only when a cap
    of concurrent calls applies: none for a campaign without a cap (and no account cap), some
    for a campaign with one."""
    heard: list[str] = []

    def hear(*args: object) -> None:
        heard.append(str(args[3]))

    listener = await pool.acquire()
    await listener.add_listener("campaign_room", hear)
    try:
        async with rig(pool, status_pool, talk_s=0.05) as plivo:
            await add_campaign(pool, numbers(3), name="free", track_calls_at=plivo.app_url)
            await run_workers(
                pool, plivo.simulator.base_url, [worker_config()], lambda: all_ended(pool, 3)
            )
            await asyncio.sleep(0.2)
            assert "calls" not in heard
            await add_campaign(
                pool,
                numbers(3, first=14155552000),
                name="capped",
                max_concurrent_calls=5,
                track_calls_at=plivo.app_url,
            )
            await run_workers(
                pool, plivo.simulator.base_url, [worker_config()], lambda: all_ended(pool, 6)
            )
            await asyncio.sleep(0.2)
            assert "calls" in heard
    finally:
        await listener.remove_listener("campaign_room", hear)
        await pool.release(listener)
