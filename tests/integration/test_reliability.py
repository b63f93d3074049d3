"""Reliability: leases that always come back, claims given back after the database returns,
requests settled once, no contact left pending in a cancelled campaign, retries that stop with
their campaign or lease, and a circuit breaker for a failing Plivo (issue 10)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from clock_fixtures import Clock
from db_proxy import database_proxy
from plivo_fixtures import client_config, simulator_config
from worker_fixtures import make_campaign, numbers, wait_for, worker_config

from campaign import db
from campaign.config import Settings
from campaign.plivo import PlivoClient
from campaign.simulator import RunningSimulator, running_simulator
from campaign.worker import Worker, WorkerConfig

# A claim of up to 10 contacts with no rate limit: written ahead at once.
CLAIM_WRITTEN_AHEAD = (
    "SELECT * FROM claim_batch($1, 'w', 10, 30, 1, '{}', '{}', '{}', '{}', '{}', 0.02, 1, NULL)"
)
CANCEL = (
    "WITH k AS (UPDATE campaigns SET status = 'cancelled' WHERE id = $1 RETURNING id) "
    "UPDATE contacts SET status = 'cancelled', worker_id = NULL, lease_expires_at = NULL "
    "WHERE campaign_id = $1 AND status IN ('pending', 'claimed')"
)


@contextlib.asynccontextmanager
async def running_worker(
    pool: asyncpg.Pool, plivo: RunningSimulator, config: WorkerConfig, **client: float
) -> AsyncIterator[asyncio.Task[object]]:
    """A long-lived worker (not draining) on `pool` against `plivo`, stopped at the end."""
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        worker = Worker(pool, PlivoClient(session, client_config(plivo.base_url, **client)), config)
        task: asyncio.Task[object] = asyncio.create_task(worker.run(stop=stop))
        try:
            yield task
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def statuses(pool: asyncpg.Pool) -> list[str]:
    return [row["status"] for row in await pool.fetch("SELECT status FROM contacts ORDER BY id")]


# --- 1. leases come back without any claim ----------------------------------------------------


async def test_a_dead_workers_leases_come_back_while_no_one_claims(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A dead worker held the last work of a campaign (two contacts `sending`, one `claimed`) and
    a live worker finds nothing due, so it never claims: still, within a lease and a poll of the
    database's clock, the sending ones become `unknown`, the claimed one goes back to pending and
    is dialled, and the campaign completes. Nothing moves before the lease runs out."""
    pool = clocked_pool
    campaign_id = await make_campaign(pool, numbers(3))
    await pool.execute(
        """
        WITH request AS (
            INSERT INTO dial_requests (campaign_id, worker_id, destinations)
            SELECT $1, 'dead-worker', array_agg(destination ORDER BY id) FROM contacts
            WHERE id IN (SELECT id FROM contacts ORDER BY id LIMIT 2)
            RETURNING id
        )
        UPDATE contacts SET
            status = CASE WHEN id IN (SELECT id FROM contacts ORDER BY id LIMIT 2)
                          THEN 'sending' ELSE 'claimed' END,
            attempts = CASE WHEN id IN (SELECT id FROM contacts ORDER BY id LIMIT 2)
                            THEN 1 ELSE 0 END,
            dial_request_id = CASE WHEN id IN (SELECT id FROM contacts ORDER BY id LIMIT 2)
                                   THEN (SELECT id FROM request) END,
            worker_id = 'dead-worker', lease_expires_at = now() + interval '30 seconds'
        """,
        campaign_id,
    )
    async with (
        running_simulator(simulator_config()) as plivo,
        running_worker(pool, plivo, worker_config(lease_s=30.0)),
    ):
        await asyncio.sleep(0.5)  # ten polls: nothing is due, and no lease has run out
        assert await statuses(pool) == ["sending", "sending", "claimed"]
        await clock.advance(31)
        await wait_for(lambda: _settled(pool, campaign_id), timeout_s=10)
    assert await statuses(pool) == ["unknown", "unknown", "fired"]
    assert len(plivo.ledger.dials) == 1


async def _settled(pool: asyncpg.Pool, campaign_id: int) -> bool:
    status: str = await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id)
    return status == "completed"


# --- 2. claims stranded by a lost database come back when it answers --------------------------


async def test_claims_stranded_while_the_database_was_away_are_given_back_when_it_answers(
    database_url: str, pool: asyncpg.Pool
) -> None:
    """At 5 calls per second a worker holds claims ahead of their slots. The database goes away
    (every connection reset, new ones refused) long enough for those slots to pass, so their
    write-ahead and giving back both fail; once it answers again, the worker gives them back at
    once, not when their 30 s lease runs out. Nobody is dialled twice."""
    async with database_proxy(database_url) as proxy:
        proxied = Settings(database_url=proxy.url())
        async with db.open_pool(proxied) as worker_pool:
            await make_campaign(worker_pool, numbers(60))
            config = worker_config(account_cps=5.0, concurrency=4, lease_s=30.0)
            async with (
                running_simulator(simulator_config()) as plivo,
                running_worker(worker_pool, plivo, config),
            ):

                async def claims_ahead() -> bool:
                    fired = await pool.fetchval(
                        "SELECT count(*) FROM contacts WHERE status = 'fired'"
                    )
                    claimed = await pool.fetchval(
                        "SELECT count(*) FROM contacts WHERE status = 'claimed'"
                    )
                    return bool(fired >= 2 and claimed >= 2)

                await wait_for(claims_ahead)
                await proxy.cut()
                # Leases of the claims held now end by this time; none taken later can.
                stranded_by = await pool.fetchval(
                    "SELECT max(lease_expires_at) FROM contacts WHERE status = 'claimed'"
                )
                await asyncio.sleep(2.0)  # their slots pass while the database is away
                assert await pool.fetchval(
                    "SELECT count(*) FROM contacts WHERE status = 'claimed' "
                    "AND lease_expires_at <= $1",
                    stranded_by,
                ), "the outage stranded no claim: the test proves nothing"
                await proxy.restore()

                async def given_back() -> bool:
                    left = await pool.fetchval(
                        "SELECT count(*) FROM contacts WHERE status = 'claimed' "
                        "AND lease_expires_at <= $1",
                        stranded_by,
                    )
                    return bool(left == 0)

                await wait_for(given_back, timeout_s=10)
    dials = [call.destination for call in plivo.ledger.dials]
    assert len(dials) == len(set(dials))


# --- 3. a request is settled once ---------------------------------------------------------------


async def test_a_late_settle_never_overwrites_a_recorded_reply(pool: asyncpg.Pool) -> None:
    """A request whose reply was recorded `fired` keeps it when a worker stopping late marks its
    requests in flight `unknown`: neither the request nor its contacts change."""
    campaign_id = await make_campaign(pool, numbers(2))
    claim = await pool.fetchrow(CLAIM_WRITTEN_AHEAD, campaign_id)
    assert claim is not None
    request_id = claim["dial_request_id"]
    ids = claim["contact_ids"]
    await pool.fetchval(
        "SELECT record_dial_reply($1, $2, $3, $4, $5, 'api', 'call fired', 201, 5, 'fired', $6,"
        " true, 1, false)",
        request_id,
        ids,
        ["fired", "fired"],
        ["u1", "u2"],
        [None, None],
        ["u1", "u2"],
    )
    late = await pool.fetchrow(
        "SELECT * FROM record_dial_failure($1, $2, 'unknown', NULL,"
        " 'the worker stopped before Plivo replied', 30, 3600, NULL, 1)",
        request_id,
        ids,
    )
    assert late is not None
    assert late["recorded"] is None
    request = await pool.fetchrow(
        "SELECT outcome, error FROM dial_requests WHERE id = $1", request_id
    )
    assert request is not None
    assert (request["outcome"], request["error"]) == ("fired", None)
    assert await statuses(pool) == ["fired", "fired"]


# --- 4. nothing pending in a cancelled campaign -------------------------------------------------


async def _in_cancel(pool: asyncpg.Pool, campaign_id: int) -> AsyncIterator[None]:
    """A cancel holding its transaction open (its campaign and contacts updated, not committed)."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(CANCEL, campaign_id)
        yield


async def test_a_failure_recorded_during_a_cancel_leaves_nothing_pending(
    pool: asyncpg.Pool,
) -> None:
    """A request refused as not placed is recorded while a cancel of its campaign is being
    committed: its contacts end `cancelled`, never `pending` in a cancelled campaign (where
    nothing would ever claim them)."""
    campaign_id = await make_campaign(pool, numbers(2))
    claim = await pool.fetchrow(CLAIM_WRITTEN_AHEAD, campaign_id)
    assert claim is not None
    cancel = contextlib.asynccontextmanager(_in_cancel)(pool, campaign_id)
    async with cancel:
        failure = asyncio.create_task(
            pool.fetchrow(
                "SELECT * FROM record_dial_failure($1, $2, 'not_sent', 503, 'unavailable', 30,"
                " 3600, 5, 1)",
                claim["dial_request_id"],
                claim["contact_ids"],
            )
        )
        await asyncio.sleep(0.3)  # the failure reaches the database while the cancel is open
    await failure
    assert await statuses(pool) == ["cancelled", "cancelled"]


async def test_a_redial_during_a_cancel_leaves_nothing_pending(pool: asyncpg.Pool) -> None:
    """A busy hangup that the campaign would redial is recorded while a cancel of the campaign is
    being committed: the contact is not put back to pending (it keeps its call's outcome)."""
    campaign_id = await make_campaign(pool, numbers(1))
    await pool.execute(
        "UPDATE campaigns SET redial_on = '{busy}', track_calls = true WHERE id = $1", campaign_id
    )
    await pool.execute(
        "UPDATE contacts SET status = 'fired', attempts = 1, request_uuid = 'r1' "
        "WHERE campaign_id = $1",
        campaign_id,
    )
    destination = numbers(1)[0]
    cancel = contextlib.asynccontextmanager(_in_cancel)(pool, campaign_id)
    async with cancel:
        hangup = asyncio.create_task(
            pool.fetch(
                "SELECT * FROM record_call_events($1, '{hangup}', $2, '{r1}', '{c1}', '{busy}',"
                " ARRAY['{}'::jsonb], '{k1}', '{USER_BUSY}', '{3010}', '{0}', '{0}',"
                " ARRAY[NULL::timestamptz], ARRAY[now()], ARRAY[NULL::boolean])",
                [campaign_id],
                [destination],
            )
        )
        await asyncio.sleep(0.3)
    await hangup
    row = await pool.fetchrow("SELECT status, call_status FROM contacts")
    assert row is not None
    assert (row["status"], row["call_status"]) == ("fired", "busy")


# --- 5. retries stop with their campaign, and never outlive their lease -----------------------


async def _first_refusal(plivo: RunningSimulator) -> None:
    await wait_for(lambda: _requests(plivo, 1))


async def _requests(plivo: RunningSimulator, count: int) -> bool:
    return len(plivo.ledger.make_call_requests()) >= count


async def test_a_retry_waiting_for_its_slot_stops_when_the_campaign_is_cancelled(
    pool: asyncpg.Pool,
) -> None:
    """Plivo refuses a request (503); its retry waits for a new slot of a slow account (one call
    every 5 s). The campaign is cancelled meanwhile: the retry is never sent (no call placed
    after the cancel), and the contact ends `cancelled`, its attempt not counted."""
    campaign_id = await make_campaign(pool, numbers(1), batch_size=1)
    config = worker_config(account_cps=0.2, concurrency=1)
    async with running_simulator(simulator_config(unavailable_rate=1.0)) as plivo:
        async with running_worker(pool, plivo, config, retry_attempts=10, retry_budget_s=60.0):
            await _first_refusal(plivo)
            await pool.execute(CANCEL, campaign_id)
            # Past the slot the retry was waiting for (5 s after the first send).
            await asyncio.sleep(6.0)
            assert len(plivo.ledger.make_call_requests()) == 1
        row = await pool.fetchrow("SELECT status, attempts FROM contacts")
        assert row is not None
    assert (row["status"], row["attempts"]) == ("cancelled", 0)


async def test_a_retry_is_not_sent_once_its_contacts_lease_has_run_out(
    pool: asyncpg.Pool,
) -> None:
    """While a refused request waits for its retry's slot, its contacts' lease runs out and they
    become `unknown` (reconcile may dial them again): the retry is not sent."""
    await make_campaign(pool, numbers(1), batch_size=1)
    config = worker_config(account_cps=0.2, concurrency=1)
    async with (
        running_simulator(simulator_config(unavailable_rate=1.0)) as plivo,
        running_worker(pool, plivo, config, retry_attempts=10, retry_budget_s=60.0),
    ):
        await _first_refusal(plivo)
        await pool.execute(
            "UPDATE contacts SET status = 'unknown', worker_id = NULL, lease_expires_at = NULL"
        )
        await asyncio.sleep(6.0)
        assert len(plivo.ledger.make_call_requests()) == 1
    assert await statuses(pool) == ["unknown"]


# --- 8. a circuit breaker for a failing Plivo ---------------------------------------------------


async def test_requests_of_unknown_fate_in_a_row_pause_the_campaigns(pool: asyncpg.Pool) -> None:
    """Plivo places every call and answers 500 (fate unknown): after 3 such requests in a row
    the campaigns are paused with the engine's reason, so a misconfiguration costs three
    requests, not the campaign; the rest of the contacts are never sent."""
    campaign_id = await make_campaign(pool, numbers(20), batch_size=2)
    other_id = await make_campaign(pool, numbers(10, first=14155552000), name="other", batch_size=2)
    config = worker_config(concurrency=1)
    async with (
        running_simulator(simulator_config(error_after_placing_rate=1.0)) as plivo,
        running_worker(pool, plivo, config),
    ):

        async def paused() -> bool:
            rows = await pool.fetch("SELECT status FROM campaigns")
            return {row["status"] for row in rows} == {"paused"}

        await wait_for(paused)
    assert len(plivo.ledger.make_call_requests()) == 3
    reasons = await pool.fetch("SELECT status_reason FROM campaigns ORDER BY id")
    for row in reasons:
        assert "3 requests in a row had an unknown fate" in row["status_reason"]
        assert "campaign reconcile" in row["status_reason"]
    counts: dict[str, int] = {
        row["status"]: row["count"]
        for row in await pool.fetch(
            "SELECT status, count(*) FROM contacts WHERE campaign_id = ANY ($1) GROUP BY status",
            [campaign_id, other_id],
        )
    }
    assert counts == {"unknown": 6, "pending": 24}
