"""Helpers shared by the worker tests: numbers, a campaign of pending contacts, a worker config,
polling for a condition, a free port, one claim's destinations."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from plivo_fixtures import AUTH_ID

from campaign import queries
from campaign.models import CampaignSpec
from campaign.queries.batches import Claim
from campaign.ratelimit import SHARED_SLOT_SLACK_S
from campaign.worker import WorkerConfig

FROM = "+14155550100"


def numbers(count: int, first: int = 14155551000) -> list[str]:
    """`count` distinct valid US numbers in E.164, as the importer stores them."""
    return [f"+{first + index}" for index in range(count)]


async def make_campaign(
    pool: asyncpg.Pool,
    destinations: Sequence[str],
    *,
    name: str = "test",
    batch_size: int = 100,
    max_attempts: int = 3,
    calls_per_second: float | None = None,
) -> int:
    """A running campaign with these destinations as pending contacts, in this order."""
    spec = CampaignSpec(
        name=name,
        from_number=FROM,
        answer_url="https://example.com/answer.xml",
        batch_size=batch_size,
        max_attempts=max_attempts,
        calls_per_second=calls_per_second,
    )
    async with pool.acquire() as connection:
        campaign = await queries.create_campaign(connection, spec)
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, line_number) "
            "VALUES ($1, $2, $2, $3)",
            [(campaign.id, d, line) for line, d in enumerate(destinations, start=2)],
        )
    return campaign.id


def worker_config(**changes: Any) -> WorkerConfig:
    """Short polls and back-offs; no rate limits unless a test sets them."""
    values: dict[str, Any] = {
        "worker_id": "test-worker",
        "auth_id": AUTH_ID,
        "concurrency": 2,
        "lease_s": 30.0,
        "poll_interval_s": 0.05,
        "backoff_s": 60.0,
        "pace_window_s": 0.1,
        "stop_timeout_s": 5.0,
        "account_cps": 0.0,
        "api_requests_per_window": 0,
        **changes,
    }
    return WorkerConfig(**values)


async def wait_for(
    condition: Callable[[], Awaitable[Any]], timeout_s: float = 20.0, step_s: float = 0.05
) -> None:
    """Poll `condition` until it is true; fail the test after `timeout_s`."""
    for _ in range(int(timeout_s / step_s)):
        if await condition():
            return
        await asyncio.sleep(step_s)
    raise AssertionError("condition not met in time")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def claim_now(
    pool: queries.Executor,
    campaign_id: int,
    *,
    wanted: int = 100,
    write_ahead: bool = False,
    cap: int | None = None,
    account_cap: int | None = None,
) -> Claim:
    """One claim now, without rate limits: written ahead at once or only claimed; `cap` of
    calls per number per day, `account_cap` of concurrent calls."""
    return await queries.claim_batch(
        pool,
        campaign_id=campaign_id,
        worker_id="w",
        wanted=wanted,
        lease_s=60,
        pace_window_s=1.0,
        call_limiters=(),
        request_limiters=(),
        own_limiters=(),
        shared_slot_slack_s=SHARED_SLOT_SLACK_S,
        write_ahead_within_s=1e9 if write_ahead else -1.0,
        max_calls_per_number=cap,
        account_max_concurrent_calls=account_cap,
    )


async def claimed(
    pool: asyncpg.Pool, campaign_id: int, *, cap: int | None = None, wanted: int = 100
) -> list[str]:
    """The destinations one claim takes now (no rate limits; never written ahead)."""
    return (await claim_now(pool, campaign_id, cap=cap, wanted=wanted)).destinations
