"""/metrics and /healthz beside a worker: their own connections, one read however many
requests, a bearer token; malformed signature headers over a raw socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
from plivo_fixtures import AUTH_TOKEN
from prometheus_client.parser import text_string_to_metric_families
from worker_fixtures import wait_for

from campaign.metrics import Metrics
from campaign.web import WebConfig, serving

METRICS_TOKEN = "metrics-token-0123456789abcdef"


@dataclass
class Served:
    """The app on loopback, the pool it records with, and a client session."""

    url: str
    metrics: Metrics
    session: aiohttp.ClientSession


async def _serve(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, config: WebConfig
) -> AsyncIterator[Served]:
    metrics = Metrics()
    async with (
        serving(pool, metrics, config, "127.0.0.1", 0, status_pool=status_pool) as url,
        aiohttp.ClientSession() as session,
    ):
        yield Served(url, metrics, session)


@pytest.fixture
async def served(pool: asyncpg.Pool, status_pool: asyncpg.Pool) -> AsyncIterator[Served]:
    async for running in _serve(
        pool, status_pool, WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,))
    ):
        yield running


async def _campaign_with_contact(pool: asyncpg.Pool) -> int:
    campaign_id: int = await pool.fetchval(
        """INSERT INTO campaigns (name, status, "from", answer_url)
           VALUES ('web', 'running', '+14155550100', 'https://example.com/a.xml') RETURNING id"""
    )
    contact_id: int = await pool.fetchval(
        "INSERT INTO contacts (campaign_id, destination, raw_destination) "
        "VALUES ($1, '+14155550101', '+14155550101') RETURNING id",
        campaign_id,
    )
    return contact_id


async def _get(served: Served, path: str, **headers: str) -> tuple[int, str]:
    async with served.session.get(served.url + path, headers=headers) as response:
        return response.status, await response.text()


async def _waiting_on_locks(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def test_scrapes_take_no_connection_of_the_dialing_pool(
    pool: asyncpg.Pool, served: Served, database_url: str
) -> None:
    """While the contact counts cannot be read (campaigns locked by another session), 50
    scrapes and 20 health checks run: one read waits on the lock (not 50), /healthz answers
    200 on the second connection of the status pool, every connection of the dialing pool
    stays free, and a reply write through it completes. Once the lock goes, every scrape gets
    the counts."""
    contact_id = await _campaign_with_contact(pool)
    idle_before = pool.get_idle_size()
    blocker = await asyncpg.connect(database_url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE campaigns IN ACCESS EXCLUSIVE MODE")
        scrapes = [asyncio.create_task(_get(served, "/metrics")) for _ in range(50)]

        async def read_waits() -> bool:
            return await _waiting_on_locks(pool) >= 1

        await wait_for(read_waits)
        health = await asyncio.gather(*(_get(served, "/healthz") for _ in range(20)))
        assert {status for status, _ in health} == {200}
        assert await _waiting_on_locks(pool) == 1
        assert pool.get_idle_size() == idle_before
        async with asyncio.timeout(30):  # generous: it waits on nothing the scrapes hold
            await pool.execute(
                "UPDATE contacts SET status = 'fired', request_uuid = 'r-1' WHERE id = $1",
                contact_id,
            )
        assert not any(scrape.done() for scrape in scrapes)
        await transaction.rollback()
    finally:
        await blocker.close()
    results = await asyncio.gather(*scrapes)
    assert {status for status, _ in results} == {200}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(results[0][1])
        for sample in family.samples
    }
    assert samples[("campaign_contacts", (("campaign", "web"), ("status", "fired")))] == 1


async def test_the_counts_are_read_at_most_every_refresh_s(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool
) -> None:
    """With CAMPAIGN_METRICS_REFRESH_S of an hour, a second scrape serves the counts the first
    one read, even after a new contact: no scrape reads the database again before then."""
    config = WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,), metrics_refresh_s=3600)
    await _campaign_with_contact(pool)
    async for served in _serve(pool, status_pool, config):
        first = await _get(served, "/metrics")
        assert 'campaign_contacts{campaign="web",status="pending"} 1.0' in first[1]
        await pool.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination) "
            "SELECT id, '+14155550102', '+14155550102' FROM campaigns"
        )
        second = await _get(served, "/metrics")
        assert 'campaign_contacts{campaign="web",status="pending"} 1.0' in second[1]


async def test_metrics_token_is_required_when_set(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """With CAMPAIGN_METRICS_TOKEN, /metrics answers 401 (with WWW-Authenticate) without
    `Authorization: Bearer <token>` or with another token, 200 with it; /healthz needs none;
    the token appears in no response and no log line."""
    caplog.set_level(logging.DEBUG)
    config = WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,), metrics_token=METRICS_TOKEN)
    assert METRICS_TOKEN not in repr(config)
    async for served in _serve(pool, status_pool, config):
        bodies = []
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {METRICS_TOKEN}"},
            {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        ):
            async with served.session.get(served.url + "/metrics", headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
                bodies.append(await response.text())
        status, text = await _get(served, "/metrics", Authorization=f"Bearer {METRICS_TOKEN}")
        assert status == 200
        assert "campaign_callbacks_received" in text
        bodies.append(text)
        assert (await _get(served, "/healthz"))[0] == 200
    assert METRICS_TOKEN not in "".join(bodies) + caplog.text


async def _raw_request(url: str, request: bytes) -> bytes:
    """Send bytes as they are (aiohttp's client refuses non-ASCII headers) and read the reply."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("signature", "nonce"),
    [
        (b"\xff\xfe\xc3bad", b"12345678901234567890"),
        (b"abc=", b"\xff\xfe"),
        (b"\xc3\xa9t\xc3\xa9", b"\xe2\x82\xac"),
    ],
)
async def test_malformed_signature_headers_get_403_and_are_counted(
    served: Served, signature: bytes, nonce: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A signature or nonce header of bytes that are not UTF-8 (or not ASCII) gets 403 and
    counts as a signature refusal, like a wrong one; no 500, no traceback in the log."""
    body = b"To=14155551000&CallStatus=busy"
    request = (
        b"POST /plivo/hangup?campaign=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Plivo-Signature-V3: " + signature + b"\r\n"
        b"X-Plivo-Signature-V3-Nonce: " + nonce + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    caplog.set_level(logging.DEBUG)
    reply = await _raw_request(served.url, request)
    assert reply.startswith(b"HTTP/1.1 403 "), reply[:200]
    rejected = served.metrics.registry.get_sample_value(
        "campaign_callbacks_rejected_total", {"reason": "signature"}
    )
    assert rejected == 1
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
