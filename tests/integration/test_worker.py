"""The dialing worker against real Postgres and the simulator over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from plivo_fixtures import AUTH_ID, client_config, simulator_config
from worker_fixtures import make_campaign, numbers, wait_for, worker_config

from campaign import queries
from campaign.cancellation import cancel_queued_calls
from campaign.models import CampaignStatus, Limit
from campaign.plivo import PlivoClient
from campaign.ratelimit import change_pacing
from campaign.simulator import RunningSimulator, running_simulator
from campaign.specs import pacing_change
from campaign.worker import Worker, WorkerConfig, WorkerReport


@contextlib.asynccontextmanager
async def simulator(**changes: Any) -> AsyncIterator[RunningSimulator]:
    async with running_simulator(simulator_config(**changes)) as running:
        yield running


async def drain(
    pool: asyncpg.Pool, base_url: str, config: WorkerConfig | None = None, **client: Any
) -> WorkerReport:
    """Run a worker until no running campaign has work left."""
    async with aiohttp.ClientSession() as session:
        plivo = PlivoClient(session, client_config(base_url, **client))
        worker = Worker(pool, plivo, config or worker_config())
        return await asyncio.wait_for(worker.run(drain=True), timeout=30)


async def statuses(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT destination, status FROM contacts ORDER BY id")
    return {row["destination"]: row["status"] for row in rows}


async def test_batches_join_destinations_and_map_uuids(pool: asyncpg.Pool) -> None:
    """Contacts go out in `<` batches of at most batch_size; each gets its own request_uuid."""
    destinations = numbers(7)
    campaign_id = await make_campaign(pool, destinations, batch_size=3)
    async with simulator() as plivo:
        report = await drain(pool, plivo.base_url)
        ledger = plivo.ledger
    # Two dispatchers claim side by side (SKIP LOCKED), so who gets which contact may vary;
    # what holds: no request over batch_size, every contact in exactly one request.
    sizes = [request.destinations for request in ledger.make_call_requests()]
    assert max(sizes) <= 3
    assert sum(sizes) == 7
    assert report.outcomes == {"fired": 7}
    dialled = {f"+{call.destination.lstrip('+')}": call.request_uuid for call in ledger.dials}
    rows = await pool.fetch(
        "SELECT destination, status, request_uuid, api_id, http_status, attempts FROM contacts"
    )
    for row in rows:
        assert row["status"] == "fired"
        assert row["request_uuid"] == dialled[row["destination"]]
        assert row["api_id"] is not None
        assert row["http_status"] == 201
        assert row["attempts"] == 1
    requests = await pool.fetch("SELECT * FROM dial_requests ORDER BY destinations[1]")
    sent = [destination for r in requests for destination in r["destinations"]]
    assert sorted(sent) == destinations
    assert all(r["destinations"] == sorted(r["destinations"]) for r in requests)
    assert all(r["outcome"] == "fired" and r["uuids_mapped"] for r in requests)
    assert all(len(r["request_uuids"]) == len(r["destinations"]) for r in requests)
    campaign = await pool.fetchrow("SELECT status FROM campaigns WHERE id = $1", campaign_id)
    assert campaign is not None
    assert campaign["status"] == "completed"


async def test_queued_over_account_cps(pool: asyncpg.Pool) -> None:
    """A request Plivo answers `calls queued` (over its CPS) records its contacts `queued`."""
    await make_campaign(pool, numbers(4), batch_size=4)
    async with simulator(calls_per_second=1.0) as plivo:
        await drain(pool, plivo.base_url)
    assert set((await statuses(pool)).values()) == {"queued"}
    request = await pool.fetchrow("SELECT outcome, plivo_message FROM dial_requests")
    assert request is not None
    assert (request["outcome"], request["plivo_message"]) == ("queued", "calls queued")


async def test_invalid_numbers_fail_the_rest_fire(pool: asyncpg.Pool) -> None:
    """A destination Plivo lists in invalid_numbers fails; its batch-mates fire."""
    await make_campaign(pool, ["+14155551000", "+999123", "+14155551001"])
    async with simulator() as plivo:
        await drain(pool, plivo.base_url)
    rows = await pool.fetch("SELECT destination, status, last_error FROM contacts ORDER BY id")
    assert [(r["destination"], r["status"]) for r in rows] == [
        ("+14155551000", "fired"),
        ("+999123", "failed"),
        ("+14155551001", "fired"),
    ]
    assert rows[1]["last_error"] == "Plivo refused the number as invalid"


async def test_not_sent_goes_back_to_pending_then_fails(pool: asyncpg.Pool) -> None:
    """503s past the retry budget: nothing dialled; pending with a back-off, then failed."""
    await make_campaign(pool, numbers(2), max_attempts=2)
    async with simulator(unavailable_rate=1.0) as plivo:
        config = worker_config(backoff_s=0.2, concurrency=1)
        await drain(pool, plivo.base_url, config, retry_attempts=2)
        ledger = plivo.ledger
        assert ledger.dials == []
        assert len(ledger.make_call_requests()) == 4  # 2 attempts x 2 rounds, no more
    rows = await pool.fetch("SELECT status, attempts, last_error, http_status FROM contacts")
    assert [(r["status"], r["attempts"], r["http_status"]) for r in rows] == [
        ("failed", 2, 503),
        ("failed", 2, 503),
    ]
    outcomes = await pool.fetch("SELECT outcome, attempts FROM dial_requests ORDER BY id")
    assert [(r["outcome"], r["attempts"]) for r in outcomes] == [("not_sent", 2)] * 2


async def test_back_off_before_the_next_attempt(pool: asyncpg.Pool) -> None:
    """After a request that was not sent, the contacts wait the back-off before the next try."""
    await make_campaign(pool, numbers(1))
    async with simulator(unavailable_rate=1.0, fault_budget=2) as plivo:
        async with aiohttp.ClientSession() as session:
            plivo_client = PlivoClient(session, client_config(plivo.base_url, retry_attempts=2))
            worker = Worker(pool, plivo_client, worker_config(backoff_s=30.0))
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop=stop))
            for _ in range(100):
                if (await statuses(pool)) == {"+14155551000": "pending"} and worker.report.batches:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task
        row = await pool.fetchrow(
            "SELECT status, attempts, next_attempt_at - now() AS wait FROM contacts"
        )
        assert row is not None
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert 25 < row["wait"].total_seconds() <= 30
        assert plivo.ledger.dials == []


@pytest.mark.parametrize(
    ("fault", "client"),
    [
        ({"error_after_placing_rate": 1.0}, {}),
        ({"reset_after_placing_rate": 1.0}, {}),
        ({"hang_after_placing_rate": 1.0, "hang_s": 5.0}, {"timeout_s": 0.5}),
    ],
    ids=["500", "reset", "timeout"],
)
async def test_fate_unknown_is_never_resent(
    pool: asyncpg.Pool, fault: dict[str, Any], client: dict[str, Any]
) -> None:
    """500 / reset / time-out after placing: contacts `unknown`, dialled once, request sent once."""
    await make_campaign(pool, numbers(3))
    async with simulator(**fault) as plivo:
        report = await drain(pool, plivo.base_url, **client)
        ledger = plivo.ledger
        assert len(ledger.make_call_requests()) == 1
        assert sorted(ledger.dial_counts().values()) == [1, 1, 1]
    assert report.outcomes == {"unknown": 3}
    assert set((await statuses(pool)).values()) == {"unknown"}
    request = await pool.fetchrow("SELECT outcome, replied_at FROM dial_requests")
    assert request is not None
    assert request["outcome"] == "unknown"


async def test_account_problem_pauses_the_campaign(pool: asyncpg.Pool) -> None:
    """401: the campaign is paused with the reason; its contacts are pending and untouched."""
    campaign_id = await make_campaign(pool, numbers(2))
    async with simulator() as plivo:
        await drain(pool, plivo.base_url, auth_token="wrong-token")
        assert plivo.ledger.dials == []
        # One request per contact at most: the pace window makes batches of one, and a second
        # dispatcher may send its batch before the first 401 is recorded; none after the pause.
        assert 1 <= len(plivo.ledger.make_call_requests()) <= 2
    campaign = await pool.fetchrow(
        "SELECT status, status_reason FROM campaigns WHERE id = $1", campaign_id
    )
    assert campaign is not None
    assert campaign["status"] == "paused"
    assert "401" in campaign["status_reason"]
    rows = await pool.fetch("SELECT status, attempts FROM contacts")
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 2


async def test_rejected_request_fails_its_contacts(pool: asyncpg.Pool) -> None:
    """A 400 (every destination invalid) fails the batch with Plivo's error kept."""
    await make_campaign(pool, ["+999123"])
    async with simulator() as plivo:
        await drain(pool, plivo.base_url)
    row = await pool.fetchrow("SELECT status, last_error, http_status FROM contacts")
    assert row is not None
    assert (row["status"], row["http_status"]) == ("failed", 400)
    assert row["last_error"]


async def test_rate_limited_then_sent_once(pool: asyncpg.Pool) -> None:
    """A 429 then success: the request is retried and every destination dialled exactly once."""
    await make_campaign(pool, numbers(5))
    async with simulator(rate_limited_rate=1.0, fault_budget=2) as plivo:
        await drain(pool, plivo.base_url)
        assert sorted(plivo.ledger.dial_counts().values()) == [1] * 5
    assert set((await statuses(pool)).values()) == {"fired"}


async def test_account_cps_paces_batches(pool: asyncpg.Pool) -> None:
    """With an account limit of 10/s, no clock second sees more than 10 calls, none queued."""
    await make_campaign(pool, numbers(25))
    async with simulator(calls_per_second=10.0) as plivo:
        await drain(pool, plivo.base_url, worker_config(account_cps=10.0, concurrency=3))
        ledger = plivo.ledger
    assert max(ledger.calls_per_second().values()) <= 10
    assert not any(call.queued for call in ledger.dials)
    # Paced: batches of one pace window (10/s x 0.1 s = 1 call), not 10 at each second's start.
    assert {request.destinations for request in ledger.make_call_requests()} == {1}
    assert set((await statuses(pool)).values()) == {"fired"}


async def test_campaign_cps_caps_below_the_account(pool: asyncpg.Pool) -> None:
    """A campaign's own calls_per_second holds even when the account allows more."""
    await make_campaign(pool, numbers(12), calls_per_second=4.0)
    async with simulator() as plivo:
        await drain(pool, plivo.base_url, worker_config(account_cps=100.0))
        per_second = plivo.ledger.calls_per_second()
    assert max(per_second.values()) <= 4
    assert sum(per_second.values()) == 12


async def test_paused_campaign_is_not_dialled(pool: asyncpg.Pool) -> None:
    """A paused campaign's contacts stay pending; only running campaigns are dialled."""
    await make_campaign(pool, numbers(2), name="on")
    paused = await make_campaign(pool, numbers(2, first=14155552000), name="off")
    await pool.execute("UPDATE campaigns SET status = 'paused' WHERE id = $1", paused)
    async with simulator() as plivo:
        await drain(pool, plivo.base_url)
    rows = await pool.fetch("SELECT campaign_id, status FROM contacts ORDER BY id")
    assert [r["status"] for r in rows if r["campaign_id"] == paused] == ["pending", "pending"]
    assert [r["status"] for r in rows if r["campaign_id"] != paused] == ["fired", "fired"]


async def test_drain_waits_for_a_dead_workers_lease(pool: asyncpg.Pool) -> None:
    """Contacts leased by a dead worker count as work: drain recovers and dials or settles them."""
    await make_campaign(pool, numbers(2))
    await pool.execute(
        "UPDATE contacts SET status = 'claimed', worker_id = 'dead', "
        "lease_expires_at = now() + interval '0.5 seconds' WHERE destination = '+14155551000'"
    )
    await pool.execute(
        "UPDATE contacts SET status = 'sending', worker_id = 'dead', "
        "lease_expires_at = now() + interval '0.5 seconds' WHERE destination = '+14155551001'"
    )
    async with simulator() as plivo:
        await drain(pool, plivo.base_url)
        assert plivo.ledger.dial_counts() == {"+14155551000": 1}
    assert await statuses(pool) == {"+14155551000": "fired", "+14155551001": "unknown"}
    leased = "SELECT count(*) FROM contacts WHERE status IN ('claimed', 'sending')"
    assert await pool.fetchval(leased) == 0


async def test_notification_wakes_an_idle_worker(pool: asyncpg.Pool) -> None:
    """With a 30 s poll, a NOTIFY (as `campaign load` sends) wakes the worker at once."""
    async with simulator() as plivo, aiohttp.ClientSession() as session:
        plivo_client = PlivoClient(session, client_config(plivo.base_url))
        worker = Worker(pool, plivo_client, worker_config(poll_interval_s=30.0))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop=stop))
        await asyncio.sleep(0.3)  # idle, waiting on its 30 s poll
        campaign_id = await make_campaign(pool, numbers(1))
        async with pool.acquire() as connection:
            await queries.notify_work(connection, campaign_id)
        for _ in range(100):
            if plivo.ledger.dials:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        assert len(plivo.ledger.dials) == 1


async def test_cancelled_claims_are_not_sent(pool: asyncpg.Pool) -> None:
    """Contacts taken from a worker between claim and send (cancel) are never sent."""
    campaign_id = await make_campaign(pool, numbers(3))
    async with simulator() as plivo, aiohttp.ClientSession() as session:
        plivo_client = PlivoClient(session, client_config(plivo.base_url))
        # A slow account: the first batch is claimed now and sent a second later at the earliest.
        await pool.execute(
            "INSERT INTO rate_limiters (name, next_slot_at) "
            "VALUES ($1, extract(epoch FROM now()) + 1.0)",
            f"account:{AUTH_ID}:calls",
        )
        worker = Worker(pool, plivo_client, worker_config(account_cps=1.0, concurrency=1))
        task = asyncio.create_task(worker.run(drain=True))
        for _ in range(100):
            if await pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'claimed'"):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the worker never claimed a batch to wait with")
        async with pool.acquire() as connection:
            await queries.set_campaign_status(
                connection, "test", CampaignStatus.CANCELLED, [CampaignStatus.RUNNING]
            )
            await queries.cancel_contacts(connection, campaign_id)
        await asyncio.wait_for(task, 10)
        assert plivo.ledger.dials == []
    assert set((await statuses(pool)).values()) == {"cancelled"}


async def test_cancel_queued_calls_at_plivo(pool: asyncpg.Pool, settings: Any) -> None:
    """`cancel --cancel-queued`: calls Plivo still holds queued are cancelled there, and here."""
    campaign_id = await make_campaign(pool, numbers(4), batch_size=4)
    async with simulator(calls_per_second=0.1) as plivo:
        await drain(pool, plivo.base_url)
        assert set((await statuses(pool)).values()) == {"queued"}
        async with aiohttp.ClientSession() as session:
            plivo_client = PlivoClient(session, client_config(plivo.base_url))
            campaign = await queries.campaign_by_name(pool, "test")
            assert campaign is not None
            cancelled, gone = await cancel_queued_calls(pool, plivo_client, campaign, settings)
        ledger = plivo.ledger
        # The first call left the queue at once (one slot per 10 s); the other three were held.
        assert (cancelled, gone) == (3, 1)
        assert len(ledger.cancelled) == 3
    rows = await pool.fetch(
        "SELECT status, last_error FROM contacts WHERE campaign_id = $1 ORDER BY id", campaign_id
    )
    assert sorted(r["status"] for r in rows) == ["cancelled", "cancelled", "cancelled", "queued"]


async def test_cancel_queued_calls_of_an_unsettled_batch(pool: asyncpg.Pool, settings: Any) -> None:
    """Without a uuid per contact, each queued uuid's `to` decides which contact is cancelled."""
    await make_campaign(pool, numbers(4), batch_size=4)
    async with simulator(calls_per_second=0.1) as plivo:
        await drain(pool, plivo.base_url)
        # As if Plivo's reply could not be mapped one by one.
        await pool.execute("UPDATE contacts SET request_uuid = NULL")
        await pool.execute("UPDATE dial_requests SET uuids_mapped = false")
        async with aiohttp.ClientSession() as session:
            plivo_client = PlivoClient(session, client_config(plivo.base_url))
            campaign = await queries.campaign_by_name(pool, "test")
            assert campaign is not None
            cancelled, gone = await cancel_queued_calls(pool, plivo_client, campaign, settings)
        cancelled_uuids = set(plivo.ledger.cancelled)
    # The simulator hands out uuids in `to` order: the test (not the engine) may rely on it.
    request = await pool.fetchrow("SELECT destinations, request_uuids FROM dial_requests")
    assert request is not None
    cancelled_destinations = {
        destination
        for destination, uuid in zip(request["destinations"], request["request_uuids"], strict=True)
        if uuid in cancelled_uuids
    }
    assert (cancelled, gone) == (3, 1)
    rows = await pool.fetch("SELECT destination, status FROM contacts ORDER BY id")
    assert {r["destination"] for r in rows if r["status"] == "cancelled"} == cancelled_destinations
    assert sorted(r["status"] for r in rows) == ["cancelled", "cancelled", "cancelled", "queued"]


async def claim(pool: asyncpg.Pool, campaign_id: int, *limits: Limit) -> queries.Claim:
    return await queries.claim_batch(
        pool,
        campaign_id=campaign_id,
        worker_id="w1",
        wanted=10,
        lease_s=30,
        pace_window_s=0.1,
        call_limiters=limits,
        request_limiters=(),
        own_limiters=(),
        shared_slot_slack_s=0.02,
        write_ahead_within_s=0.01,
    )


async def test_a_batch_due_now_is_written_ahead_by_its_claim(pool: asyncpg.Pool) -> None:
    """When the rate limits allow sending at once, the claim itself writes the request ahead
    (contacts `sending`, attempt counted, previous call outcome cleared, a dial_requests row in
    contact order); when the slot is still to come, contacts are only `claimed`."""
    # Destinations fall as contact ids rise, so that an order by one cannot pass for the other.
    in_id_order = list(reversed(numbers(3)))
    campaign_id = await make_campaign(pool, in_id_order)
    # The first contact was dialled before and is due for a redial.
    await pool.execute(
        "UPDATE contacts SET attempts = 1, request_uuid = 'old', call_status = 'busy', "
        "duration_s = 0 WHERE destination = $1",
        in_id_order[0],
    )
    claimed = await claim(pool, campaign_id)
    # Each contact comes with its own destination, in contact id order: the order the
    # request is sent in and Plivo's reply is mapped back in.
    owners = await pool.fetch("SELECT id, destination FROM contacts ORDER BY id")
    assert list(zip(claimed.contact_ids, claimed.destinations, strict=True)) == [
        tuple(o) for o in owners
    ]
    assert claimed.request is not None
    assert claimed.request.contact_ids == claimed.contact_ids
    assert claimed.request.destinations == in_id_order
    contacts = await pool.fetch(
        "SELECT status, attempts, dial_request_id, request_uuid, call_status, duration_s, "
        "worker_id FROM contacts ORDER BY id"
    )
    assert [(c["status"], c["attempts"]) for c in contacts] == [
        ("sending", 2),
        ("sending", 1),
        ("sending", 1),
    ]
    assert {c["dial_request_id"] for c in contacts} == {claimed.request.id}
    assert [(c["request_uuid"], c["call_status"], c["duration_s"]) for c in contacts] == [
        (None, None, None)
    ] * 3
    request = await pool.fetchrow("SELECT * FROM dial_requests")
    assert request is not None
    assert request["id"] == claimed.request.id
    assert request["destinations"] == in_id_order
    assert (request["worker_id"], request["outcome"]) == ("w1", None)

    # A slot a second away: claimed only, nothing written ahead.
    other = await make_campaign(pool, numbers(2, first=14155552000), name="later")
    limiter = Limit(f"account:{AUTH_ID}:calls", 100.0)
    await pool.execute(
        "INSERT INTO rate_limiters (name, next_slot_at) VALUES ($1, extract(epoch FROM now()) + 1)",
        limiter.name,
    )
    later = await claim(pool, other, limiter)
    assert later.contact_ids
    assert later.request is None
    assert later.send_at_s - later.db_now_s > 0.5
    statuses = await pool.fetch(
        "SELECT status, attempts FROM contacts WHERE campaign_id = $1 AND status <> 'pending'",
        other,
    )
    assert {(c["status"], c["attempts"]) for c in statuses} == {("claimed", 0)}
    assert await pool.fetchval("SELECT count(*) FROM dial_requests") == 1
    # Nothing due: an empty claim, not an error.
    await pool.execute("UPDATE contacts SET status = 'fired' WHERE campaign_id = $1", campaign_id)
    assert (await claim(pool, campaign_id)).contact_ids == []


async def test_the_previous_releases_claim_gets_todays_claim(pool: asyncpg.Pool) -> None:
    """claim_dial_request, kept for workers of the previous release during a rolling upgrade,
    answers as they expect (a row per contact with its destination and the batch's request)
    and claims exactly as claim_batch does, writing ahead when the slot has come."""
    campaign_id = await make_campaign(pool, numbers(3))
    rows = await pool.fetch(
        "SELECT * FROM claim_dial_request($1, 'old', 10, 30, 0.1, '{}', '{}', '{}', '{}', 0.01)",
        campaign_id,
    )
    assert [row["destination"] for row in rows] == numbers(3)
    assert len({row["dial_request_id"] for row in rows}) == 1
    contacts = await pool.fetch("SELECT status, attempts, worker_id FROM contacts")
    assert {tuple(c) for c in contacts} == {("sending", 1, "old")}
    assert await pool.fetchval("SELECT count(*) FROM dial_requests") == 1


@pytest.mark.parametrize("status", [CampaignStatus.PAUSED, CampaignStatus.CANCELLED])
async def test_retries_stop_when_the_campaign_stops_running(
    pool: asyncpg.Pool, status: CampaignStatus
) -> None:
    """A request Plivo keeps refusing (503) is retried only while its campaign runs: pausing or
    cancelling it ends the retries at once (not after the retry budget). No call was placed, so
    the attempt is not counted, even on a contact's last attempt (max_attempts 1): contacts go
    back to pending (paused) or are cancelled, never failed, and dial_attempts shows nothing."""
    await make_campaign(pool, numbers(2), max_attempts=1)
    async with simulator(unavailable_rate=1.0) as plivo, aiohttp.ClientSession() as session:
        client = client_config(
            plivo.base_url,
            retry_attempts=10_000,
            retry_budget_s=60.0,
            backoff_initial_s=0.02,
            backoff_max_s=0.02,
        )
        worker = Worker(pool, PlivoClient(session, client), worker_config(concurrency=1))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop=stop))
        try:
            for _ in range(200):
                if len(plivo.ledger.make_call_requests()) >= 3:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the worker never retried")
            async with pool.acquire() as connection:
                await queries.set_campaign_status(
                    connection, "test", status, [CampaignStatus.RUNNING]
                )
            for _ in range(100):
                if await pool.fetchval("SELECT outcome FROM dial_requests") is not None:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the retries went on after the campaign stopped running")
            sent = len(plivo.ledger.make_call_requests())
            await asyncio.sleep(0.2)
            assert len(plivo.ledger.make_call_requests()) == sent  # no more retries
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        assert plivo.ledger.dials == []
    request = await pool.fetchrow("SELECT outcome, error, attempts, counted FROM dial_requests")
    assert request is not None
    assert (request["outcome"], request["counted"]) == ("not_sent", False)
    assert f"the campaign is {status.value}" in request["error"]
    assert request["attempts"] == sent
    expected = "pending" if status == CampaignStatus.PAUSED else "cancelled"
    rows = await pool.fetch("SELECT status, attempts FROM contacts")
    assert [(r["status"], r["attempts"]) for r in rows] == [(expected, 0)] * 2
    assert await pool.fetchval("SELECT count(*) FROM dial_attempts") == 0


async def test_stopping_cuts_a_long_back_off_short(pool: asyncpg.Pool) -> None:
    """A worker told to stop while a refused request waits out a 20 s Retry-After stops at once
    (well within its 5 s stop time-out, so nothing is cut off and marked unknown): the request
    is given up, not counted, and its contacts are pending again with no attempt spent."""
    await make_campaign(pool, numbers(2))
    async with (
        simulator(rate_limited_rate=1.0, retry_after_s=20.0) as plivo,
        aiohttp.ClientSession() as session,
    ):
        client = PlivoClient(session, client_config(plivo.base_url, retry_budget_s=60.0))
        worker = Worker(pool, client, worker_config(concurrency=1))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop=stop))
        for _ in range(200):
            if plivo.ledger.make_call_requests():
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the worker never sent")
        await asyncio.sleep(0.1)
        stop.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(task, 10)
        assert loop.time() - started < 2.5
        assert len(plivo.ledger.make_call_requests()) == 1
    request = await pool.fetchrow("SELECT outcome, error, attempts, counted FROM dial_requests")
    assert request is not None
    assert (request["outcome"], request["attempts"], request["counted"]) == ("not_sent", 1, False)
    assert "the worker is stopping" in request["error"]
    rows = await pool.fetch("SELECT status, attempts FROM contacts")
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 2


async def test_dial_attempts_counts_only_requests_that_were_attempts(pool: asyncpg.Pool) -> None:
    """A request Plivo refused for the account (401: attempt not counted) is no row of
    dial_attempts; after the fix and a resume, each contact has one attempt, as it counts."""
    campaign_id = await make_campaign(pool, numbers(2))
    async with simulator() as plivo:
        await drain(pool, plivo.base_url, auth_token="wrong-token")
        async with pool.acquire() as connection:
            await queries.set_campaign_status(
                connection, "test", CampaignStatus.RUNNING, [CampaignStatus.PAUSED]
            )
        await drain(pool, plivo.base_url)
    outcomes = await pool.fetch("SELECT outcome FROM dial_requests")
    assert {r["outcome"] for r in outcomes} == {"account_problem", "fired"}
    rows = await pool.fetch(
        "SELECT a.contact_id, a.attempt, a.request_outcome, c.attempts "
        "FROM dial_attempts a JOIN contacts c ON c.id = a.contact_id "
        "WHERE a.campaign_id = $1 ORDER BY a.contact_id",
        campaign_id,
    )
    assert [(r["attempt"], r["request_outcome"], r["attempts"]) for r in rows] == [
        (1, "fired", 1)
    ] * 2


async def test_campaign_set_changes_the_pace_of_a_running_worker(pool: asyncpg.Pool) -> None:
    """A campaign capped at 0.5 calls per second sends one call every two seconds; set to 100
    calls per second and batches of 4 while the worker runs, the other 12 go out within a few
    seconds, in requests of at most 4 (at the old pace they would take 24 s)."""
    await make_campaign(pool, numbers(13), calls_per_second=0.5)
    async with simulator() as plivo, aiohttp.ClientSession() as session:
        stop = asyncio.Event()
        client = PlivoClient(session, client_config(plivo.base_url))
        worker = asyncio.create_task(Worker(pool, client, worker_config()).run(stop=stop))

        async def fired() -> int:
            count: int = await pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'fired'")
            return count

        try:
            await wait_for(lambda: _at_least(fired, 1))
            assert len(plivo.ledger.make_call_requests()) == 1
            async with pool.acquire() as connection:
                campaign = await change_pacing(connection, "test", pacing_change("100", 4))
            assert campaign is not None
            assert (campaign.calls_per_second, campaign.batch_size) == (100.0, 4)
            await wait_for(lambda: _at_least(fired, 13), timeout_s=5.0)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 15)
        sizes = [request.destinations for request in plivo.ledger.make_call_requests()]
    assert sizes[0] == 1
    assert sum(sizes) == 13
    assert max(sizes[1:]) <= 4


async def _at_least(count: Any, wanted: int) -> bool:
    return bool(await count() >= wanted)
