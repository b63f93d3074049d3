"""`campaign serve` and tracked campaigns, run as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from api_fixtures import serve_process
from cli_fixtures import LOAD_OPTIONS
from worker_fixtures import free_port

pytestmark = pytest.mark.slow


def run(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def numbers_csv(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.csv"
    path.write_text("phone\n+14155551000\n+14155551001\n")
    return path


def test_track_calls_points_callbacks_at_the_engine(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path
) -> None:
    """--track-calls sets ring/hangup URLs to CAMPAIGN_PUBLIC_URL with the campaign's id."""
    env = cli_env | {"CAMPAIGN_PUBLIC_URL": "https://dialer.example.com/"}
    result = run(
        campaign_command,
        env,
        "load",
        str(numbers_csv),
        "--name",
        "tracked",
        *LOAD_OPTIONS,
        "--track-calls",
        "--redial-on",
        "busy,no-answer",
        "--redial-delays",
        "10m,1h",
        "--max-attempts",
        "3",
    )
    assert result.returncode == 0, result.stderr
    import asyncio

    import asyncpg

    async def read() -> asyncpg.Record | None:
        connection = await asyncpg.connect(cli_env["CAMPAIGN_DATABASE_URL"])
        try:
            return await connection.fetchrow("SELECT * FROM campaigns WHERE name = 'tracked'")
        finally:
            await connection.close()

    row = asyncio.run(read())
    assert row is not None
    campaign_id = row["id"]
    assert row["ring_url"] == f"https://dialer.example.com/plivo/ring?campaign={campaign_id}"
    assert row["hangup_url"] == f"https://dialer.example.com/plivo/hangup?campaign={campaign_id}"
    assert row["track_calls"] is True
    assert list(row["redial_on"]) == ["busy", "no-answer"]
    assert list(row["redial_delays_s"]) == [600, 3600]


@pytest.mark.parametrize(
    ("extra_env", "arguments", "message"),
    [
        ({}, ["--track-calls"], "--track-calls: set CAMPAIGN_PUBLIC_URL"),
        ({}, ["--redial-on", "busy"], "--redial-on: redials need the calls' outcomes"),
        (
            {"CAMPAIGN_PUBLIC_URL": "https://d.example.com"},
            ["--track-calls", "--redial-on", "completed"],
            "--redial-on: 'completed' is not a call status that can be redialled",
        ),
        (
            {"CAMPAIGN_PUBLIC_URL": "https://d.example.com"},
            ["--track-calls", "--redial-on", "busy", "--redial-delays", "10 minutes"],
            "--redial-delays: '10 minutes' is not a duration",
        ),
        (
            {"CAMPAIGN_PUBLIC_URL": "https://d.example.com"},
            ["--track-calls", "--hangup-url", "https://mine.example.com/h"],
            "--hangup-url: --track-calls sets it",
        ),
    ],
)
def test_tracking_options_are_checked(
    campaign_command: list[str],
    cli_env: dict[str, str],
    numbers_csv: Path,
    extra_env: dict[str, str],
    arguments: list[str],
    message: str,
) -> None:
    """Inconsistent tracking or redial options: one line naming the option, exit 2."""
    result = run(
        campaign_command,
        cli_env | extra_env,
        "load",
        str(numbers_csv),
        "--name",
        "x",
        *LOAD_OPTIONS,
        *arguments,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"campaign: error: {message}")


def test_serve_answers_health_metrics_and_refuses_unsigned_callbacks(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """`campaign serve` answers /healthz and /metrics, 403s an unsigned callback, stops on TERM."""
    port = free_port()
    env = cli_env | {"PLIVO_AUTH_TOKEN": "serve-secret-token", "CAMPAIGN_HTTP_PORT": str(port)}
    process = subprocess.Popen(
        [*campaign_command, "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("campaign serve did not come up")
        assert health["status"] == "ok"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert "campaign_callbacks_received" in metrics
        assert "serve-secret-token" not in metrics
        request = urllib.request.Request(
            base + "/plivo/hangup?campaign=1", data=b"To=14155551000&CallStatus=busy"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        refused.value.close()  # the error holds the reply, and with it the connection
        assert refused.value.code == 403
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "serve-secret-token" not in out + err


def test_serve_refuses_to_start_without_the_token(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """Without PLIVO_AUTH_TOKEN no callback could be verified: serve refuses with one line."""
    result = run(campaign_command, cli_env, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.startswith("campaign: error: PLIVO_AUTH_TOKEN is not set")


async def _get(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=120)) as response:
        await response.read()
        return response.status


async def test_scrapes_cannot_starve_the_database_pool(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """30 scrapes of /metrics while the contact counts cannot be read (another session holds a
    lock on campaigns): one read waits, not 30, and /healthz still answers 200 (it used to find
    the pool taken by the scrapes and answer 503); once the lock goes, every scrape gets 200."""
    url = cli_env["CAMPAIGN_DATABASE_URL"]
    setup = await asyncpg.connect(url)
    try:
        await setup.execute(
            """INSERT INTO campaigns (name, status, "from", answer_url)
               VALUES ('busy', 'running', '+14155550100', 'https://example.com/a.xml')"""
        )
    finally:
        await setup.close()
    with serve_process(campaign_command, cli_env) as (base, _process):
        blocker = await asyncpg.connect(url)
        async with aiohttp.ClientSession() as session:
            try:
                transaction = blocker.transaction()
                await transaction.start()
                await blocker.execute("LOCK TABLE campaigns IN ACCESS EXCLUSIVE MODE")
                scrapes = [asyncio.create_task(_get(session, base + "/metrics")) for _ in range(30)]
                waiting = 0
                for _ in range(200):
                    waiting = await _sessions_waiting_on_locks(url)
                    if waiting:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # let every scrape reach the server
                health = [await _get(session, base + "/healthz") for _ in range(3)]
                waiting = await _sessions_waiting_on_locks(url)
                await transaction.rollback()
            finally:
                await blocker.close()
            statuses = await asyncio.gather(*scrapes)
    assert health == [200, 200, 200]
    assert waiting == 1
    assert set(statuses) == {200}


async def _sessions_waiting_on_locks(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return count
    finally:
        await connection.close()


def test_a_signature_header_of_raw_bytes_gets_403_without_a_traceback(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """A callback whose X-Plivo-Signature-V3 is not UTF-8 (sent over a raw socket: HTTP
    clients refuse such headers) is refused with 403 and counted, and `campaign serve` logs no
    traceback (it used to answer 500 with a traceback for each such request)."""
    body = b"To=14155551000&CallStatus=busy"
    request = (
        b"POST /plivo/hangup?campaign=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Plivo-Signature-V3: \xff\xfe\xc3garbage\r\nX-Plivo-Signature-V3-Nonce: 12345\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    with serve_process(campaign_command, cli_env) as (base, process):
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(request)
            reply = b""
            while chunk := connection.recv(65536):
                reply += chunk
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=20)
    assert reply.startswith(b"HTTP/1.1 403 "), reply[:100]
    assert 'campaign_callbacks_rejected_total{reason="signature"} 1.0' in metrics
    assert "Traceback" not in err
