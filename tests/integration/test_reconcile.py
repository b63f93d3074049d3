"""`campaign reconcile` against real Postgres and the simulator over loopback: unknown contacts
take the outcome Plivo's look-ups show (queued, live, CDR), go back to pending only when no call
exists and the request is old enough, and stay unknown whenever a look-up failed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from plivo_fixtures import AUTH_ID, AUTH_TOKEN, FakeClock, plivo_client, simulator_config

from campaign import queries
from campaign.config import Settings
from campaign.models import Campaign, CampaignSpec, CampaignStatus
from campaign.plivo import PlivoClient
from campaign.reconcile import (
    FOUND_IN_CDR_MESSAGE,
    FOUND_LIVE_MESSAGE,
    FOUND_QUEUED_MESSAGE,
    UnknownCampaign,
    reconcile_unknown_contacts,
)
from campaign.simulator import RunningSimulator, running_simulator
from campaign.worker import Worker, WorkerConfig

CALLER_ID = "+14155550100"
LONG_AGO_S = 3600.0
UNKNOWN_ERROR = "Make-a-call outcome unknown (HTTP 500)"


def numbers(count: int, first: int = 14155551000) -> list[str]:
    """`count` distinct E.164 destinations, written with their `+` as the importer stores them."""
    return [f"+{first + index}" for index in range(count)]


async def create_campaign(
    pool: asyncpg.Pool,
    name: str = "reminders",
    *,
    status: CampaignStatus = CampaignStatus.RUNNING,
    batch_size: int = 100,
    max_attempts: int = 3,
) -> Campaign:
    spec = CampaignSpec(
        name=name,
        from_number=CALLER_ID,
        answer_url="https://example.com/answer",
        batch_size=batch_size,
        max_attempts=max_attempts,
        status=status,
    )
    async with pool.acquire() as connection:
        return await queries.create_campaign(connection, spec)


async def add_pending(pool: asyncpg.Pool, campaign: Campaign, destinations: Sequence[str]) -> None:
    await pool.execute(
        "INSERT INTO contacts (campaign_id, destination, raw_destination) "
        "SELECT $1, d, d FROM unnest($2::text[]) AS d",
        campaign.id,
        list(destinations),
    )


async def add_unknown(
    pool: asyncpg.Pool,
    campaign: Campaign,
    destinations: Sequence[str],
    *,
    sent_ago_s: float = LONG_AGO_S,
    attempts: int = 1,
) -> list[int]:
    """Contacts left unknown by one written-ahead request sent `sent_ago_s` ago, never answered."""
    rows = await pool.fetch(
        """
        WITH request AS (
            INSERT INTO dial_requests (campaign_id, worker_id, destinations, sent_at, outcome)
            VALUES ($1, 'gone-worker', $2::text[], now() - make_interval(secs => $3), 'unknown')
            RETURNING id
        )
        INSERT INTO contacts (campaign_id, destination, raw_destination, status, attempts,
                              dial_request_id, last_error)
        SELECT $1, d, d, 'unknown', $4, (SELECT id FROM request), $5
        FROM unnest($2::text[]) AS d
        RETURNING id
        """,
        campaign.id,
        list(destinations),
        sent_ago_s,
        attempts,
        UNKNOWN_ERROR,
    )
    return [row["id"] for row in rows]


async def contacts_by_destination(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM contacts ORDER BY id")
    return {row["destination"]: row for row in rows}


async def campaign_status(pool: asyncpg.Pool, campaign: Campaign) -> str:
    status: str = await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign.id)
    return status


async def dial_into_unknown(pool: asyncpg.Pool, client: PlivoClient) -> None:
    """Run a real worker until drained against a simulator that places calls, then answers 500."""
    config = WorkerConfig(
        worker_id="test-worker",
        auth_id=AUTH_ID,
        concurrency=1,
        poll_interval_s=0.05,
        account_cps=0,
        api_requests_per_window=0,
    )
    await asyncio.wait_for(Worker(pool, client, config).run(drain=True), timeout=30)
    statuses = await pool.fetch("SELECT DISTINCT status FROM contacts")
    assert [row["status"] for row in statuses] == ["unknown"]


@pytest.fixture
async def empty_simulator() -> AsyncIterator[RunningSimulator]:
    """A simulator that has placed no call at all."""
    async with running_simulator(simulator_config()) as sim:
        yield sim


async def test_call_found_in_cdr_becomes_fired(pool: asyncpg.Pool, settings: Settings) -> None:
    """Calls placed despite a 500 and since completed are found in the CDR: fired, call_uuid set."""
    campaign = await create_campaign(pool)
    await add_pending(pool, campaign, numbers(3))
    config = simulator_config(error_after_placing_rate=1.0)
    async with running_simulator(config) as sim, plivo_client(sim.base_url) as client:
        await dial_into_unknown(pool, client)
        await asyncio.sleep(0.1)  # every simulated call ends within 20 ms
        report = await reconcile_unknown_contacts(pool, client, settings)
        dials = list(sim.ledger.dials)
    assert report.found == {"fired": 3}
    assert report.not_found.total() == 0
    assert report.lookup_failures == []
    contacts = await contacts_by_destination(pool)
    assert len(dials) == 3
    for dial in dials:
        contact = contacts[dial.destination]
        assert contact["status"] == "fired"
        assert contact["call_uuid"] == dial.call_uuid
        assert contact["last_error"] is None
        assert contact["plivo_message"] == FOUND_IN_CDR_MESSAGE
        assert contact["attempts"] == 1


async def test_queued_call_becomes_queued(pool: asyncpg.Pool, settings: Settings) -> None:
    """Calls Plivo still holds queued are matched by their `to`: queued, with their request_uuid."""
    campaign = await create_campaign(pool)
    await add_pending(pool, campaign, numbers(3))
    clock = FakeClock(time.time())  # frozen: the calls over 1 cps stay queued
    config = simulator_config(error_after_placing_rate=1.0, calls_per_second=1.0)
    async with (
        running_simulator(config, clock=clock) as sim,
        plivo_client(sim.base_url) as client,
    ):
        await dial_into_unknown(pool, client)
        report = await reconcile_unknown_contacts(pool, client, settings)
        clock.advance(10.0)  # now the queue is dialled and the ledger shows whose uuid is whose
        dials = {dial.destination: dial for dial in sim.ledger.dials}
    assert report.found == {"queued": 2, "fired": 1}
    contacts = await contacts_by_destination(pool)
    queued = [dial for dial in dials.values() if dial.queued]
    assert len(queued) == 2
    for dial in queued:
        contact = contacts[dial.destination]
        assert contact["status"] == "queued"
        assert contact["request_uuid"] == dial.request_uuid
        assert contact["plivo_message"] == FOUND_QUEUED_MESSAGE
        assert contact["last_error"] is None


async def test_queued_call_of_a_known_contact_is_not_taken(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A queued call whose request_uuid another contact already owns is not handed to an unknown
    contact with the same destination in another campaign: that one, old, is dialled again."""
    owner = await create_campaign(pool, "owner")
    first, second = numbers(2)
    await add_pending(pool, owner, [first, second])
    clock = FakeClock(time.time())
    config = simulator_config(calls_per_second=1.0)  # no fault: the reply maps every uuid
    async with (
        running_simulator(config, clock=clock) as sim,
        plivo_client(sim.base_url) as client,
    ):
        worker_config = WorkerConfig(
            worker_id="test-worker", auth_id=AUTH_ID, poll_interval_s=0.05, account_cps=0
        )
        await asyncio.wait_for(Worker(pool, client, worker_config).run(drain=True), timeout=30)
        stranger = await create_campaign(pool, "stranger")
        (stranger_contact,) = await add_unknown(pool, stranger, [second])
        report = await reconcile_unknown_contacts(pool, client, settings)
    owned = await pool.fetchrow(
        "SELECT status, request_uuid FROM contacts WHERE campaign_id = $1 AND destination = $2",
        owner.id,
        second,
    )
    assert owned is not None
    assert owned["status"] == "queued"
    assert owned["request_uuid"] in sim.simulator.queued_request_uuids()
    assert report.found_total == 0
    assert report.not_found == {"pending": 1}
    status = await pool.fetchval("SELECT status FROM contacts WHERE id = $1", stranger_contact)
    assert status == "pending"


async def test_live_call_becomes_fired(pool: asyncpg.Pool, settings: Settings) -> None:
    """Calls still in progress are found among the live calls: fired, with their call_uuid."""
    campaign = await create_campaign(pool)
    await add_pending(pool, campaign, numbers(2))
    clock = FakeClock(time.time())  # frozen: the calls never end
    config = simulator_config(error_after_placing_rate=1.0)
    async with (
        running_simulator(config, clock=clock) as sim,
        plivo_client(sim.base_url) as client,
    ):
        await dial_into_unknown(pool, client)
        report = await reconcile_unknown_contacts(pool, client, settings)
        dials = list(sim.ledger.dials)
    assert report.found == {"fired": 2}
    contacts = await contacts_by_destination(pool)
    for dial in dials:
        contact = contacts[dial.destination]
        assert (contact["status"], contact["call_uuid"]) == ("fired", dial.call_uuid)
        assert contact["plivo_message"] == FOUND_LIVE_MESSAGE


async def test_not_found_and_old_goes_back_to_pending(
    pool: asyncpg.Pool, settings: Settings, database_url: str, empty_simulator: RunningSimulator
) -> None:
    """No call at Plivo an hour on: pending again (attempts kept), or failed when out of attempts;
    the completed campaign runs again and the workers are notified."""
    campaign = await create_campaign(pool, status=CampaignStatus.COMPLETED, max_attempts=3)
    retry, exhausted = numbers(2)
    await add_unknown(pool, campaign, [retry], attempts=1)
    await add_unknown(pool, campaign, [exhausted], attempts=3)
    notified: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(
            "campaign_work",
            lambda _connection, _pid, _channel, payload: notified.put_nowait(payload),
        )
        async with plivo_client(empty_simulator.base_url) as client:
            report = await reconcile_unknown_contacts(pool, client, settings)
        payload = await asyncio.wait_for(notified.get(), timeout=5)
    finally:
        await listener.close()
    assert payload == str(campaign.id)
    assert report.found_total == 0
    assert report.not_found == {"pending": 1, "failed": 1}
    assert report.reopened_campaigns == [campaign.name]
    assert await campaign_status(pool, campaign) == "running"
    contacts = await contacts_by_destination(pool)
    assert contacts[retry]["status"] == "pending"
    assert contacts[retry]["attempts"] == 1
    assert contacts[retry]["next_attempt_at"] <= await pool.fetchval("SELECT now()")
    assert contacts[exhausted]["status"] == "failed"
    assert "out of attempts (3 of 3)" in contacts[exhausted]["last_error"]
    assert empty_simulator.ledger.dials == []


async def test_not_found_and_recent_stays_unknown_until_old_enough(
    pool: asyncpg.Pool, settings: Settings, empty_simulator: RunningSimulator
) -> None:
    """A request 10 s old with no call stays unknown and the report says when to run again;
    a run whose clock is past that time puts it back to pending."""
    campaign = await create_campaign(pool)
    (contact_id,) = await add_unknown(pool, campaign, numbers(1), sent_ago_s=10.0)
    sent_at: datetime = await pool.fetchval(
        "SELECT d.sent_at FROM dial_requests d JOIN contacts c ON c.dial_request_id = d.id"
    )
    async with plivo_client(empty_simulator.base_url) as client:
        early = await reconcile_unknown_contacts(pool, client, settings)
        status_after_early = await pool.fetchval(
            "SELECT status FROM contacts WHERE id = $1", contact_id
        )
        later = sent_at + timedelta(seconds=settings.reconcile_after_s + 1)
        late = await reconcile_unknown_contacts(pool, client, settings, now=later)
    assert status_after_early == "unknown"
    assert (early.too_recent, early.found_total, early.not_found.total()) == (1, 0, 0)
    assert early.run_again_after == sent_at + timedelta(seconds=settings.reconcile_after_s)
    assert "1 still unknown (too recent: run again after " in early.summary()
    assert late.not_found == {"pending": 1}
    assert await pool.fetchval("SELECT status FROM contacts WHERE id = $1", contact_id) == "pending"


async def test_failed_look_up_leaves_the_contact_unknown(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Plivo answers the queue but 429s the live and CDR look-ups: an old contact stays unknown
    (never re-dialled on a guess) and the failure is reported."""
    campaign = await create_campaign(pool)
    (contact_id,) = await add_unknown(pool, campaign, numbers(1))
    config = simulator_config(requests_per_window=1, request_window_s=60.0)
    async with running_simulator(config) as sim, plivo_client(sim.base_url) as client:
        report = await reconcile_unknown_contacts(pool, client, settings)
    assert report.not_found.total() == 0
    (failure,) = report.lookup_failures
    assert failure.contact_id == contact_id
    assert "429" in failure.error
    assert "1 look-up failed" in report.summary()
    row = await pool.fetchrow("SELECT status, last_error FROM contacts WHERE id = $1", contact_id)
    assert row is not None
    assert (row["status"], row["last_error"]) == ("unknown", UNKNOWN_ERROR)


async def test_refused_account_stops_the_look_ups(
    pool: asyncpg.Pool, settings: Settings, empty_simulator: RunningSimulator
) -> None:
    """Wrong credentials: the first look-up's 401 stops the run, nothing changes, it is reported."""
    campaign = await create_campaign(pool)
    await add_unknown(pool, campaign, numbers(3))
    async with plivo_client(empty_simulator.base_url, auth_token="wrong-token") as client:
        report = await reconcile_unknown_contacts(pool, client, settings)
    assert report.account_problem is not None
    assert "401" in report.account_problem
    assert len(report.lookup_failures) == 3
    assert len(empty_simulator.ledger.requests) == 1
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'unknown'") == 3


async def test_campaign_filter_and_unknown_name(
    pool: asyncpg.Pool, settings: Settings, empty_simulator: RunningSimulator
) -> None:
    """Naming a campaign settles only its contacts; a name that does not exist is an error."""
    first = await create_campaign(pool, "first")
    second = await create_campaign(pool, "second")
    (first_contact,) = await add_unknown(pool, first, numbers(1))
    (second_contact,) = await add_unknown(pool, second, numbers(1))
    async with plivo_client(empty_simulator.base_url) as client:
        report = await reconcile_unknown_contacts(pool, client, settings, "first")
        with pytest.raises(UnknownCampaign, match="no campaign named 'nope'"):
            await reconcile_unknown_contacts(pool, client, settings, "nope")
    assert (report.examined, report.not_found) == (1, {"pending": 1})
    statuses: dict[int, str] = {
        row["id"]: row["status"] for row in await pool.fetch("SELECT id, status FROM contacts")
    }
    assert statuses == {first_contact: "pending", second_contact: "unknown"}


async def test_dry_run_changes_nothing(
    pool: asyncpg.Pool, settings: Settings, empty_simulator: RunningSimulator
) -> None:
    """--dry-run reports what it would do and leaves contacts and campaigns as they were."""
    campaign = await create_campaign(pool, status=CampaignStatus.COMPLETED)
    await add_unknown(pool, campaign, numbers(2))
    async with plivo_client(empty_simulator.base_url) as client:
        report = await reconcile_unknown_contacts(pool, client, settings, dry_run=True)
    assert report.not_found == {"pending": 2}
    assert report.summary().startswith("would reconcile (dry run): 0 found")
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'unknown'") == 2
    assert await campaign_status(pool, campaign) == "completed"


async def run_cli(command: list[str], env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run `campaign …` without blocking the event loop the simulator serves from."""
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.slow
async def test_cli_reconcile(
    pool: asyncpg.Pool,
    campaign_command: list[str],
    cli_env: dict[str, str],
    empty_simulator: RunningSimulator,
) -> None:
    """The command as a user runs it: the one-line summary, --json, and its one-line errors."""
    first = await create_campaign(pool, "first")
    second = await create_campaign(pool, "second")
    await add_unknown(pool, first, numbers(1))
    await add_unknown(pool, second, numbers(1), sent_ago_s=5.0)

    code, _stdout, stderr = await run_cli(campaign_command, cli_env, "reconcile")
    assert code == 2
    assert stderr.strip().splitlines() == [
        "campaign: error: PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are not set: reconcile looks calls "
        "up in your Plivo account"
    ]

    env = {
        **cli_env,
        "PLIVO_API_URL": empty_simulator.base_url,
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
    }
    code, _stdout, stderr = await run_cli(campaign_command, env, "reconcile", "nope")
    assert code == 1
    assert stderr.strip() == (
        "campaign: error: no campaign named 'nope'; `campaign list` shows the campaigns"
    )

    code, stdout, stderr = await run_cli(campaign_command, env, "reconcile", "first")
    assert code == 0, stderr
    assert stdout.strip() == (
        "reconciled: 0 found (queued 0, fired 0), 1 back to pending, 0 still unknown, "
        "0 look-ups failed"
    )

    code, stdout, stderr = await run_cli(campaign_command, env, "reconcile", "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["examined"] == 1
    assert (summary["found"], summary["pending"], summary["still_unknown"]) == (0, 0, 1)
    assert summary["run_again_after"] is not None
    assert summary["lookups_failed"] == 0


# --- a contact is settled only with its own call ----------------------------------------------

OTHER_CALLER = "+14155550199"


async def place_call(client: PlivoClient, from_number: str, destination: str) -> None:
    """A call placed through the simulator outside the engine (another campaign, another tool)."""
    await client.make_call(
        {"from": from_number.removeprefix("+"), "answer_url": "https://example.com/a"},
        [destination.removeprefix("+")],
    )


async def test_another_callers_call_to_the_same_number_is_not_this_contacts(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """An unknown contact whose request was never placed is not settled by a call to its number
    from another caller ID: no look-up finds its call, so it is dialled again (pending)."""
    campaign = await create_campaign(pool)
    (destination,) = numbers(1)
    await add_unknown(pool, campaign, [destination])
    async with (
        running_simulator(simulator_config()) as sim,
        plivo_client(sim.base_url) as client,
    ):
        await place_call(client, OTHER_CALLER, destination)
        await asyncio.sleep(0.1)  # the stranger's call ends: it is in the call records
        report = await reconcile_unknown_contacts(pool, client, settings)
    assert report.found_total == 0
    assert report.not_found == {"pending": 1}
    contacts = await contacts_by_destination(pool)
    assert contacts[destination]["status"] == "pending"


async def test_a_redial_is_not_settled_by_the_previous_attempts_call(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A contact redialled at once (no redial delay) whose new request's fate is unknown: the
    previous attempt's call, which started 22 s before the new request and ended 2 s before it,
    is not taken for the new one (it started before the request, less the clock margin)."""
    campaign = await create_campaign(pool)
    (destination,) = numbers(1)
    clock = FakeClock(time.time() - 22.0)
    config = simulator_config(outcome_shares={"completed": 1.0}, talk_s=20.0)
    async with (
        running_simulator(config, clock=clock) as sim,
        plivo_client(sim.base_url) as client,
    ):
        await place_call(client, CALLER_ID, destination)  # the previous attempt's call
        clock.advance(22.0)
        await add_unknown(pool, campaign, [destination], sent_ago_s=0.0)
        later = datetime.now(UTC) + timedelta(seconds=settings.reconcile_after_s + 60)
        report = await reconcile_unknown_contacts(pool, client, settings, now=later)
    assert report.lookup_failures == []
    assert report.found_total == 0
    assert report.not_found == {"pending": 1}


async def test_two_calls_that_could_be_the_contacts_are_a_failed_look_up(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Two calls from the campaign's caller ID to the contact's number since its request: the
    look-up does not guess which is its own; the contact stays unknown and is reported."""
    campaign = await create_campaign(pool)
    (destination,) = numbers(1)
    await add_unknown(pool, campaign, [destination])
    async with (
        running_simulator(simulator_config()) as sim,
        plivo_client(sim.base_url) as client,
    ):
        await place_call(client, CALLER_ID, destination)
        await place_call(client, CALLER_ID, destination)
        await asyncio.sleep(0.1)
        report = await reconcile_unknown_contacts(pool, client, settings)
    assert report.found_total == 0
    assert report.not_found.total() == 0
    assert len(report.lookup_failures) == 1
    assert "not guessing" in report.lookup_failures[0].error
    contacts = await contacts_by_destination(pool)
    assert contacts[destination]["status"] == "unknown"


async def test_a_call_another_attempt_owns_is_not_this_contacts(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A call to the same number from the same caller ID whose uuid a contact of another
    campaign owns (its hangup callback named it) is that contact's, not this one's."""
    owner = await create_campaign(pool, "owner")
    stranger = await create_campaign(pool, "stranger")
    (destination,) = numbers(1)
    await add_unknown(pool, stranger, [destination])
    await add_pending(pool, owner, [destination])
    async with (
        running_simulator(simulator_config()) as sim,
        plivo_client(sim.base_url) as client,
    ):
        await place_call(client, CALLER_ID, destination)
        (call,) = sim.ledger.dials
        await pool.execute(
            "INSERT INTO call_events (event, campaign_id, contact_id, call_uuid, payload,"
            " dedupe_key) SELECT 'hangup', campaign_id, id, $3, '{}', 'k' FROM contacts"
            " WHERE campaign_id = $1 AND destination = $2",
            owner.id,
            destination,
            call.call_uuid,
        )
        await asyncio.sleep(0.1)
        report = await reconcile_unknown_contacts(pool, client, settings)
    assert report.found_total == 0
    assert report.not_found == {"pending": 1}
