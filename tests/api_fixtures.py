"""The HTTP API on loopback for tests: the engine's app with /api/v1/ mounted on a pool of its
own, a read-write and a read-only key, a client session, and helpers to send CSV uploads."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from plivo_fixtures import AUTH_TOKEN
from worker_fixtures import free_port

from campaign import db, queries
from campaign.api.app import create_api_app
from campaign.api.keys import key_hash, new_key
from campaign.config import Settings
from campaign.metrics import Metrics
from campaign.web import WebConfig, serving


@dataclass
class Api:
    """The running API: its base URL (…/api/v1), keys, its own pool, and a session."""

    url: str
    key: str
    read_only_key: str
    api_pool: asyncpg.Pool
    session: aiohttp.ClientSession

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}", **extra}

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """Send a request; (status, its JSON or text, the response)."""
        async with self.session.request(
            method, self.url + path, headers=self.headers(key, **(headers or {})), **kwargs
        ) as response:
            text = await response.text()
            body: Any = text
            if response.content_type in ("application/json", "application/problem+json"):
                body = json.loads(text)
            return response.status, body, response


def upload(
    settings: Mapping[str, Any] | None, csv_text: str, filename: str = "contacts.csv"
) -> aiohttp.FormData:
    """A multipart body: a `settings` JSON part (unless None) and a `file` part."""
    form = aiohttp.FormData()
    if settings is not None:
        form.add_field("settings", json.dumps(settings), content_type="application/json")
    form.add_field("file", csv_text.encode(), filename=filename, content_type="text/csv")
    return form


NEW_CAMPAIGN = {"from": "+14155550100", "answer-url": "https://example.com/answer.xml"}


def numbers_csv(count: int, start: int = 1000, bad: int = 0) -> str:
    """`phone,name` rows of US numbers, then `bad` rows that are not numbers."""
    rows = ["phone,name"]
    rows += [f"+1415555{start + index:04d},person {index}" for index in range(count)]
    rows += [f"not-a-number-{index},bad {index}" for index in range(bad)]
    return "\n".join(rows) + "\n"


@contextlib.asynccontextmanager
async def running_api(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[Api]:
    """The app (callbacks and the API) on a free loopback port, with two fresh keys."""
    key, read_only_key = new_key(), new_key()
    await queries.create_api_key(pool, "tests", key_hash(key), read_only=False)
    await queries.create_api_key(pool, "reader", key_hash(read_only_key), read_only=True)
    async with (
        db.open_api_pool(settings) as api_pool,
        serving(
            pool,
            Metrics(),
            WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,)),
            "127.0.0.1",
            0,
            status_pool=status_pool,
            api=create_api_app(api_pool, settings),
        ) as url,
        aiohttp.ClientSession() as session,
    ):
        yield Api(url + "/api/v1", key, read_only_key, api_pool, session)


@contextlib.contextmanager
def serve_process(
    campaign_command: list[str], env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`campaign serve` as a subprocess on a free port until the block ends (then SIGTERM);
    yields its base URL."""
    port = free_port()
    env = env | {"PLIVO_AUTH_TOKEN": "serve-secret-token", "CAMPAIGN_HTTP_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        [*campaign_command, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    ) as process:  # fmt: skip
        try:
            for _ in range(100):
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            else:
                raise AssertionError("campaign serve did not come up")
            yield base, process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            if process.poll() is None:
                process.kill()
