"""A webhook receiver on loopback for the webhook tests: a real aiohttp server that records
every request (body and headers), verifies nothing itself, and answers what the test says."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from standardwebhooks import Webhook

from campaign.webhooks.delivery import Deliverer, DelivererConfig, new_webhook_session

# What the receiver answers to the nth request (from 1): a status and headers.
Responder = Callable[[int], tuple[int, dict[str, str]]]


def always(status: int, headers: dict[str, str] | None = None) -> Responder:
    return lambda _n: (status, headers or {})


@dataclass
class Received:
    """One request the receiver got."""

    body: bytes
    headers: dict[str, str]
    status: int

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class Receiver:
    """The receiver's URL, what it got, and what it answers (changeable while it runs)."""

    url: str
    responder: Responder
    requests: list[Received] = field(default_factory=list)
    # How long each answer takes.
    delay_s: float = 0.0

    def accepted(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [request for request in self.requests if 200 <= request.status < 300]

    def verified(self, secret: str) -> dict[str, dict[str, Any]]:
        """The accepted events by webhook-id (repeats dropped), each verified with the
        Standard Webhooks reference library: a bad signature raises."""
        events: dict[str, dict[str, Any]] = {}
        for request in self.accepted():
            document = Webhook(secret).verify(request.body, request.headers)
            events[request.headers["webhook-id"]] = document
        return events


@contextlib.asynccontextmanager
async def receiver(responder: Responder | None = None) -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.1 at a free port, answering 204 unless told otherwise."""
    state = Receiver(url="", responder=responder or always(204))

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        status, headers = state.responder(len(state.requests) + 1)
        state.requests.append(Received(body, dict(request.headers), status))
        return web.Response(status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/hooks", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield state
    finally:
        await runner.cleanup()


def deliverer_config(**changes: Any) -> DelivererConfig:
    """Private addresses allowed (the receiver is on loopback), quick polls and retries."""
    values: dict[str, Any] = {
        "worker_id": "test-deliverer",
        "retry_delays_s": (0.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05),
        "allow_private": True,
        "timeout_s": 5.0,
        "poll_interval_s": 0.05,
        "batch_size": 50,
        **changes,
    }
    return DelivererConfig(**values)


@contextlib.asynccontextmanager
async def deliverer(pool: asyncpg.Pool, **changes: Any) -> AsyncIterator[Deliverer]:
    """A deliverer on `pool` with its own HTTP session (not started: run it or call
    deliver_once)."""
    config = deliverer_config(**changes)
    async with new_webhook_session(config) as session:
        yield Deliverer(pool, session, config)


async def endpoint_secret(pool: asyncpg.Pool, url: str) -> str:
    """The secret the endpoint's events are signed with (generated with it)."""
    secret: str = await pool.fetchval("SELECT secret FROM webhook_endpoints WHERE url = $1", url)
    return secret
