"""Webhooks out, end to end: a real worker dials the simulator, the database's triggers write
each event into the outbox with the change it reports, and a real deliverer sends them, signed,
to a real receiver on loopback, where the Standard Webhooks reference library verifies them."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import pytest
from plivo_fixtures import client_config
from web_fixtures import rig
from webhook_fixtures import always, deliverer, endpoint_secret, receiver
from worker_fixtures import FROM, claimed, numbers, wait_for, worker_config

from campaign import queries
from campaign.metrics import Metrics
from campaign.models import CampaignSpec, CampaignStatus
from campaign.plivo import PlivoClient
from campaign.queries import webhooks as webhook_queries
from campaign.voice import VoiceContent
from campaign.web import StatusReader
from campaign.worker import Worker


async def add_campaign(
    pool: asyncpg.Pool, destinations: list[str], webhook_url: str, **spec: Any
) -> int:
    """A running campaign sending its events to `webhook_url`, with these pending contacts."""
    values: dict[str, Any] = {
        "name": "hooks",
        "from_number": FROM,
        "answer_url": "https://example.com/answer.xml",
        "webhook_url": webhook_url,
        **spec,
    }
    async with pool.acquire() as connection, connection.transaction():
        campaign = await queries.create_campaign(connection, CampaignSpec(**values))
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, line_number)"
            " VALUES ($1, $2, $2, $3)",
            [(campaign.id, d, line) for line, d in enumerate(destinations, start=2)],
        )
    return campaign.id


async def campaign_status(pool: asyncpg.Pool, campaign_id: int) -> str:
    status: str = await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id)
    return status


async def dial_and_deliver(
    pool: asyncpg.Pool, simulator_url: str, done: Any, **deliverer_changes: Any
) -> None:
    """A worker and a deliverer, both running until `done`."""
    async with (
        aiohttp.ClientSession() as session,
        deliverer(pool, **deliverer_changes) as sender,
    ):
        stop = asyncio.Event()
        worker = Worker(pool, PlivoClient(session, client_config(simulator_url)), worker_config())
        tasks = [asyncio.create_task(worker.run(stop=stop)), asyncio.create_task(sender.run(stop))]
        try:
            await wait_for(done, timeout_s=40)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)


async def test_each_settled_contact_yields_one_verified_event_in_order(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """Every contact of a tracked campaign with a keypress menu yields one contact.response and
    then one contact.settled (answered, with its uuids, duration and response), the campaign
    status_changed running then completed, and one campaign.completed with its final counts;
    each verified by the `standardwebhooks` package with the endpoint's secret, numbered
    1, 2, 3, … per campaign, and a contact's events arrive in the order they happened."""
    destinations = numbers(6)
    content = VoiceContent(
        message="Hello.", gather={"1": "confirmed"}, gather_prompt="Press 1 to confirm."
    )
    async with receiver() as hooks, rig(pool, status_pool, digit_shares={"1": 1.0}) as plivo:
        campaign_id = await add_campaign(
            pool,
            destinations,
            hooks.url,
            answer_url=f"{plivo.app_url}/plivo/answer",
            content=content,
            serve_answers_at=plivo.app_url,
            track_calls_at=plivo.app_url,
        )

        async def completed_event_arrived() -> bool:
            kinds = Counter(request.event["type"] for request in hooks.accepted())
            return kinds["campaign.completed"] == 1 and kinds["contact.settled"] == 6

        await dial_and_deliver(pool, plivo.simulator.base_url, completed_event_arrived)
        secret = await endpoint_secret(pool, hooks.url)
    assert secret.startswith("whsec_")
    events = list(hooks.verified(secret).values())
    types = Counter(event["type"] for event in events)
    assert types == {
        "contact.settled": 6,
        "contact.response": 6,
        "campaign.status_changed": 2,
        "campaign.completed": 1,
    }
    settled = [event["data"] for event in events if event["type"] == "contact.settled"]
    assert sorted(data["destination"] for data in settled) == destinations
    for data in settled:
        assert data["outcome"] == "answered"
        assert data["call_status"] == "completed"
        assert data["response"] == "confirmed"
        assert data["attempts"] == 1
        assert data["request_uuid"]
        assert data["call_uuid"]
        assert data["duration_s"] is not None
        assert data["campaign_id"] == campaign_id
    # A contact's events in the order they happened: its keypress before its settling.
    arrival = [
        (event["data"].get("contact_id"), event["type"])
        for event in (request.event for request in hooks.accepted())
    ]
    for contact_id in {data["contact_id"] for data in settled}:
        mine = [kind for owner, kind in arrival if owner == contact_id]
        assert mine == ["contact.response", "contact.settled"]
    sequences = sorted(event["data"]["sequence"] for event in events)
    assert sequences == list(range(1, len(events) + 1))
    statuses = sorted(
        (event["data"]["sequence"], event["data"]["status"])
        for event in events
        if event["type"] == "campaign.status_changed"
    )
    assert [status for _sequence, status in statuses] == ["running", "completed"]
    completed = next(event for event in events if event["type"] == "campaign.completed")
    assert completed["data"]["counts"]["total"] == 6
    assert completed["data"]["counts"]["pending"] == 0
    assert completed["data"]["counts"]["answered"] == 6
    assert await campaign_status(pool, campaign_id) == "completed"


async def test_a_tracked_campaign_completes_after_its_last_hangup(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """With --track-calls, a campaign whose calls are all placed but still talking is not
    completed: it completes once their hangups are in, so campaign.completed comes after every
    contact.settled (in sequence and in arrival) and its counts hold every call's outcome.
    Before, it completed as soon as the last call was placed."""
    destinations = numbers(4)
    async with (
        receiver() as hooks,
        rig(pool, status_pool, talk_s=1.5) as plivo,
    ):
        campaign_id = await add_campaign(
            pool, destinations, hooks.url, track_calls_at=plivo.app_url
        )

        async def completed_event_arrived() -> bool:
            return any(r.event["type"] == "campaign.completed" for r in hooks.accepted())

        await dial_and_deliver(pool, plivo.simulator.base_url, completed_event_arrived)
    arrival = [request.event for request in hooks.accepted()]
    kinds = [event["type"] for event in arrival]
    assert kinds.count("contact.settled") == 4
    assert kinds[-1] == "campaign.completed"
    completed = arrival[-1]
    settled = [event for event in arrival if event["type"] == "contact.settled"]
    assert max(e["data"]["sequence"] for e in settled) < completed["data"]["sequence"]
    assert all(event["data"]["outcome"] == "answered" for event in settled)
    assert completed["data"]["counts"]["answered"] == 4
    assert await campaign_status(pool, campaign_id) == "completed"


async def test_a_change_rolled_back_sends_nothing(pool: asyncpg.Pool) -> None:
    """Contacts cancelled in a transaction that rolls back leave no event in the outbox and
    none reaches the receiver; the same cancel committed sends one contact.settled each."""
    async with receiver() as hooks, deliverer(pool) as sender:
        campaign_id = await add_campaign(pool, numbers(3), hooks.url)
        await sender.deliver_once()
        before = len(hooks.requests)  # the campaign's status_changed: running
        assert before == 1

        async with pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute(
                "UPDATE contacts SET status = 'cancelled' WHERE campaign_id = $1", campaign_id
            )
            await transaction.rollback()
        assert await sender.deliver_once() == 0
        assert len(hooks.requests) == before
        assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 1

        await pool.execute(
            "UPDATE contacts SET status = 'cancelled' WHERE campaign_id = $1", campaign_id
        )
        await sender.deliver_once()
    settled = [r.event for r in hooks.requests[before:]]
    assert [event["type"] for event in settled] == ["contact.settled"] * 3
    assert {event["data"]["outcome"] for event in settled} == {"cancelled"}


async def test_a_campaign_without_an_endpoint_writes_no_event(pool: asyncpg.Pool) -> None:
    """Without a webhook URL, settling, keypresses and status changes leave the outbox empty."""
    async with pool.acquire() as connection:
        campaign = await queries.create_campaign(
            connection,
            CampaignSpec(name="quiet", from_number=FROM, answer_url="https://example.com/a"),
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, status)"
            " VALUES ($1, '+14155551000', '+14155551000', 'suppressed')",
            campaign.id,
        )
        await connection.execute(
            "UPDATE campaigns SET status = 'completed' WHERE id = $1", campaign.id
        )
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_a_receiver_failing_30_percent_gets_every_event(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """A receiver that answers 500 to 30 % of deliveries, at random, still gets every
    contact.settled and the campaign.completed in the end, each once after repeats are
    dropped, thanks to the retries (a short schedule here)."""
    chance = random.Random(16)

    def flaky(_n: int) -> tuple[int, dict[str, str]]:
        return (500, {}) if chance.random() < 0.3 else (200, {})

    destinations = numbers(40)
    async with receiver(flaky) as hooks, rig(pool, status_pool) as plivo:
        await add_campaign(pool, destinations, hooks.url)

        async def all_delivered() -> bool:
            pending: int = await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"
            )
            done: bool = await pool.fetchval(
                "SELECT bool_or(type = 'campaign.completed') FROM webhook_deliveries"
            )
            return bool(done) and pending == 0

        await dial_and_deliver(pool, plivo.simulator.base_url, all_delivered)
        secret = await endpoint_secret(pool, hooks.url)
    assert any(request.status == 500 for request in hooks.requests)
    events = hooks.verified(secret).values()
    settled = [
        event["data"]["destination"] for event in events if event["type"] == "contact.settled"
    ]
    assert sorted(settled) == destinations
    assert sum(event["type"] == "campaign.completed" for event in events) == 1


async def test_410_gone_disables_the_endpoint_until_a_redelivery(pool: asyncpg.Pool) -> None:
    """A 410 Gone fails that delivery and disables the endpoint: nothing more is sent to it
    while its other events wait; `redeliver` enables it again and everything goes out."""
    async with receiver(always(410)) as hooks, deliverer(pool, batch_size=1) as sender:
        campaign_id = await add_campaign(pool, numbers(3), hooks.url)
        await pool.execute(
            "UPDATE contacts SET status = 'cancelled' WHERE campaign_id = $1", campaign_id
        )
        await sender.deliver_once()
        assert len(hooks.requests) == 1
        disabled = await pool.fetchrow("SELECT disabled_at, disabled_reason FROM webhook_endpoints")
        assert disabled is not None
        assert disabled["disabled_at"] is not None
        assert "410" in disabled["disabled_reason"]
        rows = await pool.fetch(
            "SELECT id, status, last_status FROM webhook_deliveries ORDER BY id"
        )
        assert [(row["status"], row["last_status"]) for row in rows] == [
            ("failed", 410),
            ("pending", None),
            ("pending", None),
            ("pending", None),
        ]
        assert await sender.deliver_once() == 0
        assert len(hooks.requests) == 1

        hooks.responder = always(200)
        assert await webhook_queries.redeliver_webhook_deliveries(pool, [rows[0]["id"]]) == [
            rows[0]["id"]
        ]
        await sender.deliver_once()
    assert len(hooks.requests) == 5
    assert (
        await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
        == 4
    )


async def test_an_endpoint_that_hangs_holds_back_no_other(pool: asyncpg.Pool) -> None:
    """One campaign's receiver accepts connections and never answers; another campaign's
    events are all delivered meanwhile, by the same deliverer."""
    release = asyncio.Event()

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with receiver() as good, deliverer(pool, timeout_s=30.0) as sender:
        first = await add_campaign(pool, numbers(3), f"http://127.0.0.1:{port}/hooks", name="x")
        second = await add_campaign(pool, numbers(3, first=14155552000), good.url, name="fine")
        for campaign_id in (first, second):
            await pool.execute(
                "UPDATE contacts SET status = 'cancelled' WHERE campaign_id = $1", campaign_id
            )
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        try:

            async def fine_delivered() -> bool:
                return len(good.accepted()) == 4

            await wait_for(fine_delivered, timeout_s=10)
            hanging: int = await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE campaign_id = $1"
                " AND status = 'pending' AND lease_expires_at IS NOT NULL",
                first,
            )
            assert hanging > 0
        finally:
            release.set()
            stop.set()
            await asyncio.wait_for(task, 10)
            server.close()
    assert [request.event["type"] for request in good.accepted()].count("contact.settled") == 3


async def test_retries_follow_the_schedule_on_the_database_clock(
    clocked_pool: asyncpg.Pool, clock: Any
) -> None:
    """A failing delivery is tried again after each delay of the schedule (±10 % jitter), not
    before, on the database's clock; a 429's longer Retry-After is honoured; after the last
    delay it is failed."""
    pool = clocked_pool
    statuses = iter([500, 429, 503, 500])
    retry_after = {429: {"Retry-After": "120"}}

    def answers(_n: int) -> tuple[int, dict[str, str]]:
        status = next(statuses)
        return status, retry_after.get(status, {})

    async with (
        receiver(answers) as hooks,
        deliverer(pool, retry_delays_s=(0.0, 10.0, 60.0, 600.0)) as sender,
    ):
        await add_campaign(pool, [], hooks.url)

        async def next_in_s() -> float:
            value: float = await pool.fetchval(
                "SELECT extract(epoch FROM next_attempt_at - now()) FROM webhook_deliveries"
            )
            return value

        assert await sender.deliver_once() == 1  # attempt 1 at once: 500
        assert 9.0 <= await next_in_s() <= 11.0
        await clock.advance(8.9)
        assert await sender.deliver_once() == 0
        await clock.advance(2.2)
        assert await sender.deliver_once() == 1  # attempt 2: 429, Retry-After 120 > 60
        assert 119.9 <= await next_in_s() <= 120.1
        await clock.advance(120.1)
        assert await sender.deliver_once() == 1  # attempt 3: 503 without Retry-After
        assert 540.0 <= await next_in_s() <= 660.0
        await clock.advance(661)
        assert await sender.deliver_once() == 1  # attempt 4, the last: 500
        row = await pool.fetchrow("SELECT status, attempts, last_status FROM webhook_deliveries")
    assert row is not None
    assert tuple(row) == ("failed", 4, 500)
    assert len(hooks.requests) == 4


async def endpoint_health(pool: asyncpg.Pool) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT id, disabled_at, disabled_reason, last_success_at, failing_since,"
        " extract(epoch FROM now() - failing_since) AS failing_s FROM webhook_endpoints"
    )
    assert row is not None
    return row


async def test_an_endpoint_failing_for_days_is_warned_of_then_disabled(
    clocked_pool: asyncpg.Pool, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An endpoint whose every attempt fails is, on the database's clock: silent for its first
    day; from a fifth of CAMPAIGN_WEBHOOK_DISABLE_AFTER_S (a day of five) on, warned of in the
    log and shown by /metrics with the time left; still enabled just before five days; disabled
    by its first failed attempt after them (log, reason, /metrics), and sent nothing more."""
    pool = clocked_pool
    five_days = 5 * 86_400.0
    caplog.set_level(logging.WARNING, logger="campaign.webhooks.delivery")
    metrics = Metrics()
    reader = StatusReader(pool, metrics, 0.0, webhook_disable_after_s=five_days)

    async def gauge(name: str, endpoint: int) -> float | None:
        await reader.refresh_progress()
        return metrics.registry.get_sample_value(name, {"endpoint": str(endpoint)})

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    async with (
        receiver(always(500)) as hooks,
        deliverer(
            pool, retry_delays_s=(0.0,) + (3600.0,) * 10, disable_after_s=five_days
        ) as sender,
    ):
        await add_campaign(pool, [], hooks.url)
        assert await sender.deliver_once() == 1
        health = await endpoint_health(pool)
        endpoint = health["id"]
        assert health["failing_since"] == await clock.now()
        assert health["last_success_at"] is None
        assert await gauge("campaign_webhook_endpoint_failing_seconds", endpoint) == 0.0
        assert await gauge("campaign_webhook_endpoint_disabled_in_seconds", endpoint) == five_days
        assert not any("disabled in" in message for message in warnings())

        await clock.advance(86_401)
        assert await sender.deliver_once() == 1
        assert any(
            "has failed every delivery since" in m and "disabled in 96.0 h" in m for m in warnings()
        )
        failing = await gauge("campaign_webhook_endpoint_failing_seconds", endpoint)
        assert failing is not None
        assert 86_400 < failing < 86_410
        left = await gauge("campaign_webhook_endpoint_disabled_in_seconds", endpoint)
        assert left is not None
        assert 4 * 86_400 - 10 < left < 4 * 86_400

        await clock.advance(4 * 86_400 - 501)  # 100 s before five days
        assert await sender.deliver_once() == 1
        assert (await endpoint_health(pool))["disabled_at"] is None

        await clock.advance(4000)  # the next attempt (an hour ± 10 % later)
        assert await sender.deliver_once() == 1
        health = await endpoint_health(pool)
        assert health["disabled_at"] == await clock.now()
        assert "CAMPAIGN_WEBHOOK_DISABLE_AFTER_S" in health["disabled_reason"]
        assert any(f"endpoint {endpoint} " in m and "is disabled" in m for m in warnings())
        assert await gauge("campaign_webhook_endpoint_disabled", endpoint) == 1.0
        assert await gauge("campaign_webhook_endpoint_disabled_in_seconds", endpoint) is None

        await clock.advance(7200)
        assert await sender.deliver_once() == 0
    assert len(hooks.requests) == 4
    assert "whsec_" not in caplog.text


async def test_a_success_or_a_redelivery_starts_the_failing_period_afresh(
    clocked_pool: asyncpg.Pool, clock: Any
) -> None:
    """Only failures without a success disable: a delivery that succeeds clears the endpoint's
    failing period (an endpoint failing an hour in all, but never an hour since its last
    success, stays enabled), and a redelivery that enables a disabled endpoint starts its
    period afresh (its next failure does not disable it again at once)."""
    pool = clocked_pool
    async with (
        receiver(always(500)) as hooks,
        deliverer(
            pool, retry_delays_s=(0.0, 3500.0) + (600.0,) * 20, disable_after_s=3600.0
        ) as sender,
    ):
        campaign_id = await add_campaign(pool, [], hooks.url)
        assert await sender.deliver_once() == 1  # the running event fails
        await clock.advance(3000)
        hooks.responder = always(200)
        await pool.execute("UPDATE campaigns SET status = 'paused' WHERE id = $1", campaign_id)
        assert await sender.deliver_once() == 1  # the paused event is delivered
        health = await endpoint_health(pool)
        assert health["failing_since"] is None
        assert health["last_success_at"] == await clock.now()

        hooks.responder = always(500)
        await clock.advance(900)
        assert await sender.deliver_once() == 1  # the running event again: failing anew
        await clock.advance(3000)
        assert await sender.deliver_once() == 1
        assert (await endpoint_health(pool))["disabled_at"] is None
        await clock.advance(700)
        assert await sender.deliver_once() == 1
        assert (await endpoint_health(pool))["disabled_at"] is not None

        pending = await pool.fetchval("SELECT id FROM webhook_deliveries WHERE status = 'pending'")
        assert await webhook_queries.redeliver_webhook_deliveries(pool, [pending]) == [pending]
        health = await endpoint_health(pool)
        assert health["disabled_at"] is None
        assert health["failing_since"] is None
        assert await sender.deliver_once() == 1
        health = await endpoint_health(pool)
        assert health["disabled_at"] is None
        assert health["failing_since"] == await clock.now()


async def test_a_private_address_is_never_contacted_unless_allowed(pool: asyncpg.Pool) -> None:
    """With private addresses refused, the deliverer does not connect to an endpoint on
    loopback (one stored before the rule, or by hand): the attempt fails with the reason."""
    async with receiver() as hooks, deliverer(pool, allow_private=False) as sender:
        await add_campaign(pool, [], hooks.url)
        await sender.deliver_once()
        row = await pool.fetchrow("SELECT status, attempts, last_error FROM webhook_deliveries")
    assert row is not None
    assert hooks.requests == []
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert "loopback" in row["last_error"]


async def test_the_configured_secret_signs_every_endpoint(pool: asyncpg.Pool) -> None:
    """With CAMPAIGN_WEBHOOK_SECRET set, events verify with it (not the endpoint's own)."""
    configured = "whsec_" + "QUJD" * 8
    async with receiver() as hooks, deliverer(pool, secret=configured) as sender:
        await add_campaign(pool, [], hooks.url)
        await sender.deliver_once()
    assert [event["type"] for event in hooks.verified(configured).values()] == [
        "campaign.status_changed"
    ]


async def test_secrets_never_reach_the_logs(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Deliveries that fail, fail for good and meet a 410 log warnings, none with the
    endpoint's secret or the configured one; nor do the reprs of the endpoint and config."""
    caplog.set_level(logging.DEBUG)
    configured = "whsec_" + "A" * 40
    async with (
        receiver(always(500)) as hooks,
        deliverer(pool, retry_delays_s=(0.0,), secret=configured) as sender,
    ):
        campaign_id = await add_campaign(pool, numbers(2), hooks.url)
        await pool.execute(
            "UPDATE contacts SET status = 'cancelled' WHERE campaign_id = $1", campaign_id
        )
        await sender.deliver_once()
        hooks.responder = always(410)
        await webhook_queries.redeliver_webhook_deliveries(
            pool, [row["id"] for row in await pool.fetch("SELECT id FROM webhook_deliveries")]
        )
        await sender.deliver_once()
        secret = await endpoint_secret(pool, hooks.url)
        endpoint = await webhook_queries.webhook_endpoint_by_url(pool, hooks.url)
        shown = repr(endpoint) + repr(sender.config)
    assert "failed after their last retry" in caplog.text
    assert "410 Gone" in caplog.text
    for value in (secret, configured, secret.removeprefix("whsec_")):
        assert value not in caplog.text
        assert value not in shown


async def test_every_path_that_settles_or_changes_status_writes_its_event(
    pool: asyncpg.Pool,
) -> None:
    """The engine's own statements, not a test's UPDATE: the circuit breaker's pause (with its
    reason), resume, a suppressed number settled by the claim, contacts expired at end_at and
    a cancel each write their event, with the outcome contact_outcomes gives."""
    async with receiver() as hooks, deliverer(pool) as sender:
        campaign_id = await add_campaign(pool, numbers(3), hooks.url)
        await queries.pause_running_campaigns(pool, [campaign_id], reason="Plivo said 401")
        async with pool.acquire() as connection:
            await queries.set_campaign_status(
                connection, "hooks", CampaignStatus.RUNNING, [CampaignStatus.PAUSED]
            )
        await pool.execute(
            "INSERT INTO suppressions (list, destination, reason) VALUES ('default', $1, 'asked')",
            numbers(3)[0],
        )
        assert await claimed(pool, campaign_id) == numbers(3)[1:]
        await pool.execute(
            "UPDATE contacts SET status = 'pending', worker_id = NULL, lease_expires_at = NULL"
            " WHERE status = 'claimed'"
        )
        await pool.execute("UPDATE campaigns SET end_at = now() - interval '1 s'")
        assert await queries.expire_ended_campaigns(pool) == {campaign_id: 2}
        async with pool.acquire() as connection:
            await queries.set_campaign_status(
                connection, "hooks", CampaignStatus.CANCELLED, [CampaignStatus.RUNNING]
            )
        await sender.deliver_once()
    events = [request.event for request in hooks.accepted()]
    assert [
        (event["type"], event["data"].get("status"), event["data"].get("outcome"))
        for event in sorted(events, key=lambda event: event["data"]["sequence"])
    ] == [
        ("campaign.status_changed", "running", None),
        ("campaign.status_changed", "paused", None),
        ("campaign.status_changed", "running", None),
        ("contact.settled", "suppressed", "suppressed"),
        ("contact.settled", "expired", "expired"),
        ("contact.settled", "expired", "expired"),
        ("campaign.status_changed", "cancelled", None),
    ]
    paused = next(event for event in events if event["data"].get("status") == "paused")
    assert paused["data"]["reason"] == "Plivo said 401"
    assert paused["data"]["previous_status"] == "running"
