"""Redial timing end to end, with the database's clock injected so that hours pass in seconds.

Every time the engine reads or writes lives in SQL: `now()` in the callbacks' redial schedule
(`next_attempt_at`), in the worker's claim (`next_attempt_at <= now()`), in its leases and in
campaign completion. The injected clock (tests/clock_fixtures.py) stands still until the test
moves it, so the engine's time moves by exactly what the test says and nothing else is faked:
the simulator, the HTTP server and the worker run for real.
"""

from __future__ import annotations

import asyncio
import functools

import aiohttp
import asyncpg
from clock_fixtures import Clock
from plivo_fixtures import AUTH_ID, AUTH_TOKEN, client_config, simulator_config
from worker_fixtures import wait_for

from campaign import queries
from campaign.metrics import Metrics
from campaign.models import CampaignSpec
from campaign.plivo import PlivoClient
from campaign.simulator import Ledger, running_simulator
from campaign.web import WebConfig, serving
from campaign.worker import Worker, WorkerConfig

DESTINATIONS = ["+14155551000", "+14155551001"]
POLL_S = 0.05


async def test_the_clock_is_injected_into_the_engine_sql(clocked_pool: asyncpg.Pool) -> None:
    """now() stands still, moves when told, and the migrations' functions read it too."""
    clock = Clock(clocked_pool)
    first = await clocked_pool.fetchval("SELECT now()")
    await asyncio.sleep(0.05)
    assert await clocked_pool.fetchval("SELECT now()") == first
    await clock.advance(3600)
    assert (
        await clocked_pool.fetchval("SELECT extract(epoch FROM now() - $1::timestamptz)", first)
        == 3600
    )
    # recover_expired_leases compares leases with now(): one that ends in 30 min (engine time)
    # is not recovered until the clock passes it.
    spec = CampaignSpec(name="c", from_number="+14155550100", answer_url="https://e.com/a")
    async with clocked_pool.acquire() as connection:
        campaign = await queries.create_campaign(connection, spec)
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, status, worker_id,"
            " lease_expires_at) VALUES ($1, '+14155551000', 'x', 'claimed', 'w',"
            " now() + interval '30 minutes')",
            campaign.id,
        )
    assert await clocked_pool.fetchval("SELECT recover_expired_leases()") == 0
    await clock.advance(1801)
    assert await clocked_pool.fetchval("SELECT recover_expired_leases()") == 1


async def test_busy_calls_are_redialled_on_schedule_and_not_before(
    clocked_pool: asyncpg.Pool,
    status_pool: asyncpg.Pool,
) -> None:
    """Busy → redialled exactly when its delay has passed (10 min, then 1 h, 1 h), never sooner.

    A real worker and the simulator's signed callbacks; the database clock jumps to one second
    before each redial is due (no dial), then to the moment it is due (dialled). The fourth
    busy is final (max 4 attempts) and the campaign completes; each attempt is a row of
    dial_attempts, and the simulator's ledger holds exactly four calls per contact.
    """
    pool = clocked_pool
    clock = Clock(pool)
    metrics = Metrics()
    async with (
        serving(
            pool,
            metrics,
            WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,)),
            "127.0.0.1",
            0,
            status_pool=status_pool,
        ) as app_url,
        running_simulator(
            simulator_config(send_callbacks=True, outcome_shares={"busy": 1.0})
        ) as sim,
        aiohttp.ClientSession() as session,
    ):
        spec = CampaignSpec(
            name="reminders",
            from_number="+14155550100",
            answer_url="http://127.0.0.1:9/answer.xml",
            redial_on=("busy", "no-answer"),
            redial_delays_s=(600, 3600),
            max_attempts=4,
            track_calls_at=app_url,
        )
        async with pool.acquire() as connection:
            campaign = await queries.create_campaign(connection, spec)
            # Due now on the engine's clock (a column default would read the real one).
            await connection.executemany(
                "INSERT INTO contacts (campaign_id, destination, raw_destination, next_attempt_at)"
                " VALUES ($1, $2, $2, now())",
                [(campaign.id, destination) for destination in DESTINATIONS],
            )
        config = WorkerConfig(
            worker_id="clocked",
            auth_id=AUTH_ID,
            poll_interval_s=POLL_S,
            account_cps=0,
            api_requests_per_window=0,
            callback_wait_s=7200,
        )
        worker = Worker(pool, PlivoClient(session, client_config(sim.base_url)), config, metrics)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop=stop))
        ledger: Ledger = sim.ledger

        def dials() -> list[int]:
            """How many calls the simulator placed to each contact."""
            counts = ledger.dial_counts()
            return [counts[destination] for destination in DESTINATIONS]

        async def waits_s() -> list[float]:
            """Seconds (engine clock) until each contact is due again."""
            rows = await pool.fetch(
                "SELECT status, extract(epoch FROM next_attempt_at - now())::float8 AS wait_s "
                "FROM contacts ORDER BY id"
            )
            assert all(row["status"] == "pending" for row in rows)
            return [row["wait_s"] for row in rows]

        async def all_pending_after(attempts: int) -> bool:
            rows = await pool.fetch("SELECT status, attempts FROM contacts")
            return all((r["status"], r["attempts"]) == ("pending", attempts) for r in rows)

        async def final_busy() -> bool:
            rows = await pool.fetch("SELECT status, attempts, call_status FROM contacts")
            return all(tuple(r) == ("fired", 4, "busy") for r in rows)

        try:
            # Attempt 1 goes out at once; both calls are busy.
            await wait_for(lambda: all_pending_after(1))
            assert dials() == [1, 1]
            for attempt, delay_s in ((2, 600), (3, 3600), (4, 3600)):
                # The redial is scheduled `delay_s` after the hangup (the clock stood still).
                assert await waits_s() == [delay_s, delay_s]
                # One second before it is due: the worker polls 20 times and dials nobody.
                await clock.advance(delay_s - 1)
                await asyncio.sleep(20 * POLL_S)
                assert dials() == [attempt - 1] * 2
                assert await all_pending_after(attempt - 1)
                # Due: dialled again within a few polls, and busy again.
                await clock.advance(1)
                if attempt < 4:
                    await wait_for(functools.partial(all_pending_after, attempt))
                else:
                    await wait_for(final_busy)
                assert dials() == [attempt] * 2
            # Out of attempts: nothing can be dialled again, so the campaign completes.
            await wait_for(
                lambda: pool.fetchval(
                    "SELECT status = 'completed' FROM campaigns WHERE id = $1", campaign.id
                )
            )
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)
        await sim.simulator.settle()

    rows = await pool.fetch(
        "SELECT destination, attempts, status, call_status FROM contacts ORDER BY id"
    )
    assert [(r["attempts"], r["status"], r["call_status"]) for r in rows] == [
        (4, "fired", "busy"),
        (4, "fired", "busy"),
    ]
    attempts = await pool.fetch(
        "SELECT contact_id, attempt, call_status FROM dial_attempts ORDER BY contact_id, attempt"
    )
    assert [(r["attempt"], r["call_status"]) for r in attempts] == [
        (n, "busy") for _ in DESTINATIONS for n in (1, 2, 3, 4)
    ]
    # 2 h 10 min passed on the engine's clock, a few seconds in reality.
    assert await clock.elapsed_s() == 600 + 3600 + 3600
