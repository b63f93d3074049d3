"""Bulk redial (campaign/control.py `redial`) on real Postgres: which contacts a filter matches
(the same as the contacts listing), which of them may be dialled again (never one in flight, of
unknown fate, suppressed or expired), the campaign's status, and a real worker dialling the
redialled contacts exactly once more against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from clock_fixtures import Clock
from plivo_fixtures import client_config, simulator_config
from worker_fixtures import claim_now, make_campaign, numbers, worker_config

from campaign import control, queries
from campaign.contact_filter import ContactFilter
from campaign.plivo import PlivoClient
from campaign.simulator import RunningSimulator, running_simulator
from campaign.worker import Worker, WorkerReport

NAME = "test"


async def _set(pool: asyncpg.Pool, destination: str, **columns: object) -> None:
    """Put one contact in a state (the columns a worker or a callback would have written)."""
    assignments = ", ".join(f"{column} = ${index}" for index, column in enumerate(columns, 2))
    await pool.execute(
        f"UPDATE contacts SET {assignments} WHERE destination = $1", destination, *columns.values()
    )


async def _statuses(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT destination, status FROM contacts ORDER BY id")
    return {row["destination"]: row["status"] for row in rows}


async def _redial(pool: asyncpg.Pool, flt: ContactFilter | None = None) -> int:
    async with pool.acquire() as connection, connection.transaction():
        return await control.redial(connection, NAME, flt or ContactFilter())


async def _listed(pool: asyncpg.Pool, campaign_id: int, flt: ContactFilter) -> list[str]:
    records = await queries.contacts_page(pool, campaign_id, 0, flt=flt, limit=1000)
    return [record["destination"] for record in records]


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    async with running_simulator(simulator_config()) as running:
        yield running


async def _drain(pool: asyncpg.Pool, plivo: RunningSimulator) -> WorkerReport:
    async with aiohttp.ClientSession() as session:
        client = PlivoClient(session, client_config(plivo.base_url))
        worker = Worker(pool, client, worker_config())
        return await asyncio.wait_for(worker.run(drain=True), timeout=30)


async def test_each_filter_matches_what_the_listing_shows(pool: asyncpg.Pool) -> None:
    """Status, outcome, time zone, keypress response and destination search each pick the same
    contacts in the listing (contacts_page) as in the redial's count; fields combine with AND,
    values of one field with OR, and an empty filter matches every contact."""
    busy, answered, failed, pending, other = numbers(5)
    campaign_id = await make_campaign(pool, [busy, answered, failed, pending, other])
    await _set(pool, busy, status="fired", call_status="busy", attempts=1)
    await _set(pool, answered, status="fired", call_status="completed", attempts=1)
    await _set(pool, failed, status="failed", attempts=1)
    await _set(pool, other, status="fired", attempts=1)
    await _set(pool, answered, time_zones=["America/New_York"])
    await _set(pool, busy, time_zones=["America/New_York", "America/Chicago"])
    await pool.execute(
        "INSERT INTO responses (campaign_id, contact_id, attempt, digits, meaning)"
        " SELECT campaign_id, id, 1, '1', 'confirmed' FROM contacts WHERE destination = $1",
        answered,
    )
    cases = [
        (ContactFilter(), [busy, answered, failed, pending, other]),
        (ContactFilter(statuses=("fired",)), [busy, answered, other]),
        (ContactFilter(statuses=("failed", "pending")), [failed, pending]),
        (ContactFilter(outcomes=("busy", "answered")), [busy, answered]),
        (ContactFilter(time_zone="America/New_York"), [busy, answered]),
        (ContactFilter(time_zone="America/Chicago"), [busy]),
        (ContactFilter(response="confirmed"), [answered]),
        (ContactFilter(search=failed[-4:]), [failed]),
        (ContactFilter(search="+1415555"), [busy, answered, failed, pending, other]),
        (ContactFilter(statuses=("fired",), time_zone="America/New_York"), [busy, answered]),
        (ContactFilter(outcomes=("answered",), search=busy), []),
    ]
    async with pool.acquire() as connection:
        for flt, expected in cases:
            assert await _listed(pool, campaign_id, flt) == expected, flt
            counts = await control.redial_counts(connection, NAME, flt)
            assert counts.matched == len(expected), flt


async def test_only_settled_contacts_off_every_list_are_redialled(pool: asyncpg.Pool) -> None:
    """In a campaign that tracks its calls: failed contacts and fired or queued ones whose call
    ended are dialled again; never one pending, claimed, sending, ringing, queued at Plivo
    without a hangup, of unknown fate, cancelled, expired or suppressed (by the load, or put on
    a list the campaign honours since), whatever the filter says."""
    destinations = numbers(12)
    await make_campaign(pool, destinations)
    await pool.execute("UPDATE campaigns SET track_calls = true")
    (
        failed, fired_busy, queued_done, _pending, claimed, sending, ringing, queued,
        unknown, expired, suppressed, listed_since,
    ) = destinations  # fmt: skip
    await _set(pool, failed, status="failed", attempts=3)
    await _set(pool, fired_busy, status="fired", call_status="busy", attempts=1)
    await _set(pool, queued_done, status="queued", call_status="no-answer", attempts=1)
    await _set(pool, claimed, status="claimed", worker_id="w")
    await _set(pool, sending, status="sending", worker_id="w", attempts=1)
    await _set(pool, ringing, status="fired", call_status="ringing", attempts=1)
    await _set(pool, queued, status="queued", attempts=1)
    await _set(pool, unknown, status="unknown", attempts=1)
    await _set(pool, expired, status="expired")
    await _set(pool, suppressed, status="suppressed")
    await _set(pool, listed_since, status="fired", call_status="completed", attempts=1)
    await pool.execute(
        "INSERT INTO suppressions (list, destination) VALUES ('default', $1)", listed_since
    )
    before = await _statuses(pool)
    async with pool.acquire() as connection:
        counts = await control.redial_counts(connection, NAME, ContactFilter())
        assert await control.redial_count(connection, NAME, ContactFilter()) == 3
    assert (counts.matched, counts.redialable) == (12, 3)
    # Asking for the unsafe ones by name changes nothing.
    unsafe = ContactFilter(statuses=("unknown", "sending", "claimed", "suppressed", "expired"))
    assert await _redial(pool, unsafe) == 0
    assert await _redial(pool) == 3
    after = await _statuses(pool)
    assert {d for d in destinations if after[d] != before[d]} == {failed, fired_busy, queued_done}
    assert {after[d] for d in (failed, fired_busy, queued_done)} == {"pending"}
    rows = await pool.fetch(
        "SELECT attempts, next_attempt_at <= now() AS due, last_error FROM contacts"
        " WHERE destination = ANY ($1::text[]) ORDER BY id",
        [failed, fired_busy, queued_done],
    )
    # Their attempts stay counted (history kept); each is due now.
    assert [(r["attempts"], r["due"]) for r in rows] == [(3, True), (1, True), (1, True)]
    assert rows[0]["last_error"] == "redialled on request (it was failed)"
    # A second redial finds them pending: nothing more.
    assert await _redial(pool) == 0


async def test_without_tracked_calls_a_fired_contact_counts_as_settled(
    pool: asyncpg.Pool,
) -> None:
    """A campaign that does not track its calls never learns their end: a fired contact is as
    settled as it gets and may be redialled; a queued one (Plivo may still hold it) may not."""
    fired, queued = numbers(2)
    await make_campaign(pool, [fired, queued])
    await _set(pool, fired, status="fired", attempts=1)
    await _set(pool, queued, status="queued", attempts=1)
    assert await _redial(pool) == 1
    assert await _statuses(pool) == {fired: "pending", queued: "queued"}


async def test_a_redialled_contact_is_dialled_once_more_by_a_worker(
    pool: asyncpg.Pool, simulator: RunningSimulator
) -> None:
    """A campaign of max 1 attempt, dialled and completed by a real worker: redialling one
    contact (by search) makes the campaign run again, and the worker calls that number exactly
    once more (the simulator's ledger: two calls to it, one to each other), past max_attempts;
    both attempts are rows of dial_attempts, and the campaign completes again."""
    destinations = numbers(3)
    campaign_id = await make_campaign(pool, destinations, max_attempts=1)
    await _drain(pool, simulator)
    assert set((await _statuses(pool)).values()) == {"fired"}
    assert await pool.fetchval("SELECT status FROM campaigns") == "completed"
    target = destinations[1]
    listener = await pool.acquire()
    woken: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("campaign_work", lambda *args: woken.put_nowait(args[3]))
    try:
        assert await _redial(pool, ContactFilter(search=target)) == 1
        assert await asyncio.wait_for(woken.get(), 5) == str(campaign_id)
    finally:
        await listener.reset()
        await pool.release(listener)
    assert await pool.fetchval("SELECT status FROM campaigns") == "running"
    await _drain(pool, simulator)
    dialled = [f"+{call.destination.lstrip('+')}" for call in simulator.ledger.dials]
    assert sorted(dialled) == sorted([*destinations, target])
    row = await pool.fetchrow(
        "SELECT status, attempts FROM contacts WHERE destination = $1", target
    )
    assert row is not None
    assert (row["status"], row["attempts"]) == ("fired", 2)
    attempts = await pool.fetch(
        "SELECT attempt FROM dial_attempts WHERE destination = $1 ORDER BY attempt", target
    )
    assert [r["attempt"] for r in attempts] == [1, 2]
    assert await pool.fetchval("SELECT status FROM campaigns") == "completed"


async def test_a_redial_reopens_a_completed_campaign_through_its_status_trigger(
    pool: asyncpg.Pool,
) -> None:
    """With a webhook endpoint, reopening a completed campaign is a campaign.status_changed
    event (completed -> running), as any status change is."""
    (destination,) = numbers(1)
    await make_campaign(pool, [destination])
    endpoint = await pool.fetchval("SELECT webhook_endpoint_for('https://hooks.example.com/x')")
    await pool.execute("UPDATE campaigns SET webhook_endpoint_id = $1", endpoint)
    await _set(pool, destination, status="failed", attempts=1)
    await pool.execute("UPDATE campaigns SET status = 'completed'")
    assert await _redial(pool) == 1
    rows = await pool.fetch(
        "SELECT data ->> 'previous_status' AS previous, data ->> 'status' AS status"
        " FROM webhook_deliveries WHERE type = 'campaign.status_changed' ORDER BY id"
    )
    assert (rows[-1]["previous"], rows[-1]["status"]) == ("completed", "running")


async def test_a_cancelled_or_ended_campaign_is_refused_naming_the_fix(
    clocked_pool: asyncpg.Pool,
) -> None:
    """A cancelled campaign is never dialled again, and one past its end_at (on the database's
    clock) neither: each redial is a ControlError that says to load the contacts anew, and
    nothing changes. An unknown campaign is `missing`."""
    pool = clocked_pool
    clock = Clock(pool)
    (destination,) = numbers(1)
    await make_campaign(pool, [destination])
    await _set(pool, destination, status="failed", attempts=1)
    await pool.execute("UPDATE campaigns SET end_at = now() + interval '1 hour'")
    await clock.advance(3600)
    with pytest.raises(control.ControlError, match=r"ended at its end_at.*campaign load"):
        await _redial(pool)
    await pool.execute("UPDATE campaigns SET end_at = NULL, status = 'cancelled'")
    with pytest.raises(control.ControlError, match=r"is cancelled.*campaign load"):
        await _redial(pool)
    async with pool.acquire() as connection:
        with pytest.raises(control.ControlError, match="is cancelled"):
            await control.redial_count(connection, NAME, ContactFilter())
        with pytest.raises(control.ControlError) as missing:
            await control.redial(connection, "nope", ContactFilter())
    assert missing.value.missing
    assert await _statuses(pool) == {destination: "failed"}


async def test_a_redialled_contact_is_due_at_the_database_clock(
    clocked_pool: asyncpg.Pool,
) -> None:
    """next_attempt_at is the database's now (the injected clock, a day ahead of the wall
    clock), so the claim takes the contact at once, not a day later."""
    pool = clocked_pool
    clock = Clock(pool)
    (destination,) = numbers(1)
    campaign_id = await make_campaign(pool, [destination])
    await _set(pool, destination, status="failed", attempts=1)
    await clock.advance(86400)
    assert await _redial(pool) == 1
    due = await pool.fetchval("SELECT next_attempt_at FROM contacts")
    assert due == await clock.now()
    assert (await claim_now(pool, campaign_id)).destinations == [destination]


async def test_a_bad_filter_is_a_control_error_naming_the_field(pool: asyncpg.Pool) -> None:
    """An unknown status, outcome or time zone is refused before anything is read or changed,
    naming the field."""
    await make_campaign(pool, numbers(1))
    async with pool.acquire() as connection:
        for flt, field in (
            (ContactFilter(statuses=("done",)), "statuses"),
            (ContactFilter(outcomes=("hung up",)), "outcomes"),
            (ContactFilter(time_zone="Mars/Olympus"), "time_zone"),
        ):
            with pytest.raises(control.ControlError) as error:
                await control.redial(connection, NAME, flt)
            assert error.value.option == field


async def test_concurrent_redials_and_claims_never_dial_a_contact_twice(
    pool: asyncpg.Pool,
) -> None:
    """While a redial's transaction is open, a claim does not see its contacts (nothing is
    claimed); a second redial waits for the first (the campaign's row lock) and then finds
    them pending, so redials nothing; once committed, one claim takes each contact once, and a
    redial after that finds them in flight and leaves them alone."""
    destinations = numbers(20)
    campaign_id = await make_campaign(pool, destinations)
    await pool.execute("UPDATE contacts SET status = 'failed', attempts = 1")
    async with pool.acquire() as first, pool.acquire() as second:
        transaction = first.transaction()
        await transaction.start()
        assert await control.redial(first, NAME, ContactFilter()) == 20
        assert (await claim_now(pool, campaign_id)).destinations == []

        async def second_redial() -> int:
            async with second.transaction():
                return await control.redial(second, NAME, ContactFilter())

        waiting = asyncio.create_task(second_redial())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits on the campaign's row lock
        await transaction.commit()
        assert await asyncio.wait_for(waiting, 5) == 0
    claims = await asyncio.gather(*(claim_now(pool, campaign_id, wanted=7) for _ in range(4)))
    taken = [d for claim in claims for d in claim.destinations]
    assert sorted(taken) == destinations
    assert await _redial(pool) == 0
    assert set((await _statuses(pool)).values()) == {"claimed"}
