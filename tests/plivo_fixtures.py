"""Helpers shared by the Plivo client and simulator tests: fake credentials, configs, servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from campaign.plivo import PlivoClient, PlivoClientConfig
from campaign.simulator import SimulatorConfig

AUTH_ID = "MATESTACCOUNT0000001"
AUTH_TOKEN = "test-auth-token-5ecret-0123456789"
FROM_NUMBER = "14155550100"
ANSWER_URL = "https://example.com/answer"


def destinations(count: int, first: int = 14155551000) -> list[str]:
    """`count` distinct valid US numbers."""
    return [str(first + index) for index in range(count)]


def call_parameters(**extra: object) -> dict[str, object]:
    """The minimum a Make-a-call request needs, plus `extra`."""
    return {"from": FROM_NUMBER, "answer_url": ANSWER_URL, **extra}


def simulator_config(**changes: Any) -> SimulatorConfig:
    """A simulator with the test credentials, no callbacks and a CPS that never queues."""
    values: dict[str, Any] = {
        "auth_id": AUTH_ID,
        "auth_token": AUTH_TOKEN,
        "calls_per_second": 10_000.0,
        "send_callbacks": False,
        "seed": 7,
        "retry_after_s": 0.01,
        **changes,
    }
    return SimulatorConfig(**values)


def client_config(base_url: str, **changes: Any) -> PlivoClientConfig:
    """A client config with short time-outs and tiny back-offs so failure tests stay fast."""
    values: dict[str, Any] = {
        "auth_id": AUTH_ID,
        "auth_token": AUTH_TOKEN,
        "api_url": base_url,
        "connect_timeout_s": 1.0,
        "timeout_s": 2.0,
        "retry_attempts": 3,
        "retry_budget_s": 5.0,
        "backoff_initial_s": 0.001,
        "backoff_max_s": 0.01,
        **changes,
    }
    return PlivoClientConfig(**values)


@contextlib.asynccontextmanager
async def plivo_client(base_url: str, **changes: Any) -> AsyncIterator[PlivoClient]:
    """A client on its own session, closed afterwards."""
    async with aiohttp.ClientSession() as session:
        yield PlivoClient(session, client_config(base_url, **changes))


@dataclass
class FakePlivo:
    """An in-process server answering Make-a-call with a canned handler; counts what it got."""

    base_url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fake_plivo(
    reply: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[FakePlivo]:
    """Serve `reply` at Plivo's Make-a-call path on loopback, recording each request."""
    fake = FakePlivo(base_url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fake.received.append({"path": request.path, "body": body})
        fake.headers.append(dict(request.headers))
        return await reply(request)

    app = web.Application()
    app.router.add_post("/v1/Account/{auth_id}/Call/", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        fake.base_url = f"http://{host}:{port}"
        yield fake
    finally:
        await runner.cleanup()


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start_s: float = 1_800_000_000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
