"""Plivo's callbacks through the real app over loopback: signatures, outcomes, redials, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from plivo_fixtures import AUTH_ID, AUTH_TOKEN, client_config, simulator_config
from prometheus_client.parser import text_string_to_metric_families

from campaign import queries
from campaign.callbacks import callback_url
from campaign.metrics import Metrics
from campaign.models import CampaignSpec
from campaign.plivo import PlivoClient
from campaign.signature import SIGNATURE_V3_HEADER, SIGNATURE_V3_NONCE_HEADER, compute_signature_v3
from campaign.simulator import running_simulator
from campaign.web import WebConfig, serving
from campaign.worker import Worker, WorkerConfig

FROM = "+14155550100"


@dataclass
class App:
    """The callback app served on loopback, with what a test needs to talk to it."""

    url: str
    session: aiohttp.ClientSession
    metrics: Metrics

    async def send(
        self,
        path: str,
        fields: dict[str, str],
        *,
        token: str = AUTH_TOKEN,
        signed_url: str | None = None,
        nonce: str | None = "12345678901234567890",
        signature: str | None = None,
        method: str = "POST",
    ) -> tuple[int, str]:
        """A callback as Plivo sends it, signed with `token` for `signed_url` (default: `path`)."""
        url = self.url + path
        headers = {}
        if nonce is not None:
            headers[SIGNATURE_V3_NONCE_HEADER] = nonce
            signed = {} if method == "GET" else fields
            full = signed_url or (url if method == "POST" else f"{url}&{_query(fields)}")
            headers[SIGNATURE_V3_HEADER] = signature or compute_signature_v3(
                token, full, nonce, signed, method
            )
        if method == "POST":
            request = self.session.post(url, data=fields, headers=headers)
        else:
            request = self.session.get(url, params=fields, headers=headers)
        async with request as response:
            return response.status, await response.text()


def _query(fields: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(fields)


@pytest.fixture
async def app(pool: asyncpg.Pool, status_pool: asyncpg.Pool) -> AsyncIterator[App]:
    metrics = Metrics()
    config = WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,))
    async with (
        serving(pool, metrics, config, "127.0.0.1", 0, status_pool=status_pool) as url,
        aiohttp.ClientSession() as session,
    ):
        yield App(url, session, metrics)


async def fired_campaign(
    pool: asyncpg.Pool,
    destinations: list[str],
    *,
    mapped: bool = True,
    redial_on: tuple[str, ...] = (),
    redial_delays_s: tuple[int, ...] = (),
    max_attempts: int = 3,
) -> tuple[int, list[str]]:
    """A campaign whose contacts were sent in one request and fired; returns (id, uuids)."""
    spec = CampaignSpec(
        name="calls",
        from_number=FROM,
        answer_url="https://example.com/a.xml",
        redial_on=redial_on,
        redial_delays_s=redial_delays_s,
        max_attempts=max_attempts,
    )
    uuids = [f"request-{index}" for index in range(len(destinations))]
    async with pool.acquire() as connection:
        campaign = await queries.create_campaign(connection, spec)
        request_id = await connection.fetchval(
            "INSERT INTO dial_requests (campaign_id, worker_id, destinations, request_uuids, "
            "uuids_mapped, outcome) VALUES ($1, 'w', $2, $3, $4, 'fired') RETURNING id",
            campaign.id,
            destinations,
            uuids,
            mapped,
        )
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, status, attempts, "
            "dial_request_id, request_uuid) VALUES ($1, $2, $2, 'fired', 1, $3, $4)",
            [
                (campaign.id, destination, request_id, uuid if mapped else None)
                for destination, uuid in zip(destinations, uuids, strict=True)
            ],
        )
    return campaign.id, uuids


def hangup(to: str, request_uuid: str, status: str = "completed", **extra: str) -> dict[str, str]:
    return {
        "From": "14155550100",
        "To": to.lstrip("+"),
        "RequestUUID": request_uuid,
        "ALegRequestUUID": request_uuid,
        "CallUUID": f"call-{request_uuid}",
        "Direction": "outbound",
        "Event": "Hangup",
        "CallStatus": status,
        "StartTime": "2026-11-27 10:00:00",
        "AnswerTime": "2026-11-27 10:00:05" if status == "completed" else "",
        "EndTime": "2026-11-27 10:01:05",
        "HangupCause": "NORMAL_CLEARING" if status == "completed" else "USER_BUSY",
        "HangupCauseCode": "4000" if status == "completed" else "3010",
        "Duration": "60" if status == "completed" else "0",
        "BillDuration": "60" if status == "completed" else "0",
        **extra,
    }


async def contact(pool: asyncpg.Pool, destination: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM contacts WHERE destination = $1", destination)
    assert row is not None
    return row


async def test_signed_hangup_records_the_outcome(pool: asyncpg.Pool, app: App) -> None:
    """A correctly signed hangup sets the contact's call outcome columns and keeps the event."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000"])
    status, text = await app.send(
        f"/plivo/hangup?campaign={campaign_id}", hangup("+14155551000", uuids[0])
    )
    assert (status, text.strip()) == (200, "recorded")
    row = await contact(pool, "+14155551000")
    assert row["status"] == "fired"
    assert (row["call_status"], row["call_uuid"], row["hangup_cause"]) == (
        "completed",
        "call-request-0",
        "NORMAL_CLEARING",
    )
    assert (row["hangup_cause_code"], row["duration_s"], row["bill_duration_s"]) == (4000, 60, 60)
    assert row["answered_at"].isoformat() == "2026-11-27T10:00:05+00:00"
    assert row["ended_at"].isoformat() == "2026-11-27T10:01:05+00:00"
    events = await pool.fetch("SELECT event, call_status, payload FROM call_events")
    assert [(e["event"], e["call_status"]) for e in events] == [("hangup", "completed")]
    assert events[0]["payload"]["HangupCause"] == "NORMAL_CLEARING"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"token": "not-the-token"}, "wrong token"),
        ({"signed_url": "https://elsewhere.example.com/plivo/hangup?campaign=1"}, "wrong URL"),
        ({"nonce": None}, "no nonce or signature"),
        ({"signature": "bm90IGEgc2lnbmF0dXJl"}, "garbage signature"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_bad_signature_is_refused_and_changes_nothing(
    pool: asyncpg.Pool, app: App, change: dict[str, Any], why: str
) -> None:
    """A callback with a wrong or missing signature gets 403 and leaves the data untouched."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000"])
    status, _ = await app.send(
        f"/plivo/hangup?campaign={campaign_id}", hangup("+14155551000", uuids[0]), **change
    )
    assert status == 403, why
    assert (await contact(pool, "+14155551000"))["call_status"] is None
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 0


async def test_one_of_several_signatures_is_enough(pool: asyncpg.Pool, app: App) -> None:
    """X-Plivo-Signature-V3 may list several signatures (token rotation): one match passes."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000"])
    path = f"/plivo/hangup?campaign={campaign_id}"
    fields = hangup("+14155551000", uuids[0])
    nonce = "98765432109876543210"
    good = compute_signature_v3(AUTH_TOKEN, app.url + path, nonce, fields, "POST")
    other = compute_signature_v3("old-token", app.url + path, nonce, fields, "POST")
    status, _ = await app.send(path, fields, nonce=nonce, signature=f"{other},{good}")
    assert status == 200


async def test_signatures_are_checked_against_the_public_url(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """Behind a proxy, Plivo signs CAMPAIGN_PUBLIC_URL + path + query: that signature passes;
    one over the URL the server itself sees (loopback) is refused."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000"])
    public = "https://dialer.example.com/base"
    config = WebConfig(public_url=public, auth_tokens=(AUTH_TOKEN,))
    path = f"/plivo/hangup?campaign={campaign_id}"
    fields = hangup("+14155551000", uuids[0])
    async with (
        serving(pool, Metrics(), config, "127.0.0.1", 0, status_pool=status_pool) as url,
        aiohttp.ClientSession() as session,
    ):
        app = App(url, session, Metrics())
        status, _ = await app.send(path, fields)  # signed for the loopback URL
        assert status == 403
        status, text = await app.send(path, fields, signed_url=public + path)
        assert (status, text.strip()) == (200, "recorded")
    assert (await contact(pool, "+14155551000"))["call_status"] == "completed"


async def test_get_callbacks_are_verified_too(pool: asyncpg.Pool, app: App) -> None:
    """A campaign with hangup_method GET: parameters in the query, signed by the GET rule."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000"])
    status, text = await app.send(
        f"/plivo/hangup?campaign={campaign_id}",
        hangup("+14155551000", uuids[0], status="busy"),
        method="GET",
    )
    assert (status, text.strip()) == (200, "recorded")
    assert (await contact(pool, "+14155551000"))["call_status"] == "busy"


async def test_a_retried_callback_is_recorded_once(pool: asyncpg.Pool, app: App) -> None:
    """Plivo retries callbacks: the same hangup twice makes one event and one change."""
    campaign_id, uuids = await fired_campaign(
        pool, ["+14155551000"], redial_on=("busy",), redial_delays_s=(60,)
    )
    path = f"/plivo/hangup?campaign={campaign_id}"
    fields = hangup("+14155551000", uuids[0], status="busy")
    first = await app.send(path, fields)
    second = await app.send(path, fields)
    assert [first[1].strip(), second[1].strip()] == ["redial", "duplicate"]
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 1
    row = await contact(pool, "+14155551000")
    assert (row["status"], row["attempts"]) == ("pending", 1)


async def test_unknown_request_uuid_is_answered_and_ignored(pool: asyncpg.Pool, app: App) -> None:
    """A callback for a request_uuid no contact owns: 200 (so Plivo stops), nothing touched."""
    campaign_id, _ = await fired_campaign(pool, ["+14155551000"])
    status, text = await app.send(
        f"/plivo/hangup?campaign={campaign_id}", hangup("+14155551000", "someone-elses-uuid")
    )
    assert (status, text.strip()) == (200, "unknown")
    assert (await contact(pool, "+14155551000"))["call_status"] is None
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 0
    status, text = await app.send(
        f"/plivo/hangup?campaign={campaign_id}", hangup("+14155559999", "request-0")
    )
    assert (status, text.strip()) == (200, "unknown")


async def test_a_callback_before_the_reply_is_recorded_is_retried(
    pool: asyncpg.Pool, app: App
) -> None:
    """A hangup for a contact still `sending` (Plivo called back before its reply to the request
    was recorded) gets 503 and changes nothing; once the reply is in, its retry is recorded and
    the redial it asks for is scheduled."""
    campaign_id, uuids = await fired_campaign(
        pool, ["+14155551000"], redial_on=("busy",), redial_delays_s=(60,)
    )
    # As the worker leaves it between sending and recording: sending, no uuid, no reply yet.
    await pool.execute("UPDATE contacts SET status = 'sending', request_uuid = NULL")
    await pool.execute("UPDATE dial_requests SET request_uuids = NULL, outcome = NULL")
    path = f"/plivo/hangup?campaign={campaign_id}"
    fields = hangup("+14155551000", uuids[0], status="busy")
    status, _ = await app.send(path, fields)
    assert status == 503
    row = await contact(pool, "+14155551000")
    assert (row["status"], row["call_status"]) == ("sending", None)
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 0
    # The worker records Plivo's reply; Plivo retries the callback.
    await pool.execute("UPDATE contacts SET status = 'fired', request_uuid = $1", uuids[0])
    await pool.execute("UPDATE dial_requests SET request_uuids = $1, outcome = 'fired'", uuids)
    status, text = await app.send(path, fields)
    assert (status, text.strip()) == (200, "redial")
    row = await contact(pool, "+14155551000")
    assert (row["status"], row["call_status"]) == ("pending", "busy")


async def test_a_foreign_uuid_does_not_settle_an_unsettled_contact(
    pool: asyncpg.Pool, app: App
) -> None:
    """A contact of an unsettled batch (no uuid of its own yet) takes only a uuid of its batch:
    a callback with any other request_uuid is answered 200 and ignored."""
    campaign_id, _ = await fired_campaign(pool, ["+14155551000", "+14155551001"], mapped=False)
    status, text = await app.send(
        f"/plivo/hangup?campaign={campaign_id}", hangup("+14155551000", "someone-elses-uuid")
    )
    assert (status, text.strip()) == (200, "unknown")
    row = await contact(pool, "+14155551000")
    assert (row["request_uuid"], row["call_status"]) == (None, None)
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 0


async def test_a_callback_settles_a_contact_whose_fate_was_unknown(
    pool: asyncpg.Pool, app: App
) -> None:
    """A request that timed out left its contacts `unknown`, their uuids never learned: a signed
    hangup of the campaign for the destination shows the call exists, so the contact becomes
    `fired` with the callback's uuid and outcome (and is redialled if the campaign says so),
    with no need to reconcile. A contact with a known uuid still ignores foreign ones."""
    campaign_id, _ = await fired_campaign(
        pool, ["+14155551000", "+14155551001"], redial_on=("busy",), redial_delays_s=(60,)
    )
    await pool.execute(
        "UPDATE contacts SET status = 'unknown', request_uuid = NULL "
        "WHERE destination = '+14155551000'"
    )
    await pool.execute("UPDATE dial_requests SET request_uuids = NULL, outcome = 'unknown'")
    path = f"/plivo/hangup?campaign={campaign_id}"
    status, text = await app.send(path, hangup("+14155551000", "uuid-from-plivo", status="busy"))
    assert (status, text.strip()) == (200, "redial")
    row = await contact(pool, "+14155551000")
    assert (row["status"], row["request_uuid"], row["call_status"]) == (
        "pending",
        "uuid-from-plivo",
        "busy",
    )
    assert "callback" in row["last_error"]
    events = await pool.fetch("SELECT request_uuid FROM call_events")
    assert [e["request_uuid"] for e in events] == ["uuid-from-plivo"]
    # Its batch-mate was fired with a uuid of its own (mapped before the uuids were cleared).
    status, text = await app.send(path, hangup("+14155551001", "another-uuid"))
    assert (status, text.strip()) == (200, "unknown")


async def test_callbacks_settle_an_unsettled_batch(pool: asyncpg.Pool, app: App) -> None:
    """A batch whose uuids could not be mapped: each callback's To and RequestUUID settle it."""
    destinations = ["+14155551000", "+14155551001", "+14155551002"]
    campaign_id, uuids = await fired_campaign(pool, destinations, mapped=False)
    # Plivo's order is unknown: the callbacks say which uuid is whose.
    owners = {destinations[0]: uuids[2], destinations[1]: uuids[0], destinations[2]: uuids[1]}
    for destination, uuid in owners.items():
        status, _ = await app.send(
            f"/plivo/ring?campaign={campaign_id}",
            {
                "To": destination.lstrip("+"),
                "RequestUUID": uuid,
                "CallUUID": f"call-{uuid}",
                "Event": "Ring",
                "CallStatus": "ringing",
            },
        )
        assert status == 200
    rows = await pool.fetch("SELECT destination, request_uuid, call_status FROM contacts")
    assert {r["destination"]: r["request_uuid"] for r in rows} == owners
    assert {r["call_status"] for r in rows} == {"ringing"}


async def test_callback_corrects_a_wrong_positional_mapping(pool: asyncpg.Pool, app: App) -> None:
    """If Plivo's uuid order was not `to` order, the hangup's RequestUUID wins."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000", "+14155551001"])
    status, _ = await app.send(
        f"/plivo/hangup?campaign={campaign_id}", hangup("+14155551000", uuids[1])
    )
    assert status == 200
    assert (await contact(pool, "+14155551000"))["request_uuid"] == uuids[1]
    # Its batch-mate no longer claims that uuid; its own callback will settle it.
    assert (await contact(pool, "+14155551001"))["request_uuid"] is None


async def test_redial_delays_and_the_last_attempt(pool: asyncpg.Pool, app: App) -> None:
    """Busy → pending after 10 min, then 1 h, 1 h (the last delay repeats); then out of attempts."""
    campaign_id, _uuids = await fired_campaign(
        pool,
        ["+14155551000"],
        redial_on=("busy", "no-answer"),
        redial_delays_s=(600, 3600),
        max_attempts=4,
    )
    path = f"/plivo/hangup?campaign={campaign_id}"
    outcomes = []
    for attempt in (1, 2, 3, 4):
        # The worker dialled attempt n: fired, with the request's uuid.
        await pool.execute(
            "UPDATE contacts SET status = 'fired', attempts = $1, request_uuid = $2",
            attempt,
            f"attempt-{attempt}",
        )
        status, text = await app.send(
            path, hangup("+14155551000", f"attempt-{attempt}", status="busy")
        )
        assert status == 200
        row = await pool.fetchrow(
            "SELECT status, extract(epoch FROM next_attempt_at - now()) AS wait_s FROM contacts"
        )
        assert row is not None
        outcomes.append((text.strip(), row["status"], round(float(row["wait_s"]) / 60)))
    assert outcomes[:3] == [
        ("redial", "pending", 10),
        ("redial", "pending", 60),
        ("redial", "pending", 60),
    ]
    assert outcomes[3][:2] == ("recorded", "fired")  # 4 attempts made: no more
    row = await contact(pool, "+14155551000")
    assert (row["call_status"], row["attempts"]) == ("busy", 4)
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 4


async def test_statuses_not_listed_are_not_redialled(pool: asyncpg.Pool, app: App) -> None:
    """A no-answer is final when the campaign redials only busy calls."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000"], redial_on=("busy",))
    await app.send(
        f"/plivo/hangup?campaign={campaign_id}",
        hangup("+14155551000", uuids[0], status="no-answer"),
    )
    row = await contact(pool, "+14155551000")
    assert (row["status"], row["call_status"]) == ("fired", "no-answer")


async def test_too_large_and_malformed_callbacks(pool: asyncpg.Pool, app: App) -> None:
    """A body over the size limit gets 413; a callback without ?campaign= gets 400."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000"])
    status, _ = await app.send(
        f"/plivo/hangup?campaign={campaign_id}",
        hangup("+14155551000", uuids[0], Padding="x" * 40_000),
    )
    assert status == 413
    status, _ = await app.send("/plivo/hangup", hangup("+14155551000", uuids[0]))
    assert status == 400
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 0


async def test_healthz_and_metrics(pool: asyncpg.Pool, app: App) -> None:
    """/healthz says ok; /metrics parses as Prometheus text with contacts and callbacks."""
    campaign_id, uuids = await fired_campaign(pool, ["+14155551000", "+14155551001"])
    await app.send(f"/plivo/hangup?campaign={campaign_id}", hangup("+14155551000", uuids[0]))
    await app.send(
        f"/plivo/hangup?campaign={campaign_id}",
        hangup("+14155551001", uuids[1]),
        token="wrong",
    )
    async with app.session.get(app.url + "/healthz") as response:
        assert response.status == 200
        assert (await response.json())["database"] == "ok"
    async with app.session.get(app.url + "/metrics") as response:
        text = await response.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("campaign_contacts", (("campaign", "calls"), ("status", "fired")))] == 2
    key = ("campaign_callbacks_received_total", (("event", "hangup"), ("result", "recorded")))
    assert samples[key] == 1
    assert samples[("campaign_callbacks_rejected_total", (("reason", "signature"),))] == 1
    assert AUTH_TOKEN not in text


async def test_simulated_calls_end_to_end(pool: asyncpg.Pool, status_pool: asyncpg.Pool) -> None:
    """Simulator → real worker → signed callbacks → outcomes; busy calls redialled once."""
    metrics = Metrics()
    web_config = WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,))
    async with serving(
        pool, metrics, web_config, "127.0.0.1", 0, status_pool=status_pool
    ) as app_url:
        spec = CampaignSpec(
            name="e2e",
            from_number=FROM,
            answer_url="http://127.0.0.1:9/answer.xml",
            call_parameters={"machine_detection": "true"},
            redial_on=("busy",),
            redial_delays_s=(0,),
            max_attempts=2,
            track_calls_at=app_url,
        )
        async with pool.acquire() as connection:
            campaign = await queries.create_campaign(connection, spec)
            assert campaign.call_parameters["hangup_url"] == callback_url(
                app_url, "hangup", campaign.id
            )
            await connection.executemany(
                "INSERT INTO contacts (campaign_id, destination, raw_destination) "
                "VALUES ($1, $2, $2)",
                [(campaign.id, f"+1415555{index:04d}") for index in range(1000, 1020)],
            )
        shares = {"completed": 1.0, "busy": 1.0}
        async with (
            running_simulator(simulator_config(send_callbacks=True, outcome_shares=shares)) as sim,
            aiohttp.ClientSession() as session,
        ):
            client = PlivoClient(session, client_config(sim.base_url))
            config = WorkerConfig(
                worker_id="e2e",
                auth_id=AUTH_ID,
                poll_interval_s=0.05,
                account_cps=0,
                api_requests_per_window=0,
                callback_wait_s=30,
            )
            await asyncio.wait_for(Worker(pool, client, config, metrics).run(drain=True), 30)
            await sim.simulator.settle()
            ledger = sim.ledger
    rows = await pool.fetch(
        "SELECT destination, status, attempts, call_status, machine FROM contacts"
    )
    assert all(r["call_status"] in ("completed", "busy") for r in rows)
    # Machine detection was asked for: every answered call says whether a machine answered.
    assert all(r["machine"] is not None for r in rows if r["call_status"] == "completed")
    machine_events = await pool.fetchval("SELECT count(*) FROM call_events WHERE event = 'machine'")
    assert machine_events == sum(
        1 for c in ledger.callbacks if c.event == "machine_detection" and c.http_status == 200
    )
    assert machine_events > 0
    assert all(r["status"] == "fired" for r in rows)
    redialled = [r for r in rows if r["attempts"] == 2]
    assert redialled  # with half of the calls busy, some were dialled twice
    dials = ledger.dial_counts()
    assert all(dials[r["destination"]] == r["attempts"] for r in rows)
    attempts = await pool.fetch("SELECT contact_id, attempt, call_status FROM dial_attempts")
    assert len(attempts) == sum(r["attempts"] for r in rows)
    progress = await queries.progress(pool, "e2e")
    assert progress is not None
    assert progress.status == "completed"
    # Every status callback was accepted in the end (a hangup that raced its request's reply
    # was answered 503 and accepted when the simulator tried again, as Plivo does).
    last_try = {
        (callback.call_uuid, callback.event): callback.http_status
        for callback in ledger.callbacks
        if callback.event != "answer"
    }
    assert set(last_try.values()) == {200}
