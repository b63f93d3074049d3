"""`campaign worker` with CAMPAIGN_HTTP_PORT set: /healthz and /metrics beside the dialing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from plivo_fixtures import AUTH_ID, AUTH_TOKEN, simulator_config
from prometheus_client.parser import text_string_to_metric_families
from worker_fixtures import free_port

from campaign.simulator import RunningSimulator, running_simulator

pytestmark = pytest.mark.slow

CONTACTS = 5


@pytest.fixture
async def plivo() -> AsyncIterator[RunningSimulator]:
    """The simulator in this test's event loop, reachable by the worker process over loopback."""
    async with running_simulator(simulator_config()) as running:
        yield running


def worker_env(
    cli_env: dict[str, str], plivo: RunningSimulator, port: int, **extra: str
) -> dict[str, str]:
    return {
        **cli_env,
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": plivo.base_url,
        "CAMPAIGN_HTTP_PORT": str(port),
        "CAMPAIGN_WORKER_POLL_INTERVAL_S": "0.1",
        "CAMPAIGN_ACCOUNT_CPS": "0",
        "CAMPAIGN_API_REQUESTS_PER_WINDOW": "0",
        "CAMPAIGN_LOG_LEVEL": "info",
        **extra,
    }


async def load_campaign(command: list[str], env: dict[str, str], tmp_path: Path) -> None:
    """`campaign load` of CONTACTS numbers as campaign `web`."""
    path = tmp_path / "web.csv"
    path.write_text("phone\n" + "".join(f"+1415556{index:04d}\n" for index in range(CONTACTS)))
    process = await asyncio.create_subprocess_exec(
        *command,
        "load",
        str(path),
        "--name",
        "web",
        "--from",
        "+14155550100",
        "--answer-url",
        "https://example.com/answer.xml",
        "--calling-hours",
        "any",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()


class WorkerProcess:
    """A `campaign worker` subprocess; stop() sends SIGTERM once and keeps what it wrote."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.code: int | None = None
        self.out = ""
        self.err = ""

    async def stop(self) -> int:
        if self.code is None:
            if self.process.returncode is None:
                self.process.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(self.process.communicate(), 20)
            assert self.process.returncode is not None
            self.code, self.out, self.err = (
                self.process.returncode,
                stdout.decode(),
                stderr.decode(),
            )
        return self.code


async def start_worker(command: list[str], env: dict[str, str]) -> WorkerProcess:
    process = await asyncio.create_subprocess_exec(
        *command, "worker", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    return WorkerProcess(process)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def wait_until_serving(
    session: aiohttp.ClientSession, worker: WorkerProcess, base_url: str
) -> tuple[int, str]:
    """Poll /healthz until it answers (or fail with what the worker wrote)."""
    for _ in range(400):
        if worker.process.returncode is not None:
            break
        try:
            status, _type, body = await get(session, f"{base_url}/healthz")
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
            continue
        return status, body
    code = await worker.stop()
    pytest.fail(f"nothing served {base_url}/healthz (worker exit {code}):\n{worker.err}")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition: (name, sorted labels) → value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_worker_serves_health_and_metrics_while_it_dials(
    campaign_command: list[str],
    cli_env: dict[str, str],
    plivo: RunningSimulator,
    tmp_path: Path,
) -> None:
    """With CAMPAIGN_HTTP_PORT and no CAMPAIGN_PUBLIC_URL: /healthz answers 200 `ok`, /metrics
    is Prometheus text whose campaign_contacts shows the campaign's calls fired and whose
    request counter shows the worker's own requests; SIGTERM exits 0; stderr warns that
    CAMPAIGN_PUBLIC_URL is not set; the auth token appears nowhere."""
    port = free_port()
    env = worker_env(cli_env, plivo, port)
    await load_campaign(campaign_command, env, tmp_path)
    worker = await start_worker(campaign_command, env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await wait_until_serving(session, worker, base_url)
            assert status == 200, body
            assert json.loads(body)["status"] == "ok"
            fired = ("campaign_contacts", (("campaign", "web"), ("status", "fired")))
            requests = ("campaign_plivo_requests_total", (("outcome", "fired"),))
            metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            text = content_type = ""
            for _ in range(200):  # the worker dials the campaign meanwhile
                status, content_type, text = await get(session, f"{base_url}/metrics")
                assert status == 200, text
                metrics = samples(text)
                # The worker counts a request just after it records the reply: a scrape in
                # between sees the contacts fired and the counter not yet moved.
                if metrics.get(fired) == CONTACTS and metrics.get(requests, 0) >= 1:
                    break
                await asyncio.sleep(0.05)
            assert content_type.startswith("text/plain"), content_type
            assert metrics.get(fired) == CONTACTS, text
            assert metrics.get(requests, 0) >= 1, text
            assert AUTH_TOKEN not in text
    finally:
        code = await worker.stop()
    assert code == 0, worker.err
    assert len(plivo.ledger.dials) == CONTACTS
    warnings = [line for line in worker.err.splitlines() if " WARNING " in line]
    assert any("CAMPAIGN_PUBLIC_URL" in line for line in warnings), worker.err
    assert AUTH_TOKEN not in worker.out + worker.err


async def test_no_public_url_warning_once_it_is_set(
    campaign_command: list[str], cli_env: dict[str, str], plivo: RunningSimulator
) -> None:
    """With CAMPAIGN_PUBLIC_URL set, the worker serves /healthz without warning about it, exits
    0 on SIGTERM, and never writes the auth token."""
    port = free_port()
    env = worker_env(cli_env, plivo, port, CAMPAIGN_PUBLIC_URL="https://dialer.example.com")
    worker = await start_worker(campaign_command, env)
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await wait_until_serving(session, worker, f"http://127.0.0.1:{port}")
            assert status == 200, body
            assert json.loads(body)["status"] == "ok"
    finally:
        code = await worker.stop()
    assert code == 0, worker.err
    assert "CAMPAIGN_PUBLIC_URL" not in worker.err
    assert AUTH_TOKEN not in worker.out + worker.err


async def test_worker_serves_the_api_beside_the_dialing(
    campaign_command: list[str],
    cli_env: dict[str, str],
    plivo: RunningSimulator,
    tmp_path: Path,
) -> None:
    """A worker with CAMPAIGN_HTTP_PORT serves /api/v1/ too: with a key from `campaign api-key
    create`, the campaign it dials is listed with its figures; without one, 401."""
    created = await asyncio.create_subprocess_exec(
        *campaign_command, "api-key", "create", "ops", env=cli_env, stdout=subprocess.PIPE
    )
    key = (await created.communicate())[0].decode().strip()
    await load_campaign(campaign_command, cli_env, tmp_path)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    worker = await start_worker(campaign_command, worker_env(cli_env, plivo, port))
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until_serving(session, worker, base_url)
            async with session.get(
                f"{base_url}/api/v1/campaigns", headers={"Authorization": f"Bearer {key}"}
            ) as response:
                assert response.status == 200
                listed = await response.json()
            assert [row["campaign"] for row in listed["campaigns"]] == ["web"]
            assert listed["campaigns"][0]["total"] == CONTACTS
            async with session.get(f"{base_url}/api/v1/campaigns") as response:
                assert response.status == 401
    finally:
        assert await worker.stop() == 0
    assert key not in worker.out + worker.err
