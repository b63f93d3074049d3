"""The deliverer: sends the outbox's events to their endpoints, signed, at least once.

It runs inside `campaign worker` and `campaign serve` (`delivering`), on a pool of its own and
an HTTP session of its own, so that a receiver that hangs or refuses never holds a connection
or a socket the dialing needs. Each endpoint with due deliveries is drained by a task of its
own (one endpoint's backlog never holds back another's): it claims a batch with SKIP LOCKED and
a lease (any number of deliverers share the outbox, and a dead one's claims are taken again
when their lease ends), sends the batch at once, and records every attempt in one statement.
A contact's events go out in order: the claim skips an event while an earlier one of the same
contact is pending (schema.sql, claim_webhook_deliveries).

A 2xx within the timeout is delivered; anything else is tried again on the schedule of delays
(CAMPAIGN_WEBHOOK_RETRY_DELAYS, with jitter; a longer Retry-After on 429 and 503 is honoured),
then failed. 410 Gone disables the endpoint, and so does failing without a success for
CAMPAIGN_WEBHOOK_DISABLE_AFTER_S (5 days; the log warns from a fifth of it on, and /metrics
shows how long each endpoint has failed). An endpoint that failed a whole batch is tried again
at the next poll, not at once. Secrets never reach a log line or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from campaign import db
from campaign.config import Settings, webhook_secret_key
from campaign.queries import webhooks as queries
from campaign.queries.webhooks import AttemptResult, FailingEndpoint, WebhookEndpoint, WebhookEvent
from campaign.webhooks.signing import message_id, signed_headers
from campaign.webhooks.urls import refusal

logger = logging.getLogger(__name__)

# A Retry-After longer than this is taken as this.
MAX_RETRY_AFTER_S = 86_400.0
# Each delay is stretched or shrunk by up to this share, so retries of many events spread out.
JITTER = 0.1
# Events numbered per campaign per look (sequence_webhook_deliveries).
SEQUENCE_PER_CAMPAIGN = 10_000
# Endpoints drained at once by one deliverer.
MAX_ENDPOINTS_AT_ONCE = 64
# An endpoint failing without a success is warned of once it has failed this share of
# CAMPAIGN_WEBHOOK_DISABLE_AFTER_S (a day of the default five), at most once per
# WARN_EVERY_S per endpoint and deliverer.
WARN_SHARE = 0.2
WARN_EVERY_S = 3600.0


def default_deliverer_id() -> str:
    """host:pid/webhooks, unique among live deliverers and readable in webhook_deliveries."""
    return f"{socket.gethostname()}:{os.getpid()}/webhooks"


@dataclass(frozen=True, slots=True)
class DelivererConfig:
    """What the deliverer needs from Settings."""

    worker_id: str
    retry_delays_s: tuple[float, ...]
    # CAMPAIGN_WEBHOOK_SECRET: signs every endpoint's events when set.
    secret: str | None = field(default=None, repr=False)
    allow_private: bool = False
    timeout_s: float = 15.0
    poll_interval_s: float = 0.5
    batch_size: int = 100
    # Failing without a success for this long disables an endpoint (0: never).
    disable_after_s: float = 432_000.0

    @property
    def lease_s(self) -> float:
        """Long enough for a batch, sent at once, to time out and be recorded."""
        return 2 * self.timeout_s + 5.0

    @classmethod
    def from_settings(cls, settings: Settings, *, worker_id: str | None = None) -> DelivererConfig:
        secret = settings.webhook_secret
        return cls(
            worker_id=worker_id or default_deliverer_id(),
            retry_delays_s=settings.webhook_retry_delays_s,
            secret=None if secret is None else secret.get_secret_value(),
            allow_private=settings.webhook_allow_private,
            timeout_s=settings.webhook_timeout_s,
            poll_interval_s=settings.webhook_poll_interval_s,
            batch_size=settings.webhook_batch_size,
            disable_after_s=settings.webhook_disable_after_s,
        )


def event_body(event: WebhookEvent) -> bytes:
    """The JSON body of an event, the same on every attempt: type, timestamp, data (with the
    campaign's sequence number)."""
    timestamp = event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    data = {**event.data, "sequence": event.sequence}
    document = {"type": event.type, "timestamp": timestamp, "data": data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is rare from receivers: ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def after_failure(
    config: DelivererConfig,
    event: WebhookEvent,
    http_status: int | None,
    error: str,
    retry_after: float | None,
    chance: random.Random,
) -> AttemptResult:
    """A failed attempt's record: again after the next delay of the schedule, or failed."""
    delays = config.retry_delays_s
    if event.attempts >= len(delays):
        return AttemptResult(event.id, "failed", http_status, error)
    delay = delays[event.attempts] * chance.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return AttemptResult(event.id, "pending", http_status, error, delay)


class Deliverer:
    """Delivers due webhook events until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        config: DelivererConfig,
        *,
        chance: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._session = session
        self._config = config
        self._chance = chance or random.Random()
        self._stopping = False
        # When each failing endpoint was last warned of (the loop's clock).
        self._warned_at: dict[int, float] = {}

    @property
    def config(self) -> DelivererConfig:
        return self._config

    def _key(self, endpoint: WebhookEndpoint) -> bytes:
        return webhook_secret_key(self._config.secret or endpoint.secret)

    async def _due_endpoints(self) -> list[WebhookEndpoint]:
        await queries.sequence_webhook_deliveries(self._pool, per_campaign=SEQUENCE_PER_CAMPAIGN)
        return await queries.webhook_endpoints_due(self._pool)

    async def deliver_once(self) -> int:
        """Number the new events and drain every endpoint with due deliveries; the attempts
        made (tests, and a drain at exit)."""
        endpoints = await self._due_endpoints()
        attempts = await asyncio.gather(*(self._drain(endpoint) for endpoint in endpoints))
        return sum(attempts)

    async def run(self, stop: asyncio.Event) -> None:
        """Look for due deliveries every poll interval, draining each endpoint in a task of
        its own, until `stop`; then let attempts in flight end (up to the timeout)."""
        draining: dict[int, asyncio.Task[int]] = {}
        while not stop.is_set():
            try:
                endpoints = await self._due_endpoints()
            except (asyncpg.PostgresError, OSError) as error:
                logger.warning("webhooks: cannot read the outbox: %s", error)
                endpoints = []
            for key in [key for key, task in draining.items() if task.done()]:
                failure = draining.pop(key).exception()
                if failure is not None:
                    logger.error("webhooks: endpoint %d: %r", key, failure)
            for endpoint in endpoints:
                if endpoint.id in draining or len(draining) >= MAX_ENDPOINTS_AT_ONCE:
                    continue
                draining[endpoint.id] = asyncio.create_task(self._drain(endpoint))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.poll_interval_s)
        self._stopping = True
        if draining:
            _done, pending = await asyncio.wait(
                list(draining.values()), timeout=self._config.timeout_s + 5.0
            )
            for task in pending:  # their leases end and another deliverer sends them
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _drain(self, endpoint: WebhookEndpoint) -> int:
        """Claim and send batches of one endpoint until none is due; the attempts made."""
        made = 0
        try:
            key = self._key(endpoint)
        except ValueError as error:
            logger.error("webhooks: endpoint %d: its secret %s; not delivering", endpoint.id, error)
            return 0
        while not self._stopping:
            try:
                batch = await queries.claim_webhook_deliveries(
                    self._pool,
                    endpoint_id=endpoint.id,
                    worker_id=self._config.worker_id,
                    limit=self._config.batch_size,
                    lease_s=self._config.lease_s,
                )
                if not batch:
                    return made
                outcomes = await asyncio.gather(
                    *(self._attempt(endpoint, key, event) for event in batch)
                )
                failing = await queries.record_webhook_attempts(
                    self._pool,
                    [result for result, _gone in outcomes],
                    worker_id=self._config.worker_id,
                    disable_after_s=self._config.disable_after_s,
                )
            except (asyncpg.PostgresError, OSError) as error:
                logger.warning("webhooks: endpoint %d: %s", endpoint.id, error)
                return made
            made += len(batch)
            if any(gone for _result, gone in outcomes):
                await queries.disable_webhook_endpoint(
                    self._pool, endpoint.id, "410 Gone: the receiver asked for no more events"
                )
                logger.warning(
                    "webhooks: endpoint %d (%s) answered 410 Gone and is disabled; "
                    "`campaign webhook redeliver` enables it again",
                    endpoint.id,
                    _shown(endpoint.url),
                )
                return made
            results = [result for result, _gone in outcomes]
            self._log_failures(endpoint, results)
            if any(self._warn_failing(endpoint, health) for health in failing):
                return made  # disabled
            if not any(result.status == "delivered" for result in results):
                # An endpoint that takes nothing waits for the next poll: a refusing one must
                # not spin through its backlog on the CPU the dialing shares.
                return made
        return made

    def _warn_failing(self, endpoint: WebhookEndpoint, health: FailingEndpoint) -> bool:
        """Log that an endpoint failing without a success was disabled (True), or will be."""
        disable_after_s = self._config.disable_after_s
        since = health.failing_since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if health.disabled:
            logger.warning(
                "webhooks: endpoint %d (%s) is disabled: every delivery has failed since %s, "
                "longer than CAMPAIGN_WEBHOOK_DISABLE_AFTER_S (%g s); fix the receiver, then "
                "`campaign webhook redeliver --failed --since T` enables it again",
                endpoint.id,
                _shown(endpoint.url),
                since,
                disable_after_s,
            )
            return True
        if disable_after_s <= 0 or health.failing_s < WARN_SHARE * disable_after_s:
            return False
        now = asyncio.get_running_loop().time()
        warned = self._warned_at.get(endpoint.id)
        if warned is not None and now - warned < WARN_EVERY_S:
            return False
        self._warned_at[endpoint.id] = now
        logger.warning(
            "webhooks: endpoint %d (%s) has failed every delivery since %s (%.1f h); it will be "
            "disabled in %.1f h unless one succeeds (CAMPAIGN_WEBHOOK_DISABLE_AFTER_S)",
            endpoint.id,
            _shown(endpoint.url),
            since,
            health.failing_s / 3600,
            max(disable_after_s - health.failing_s, 0.0) / 3600,
        )
        return False

    def _log_failures(self, endpoint: WebhookEndpoint, results: Sequence[AttemptResult]) -> None:
        failed = [result for result in results if result.status == "failed"]
        if failed:
            logger.warning(
                "webhooks: endpoint %d (%s): %d deliveries failed after their last retry "
                "(latest: %s); `campaign webhook list --failed` shows them",
                endpoint.id,
                _shown(endpoint.url),
                len(failed),
                failed[-1].error,
            )

    async def _attempt(
        self, endpoint: WebhookEndpoint, key: bytes, event: WebhookEvent
    ) -> tuple[AttemptResult, bool]:
        """Send one event; its record, and whether the endpoint answered 410 Gone."""
        host = urlsplit(endpoint.url).hostname or ""
        if not self._config.allow_private:
            try:
                refused = refusal(host, host)
            except ValueError:  # a name, not an address: the resolver checks it
                refused = None
            if refused is not None:
                return after_failure(self._config, event, None, refused, None, self._chance), False
        body = event_body(event)
        headers = signed_headers(key, message_id(event.event_id), int(time.time()), body)
        try:
            async with self._session.post(
                endpoint.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_s),
            ) as response:
                status = response.status
                retry_after = (
                    retry_after_s(response.headers.get("Retry-After"))
                    if status in (429, 503)
                    else None
                )
        except TimeoutError:
            error = f"no answer within {self._config.timeout_s:g} s"
            return after_failure(self._config, event, None, error, None, self._chance), False
        except aiohttp.ClientError as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
            return after_failure(self._config, event, None, error, None, self._chance), False
        if 200 <= status < 300:
            return AttemptResult(event.id, "delivered", status), False
        if status == 410:
            return AttemptResult(event.id, "failed", status, "410 Gone"), True
        error = f"HTTP {status}"
        return after_failure(self._config, event, status, error, retry_after, self._chance), False


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to a refused address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            reason = refusal(host, result["host"])
            if reason is not None:
                raise OSError(reason)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _shown(url: str) -> str:
    """A URL for a log line: scheme, host and path (a query string may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def new_webhook_session(config: DelivererConfig) -> aiohttp.ClientSession:
    """The deliverer's own HTTP session: no cookies kept, addresses checked on every connect."""
    connector = aiohttp.TCPConnector(
        limit=MAX_ENDPOINTS_AT_ONCE * 10,
        limit_per_host=config.batch_size,
        resolver=None if config.allow_private else GuardedResolver(),
    )
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False
    )


@contextlib.asynccontextmanager
async def delivering(settings: Settings) -> AsyncIterator[Deliverer]:
    """Deliver webhook events in the background while the block runs (worker, serve)."""
    config = DelivererConfig.from_settings(settings)
    stop = asyncio.Event()
    async with db.open_webhook_pool(settings) as pool, new_webhook_session(config) as session:
        deliverer = Deliverer(pool, session, config)
        task = asyncio.create_task(deliverer.run(stop))
        try:
            yield deliverer
        finally:
            stop.set()
            await task
