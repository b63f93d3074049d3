"""Benchmark: callbacks per second one `campaign worker` process records while it dials.

    .venv/bin/python bench/callbacks.py --callbacks 20000 --concurrency 64

A fresh database on the local PostgreSQL (--server-url); a campaign of N contacts already
`fired` (each with its request_uuid), and a second campaign the worker dials at the same time
through `campaign simulator` (its own process, no callbacks); one `campaign worker` process
serving callbacks (CAMPAIGN_HTTP_PORT). This script then posts N signed hangup callbacks (half
of them `busy`, which the campaign redials) at --concurrency in flight, and prints callbacks/s
as answered and as recorded in call_events. Signatures are computed before the clock starts, so
the load generator's CPU is spent on HTTP only. Talks to nothing but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import aiohttp
import asyncpg
import psutil

from campaign import db
from campaign.signature import SIGNATURE_V3_HEADER, SIGNATURE_V3_NONCE_HEADER, compute_signature_v3

AUTH_ID = "MABENCHMARK000000001"
AUTH_TOKEN = "bench-auth-token"
CAMPAIGN = Path(sys.executable).with_name("campaign")


def postgres_cpu_s() -> float:
    """CPU seconds used so far by the PostgreSQL server's processes."""
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info["cpu_times"]
        if process.info["name"] in ("postgres", "postmaster") and times is not None:
            total += times.user + times.system
    return total


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {timeout_s:g}s")


async def prepare(server_url: str, callbacks: int, dial_contacts: int) -> tuple[str, int]:
    """A fresh migrated database with the two campaigns; returns (url, tracked campaign id)."""
    name = f"campaign_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = db.with_database(server_url, name)
    connection = await asyncpg.connect(url)
    try:
        await db.migrate(connection)
        tracked = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, redial_on, '
            "redial_delays_s, max_attempts, track_calls) VALUES ('tracked', 'running', "
            "'+14155550100', 'https://example.com/a', '{busy}', '{3600}', 3, true) RETURNING id"
        )
        request_id = await connection.fetchval(
            "INSERT INTO dial_requests (campaign_id, worker_id, destinations, outcome) "
            "VALUES ($1, 'bench', '{}', 'fired') RETURNING id",
            tracked,
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, status, attempts, "
            "dial_request_id, request_uuid) SELECT $1, '+1' || (2000000000 + g), 'x', 'fired', "
            "1, $2, 'req-' || g FROM generate_series(1, $3) g",
            tracked,
            request_id,
            callbacks,
        )
        dialled = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, batch_size) VALUES '
            "('dialled', 'running', '+14155550100', 'https://example.com/a', 100) RETURNING id"
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination) "
            "SELECT $1, '+1' || (3000000000 + g), 'x' FROM generate_series(1, $2) g",
            dialled,
            dial_contacts,
        )
        # As autovacuum would have by the time a real campaign runs: plans need statistics.
        await connection.execute("ANALYZE contacts")
    finally:
        await connection.close()
    return url, tracked


def signed_callbacks(
    base_url: str, campaign_id: int, count: int
) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(url, form, headers) for `count` hangups, signed for the URL they are posted to."""
    url = f"{base_url}/plivo/hangup?campaign={campaign_id}"
    prepared = []
    for index in range(1, count + 1):
        status = "busy" if index % 2 else "completed"
        form = {
            "From": "14155550100",
            "To": f"1{2000000000 + index}",
            "RequestUUID": f"req-{index}",
            "CallUUID": f"call-{index}",
            "Direction": "outbound",
            "Event": "Hangup",
            "CallStatus": status,
            "HangupCause": "USER_BUSY" if status == "busy" else "NORMAL_CLEARING",
            "HangupCauseCode": "3010" if status == "busy" else "4000",
            "Duration": "0" if status == "busy" else "42",
            "BillDuration": "0" if status == "busy" else "60",
            "StartTime": "2026-11-27 10:00:00",
            "AnswerTime": "" if status == "busy" else "2026-11-27 10:00:03",
            "EndTime": "2026-11-27 10:00:45",
        }
        nonce = f"{index:020d}"
        headers = {
            SIGNATURE_V3_NONCE_HEADER: nonce,
            SIGNATURE_V3_HEADER: compute_signature_v3(AUTH_TOKEN, url, nonce, form, "POST"),
        }
        prepared.append((url, form, headers))
    return prepared


def encode_requests(
    prepared: list[tuple[str, dict[str, str], dict[str, str]]],
) -> list[bytes]:
    """Each callback as the bytes of one HTTP/1.1 keep-alive POST, built before timing starts."""
    encoded = []
    for url, form, headers in prepared:
        parts = urlsplit(url)
        body = urlencode(form).encode()
        head = [
            f"POST {parts.path}?{parts.query} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        encoded.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return encoded


async def post_all(
    base_url: str, requests: list[bytes], concurrency: int
) -> tuple[float, dict[int, int]]:
    """Send every request over `concurrency` keep-alive connections; (seconds, count by status).

    Raw streams rather than an HTTP client: the generator shares this machine's two cores
    with what it measures, so it must cost as little as possible.
    """
    parts = urlsplit(base_url)
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while queue:
                writer.write(queue.pop())
                status_line = await reader.readline()
                status = int(status_line.split()[1])
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - started, statuses


async def bench(arguments: argparse.Namespace) -> None:
    url, tracked = await prepare(arguments.server_url, arguments.callbacks, arguments.dial_contacts)
    simulator_port, http_port = free_port(), free_port()
    simulator = subprocess.Popen(
        [
            str(CAMPAIGN),
            "simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(simulator_port),
            "--cps",
            "1000000",
            "--requests-per-window",
            "1000000",
            "--no-callbacks",
            "--auth-id",
            AUTH_ID,
            "--auth-token",
            AUTH_TOKEN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "CAMPAIGN_DATABASE_URL": url,
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": f"http://127.0.0.1:{simulator_port}",
        "CAMPAIGN_HTTP_PORT": str(http_port),
        "CAMPAIGN_ACCOUNT_CPS": str(arguments.dial_cps),
        "CAMPAIGN_DATABASE_POOL_SIZE": str(arguments.pool_size),
        "CAMPAIGN_LOG_LEVEL": "warning",
    }
    worker = subprocess.Popen([str(CAMPAIGN), "worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        await wait_http(f"http://127.0.0.1:{simulator_port}/__simulator__/ledger?summary=1")
        await wait_http(f"http://127.0.0.1:{http_port}/healthz")
        base_url = f"http://127.0.0.1:{http_port}"
        requests = encode_requests(signed_callbacks(base_url, tracked, arguments.callbacks))
        cpu_before = psutil.Process(worker.pid).cpu_times()
        own_before = psutil.Process().cpu_times()
        simulator_before = psutil.Process(simulator.pid).cpu_times()
        postgres_before = postgres_cpu_s()
        elapsed_s, statuses = await post_all(base_url, requests, arguments.concurrency)
        cpu_after = psutil.Process(worker.pid).cpu_times()
        own_after = psutil.Process().cpu_times()
        simulator_after = psutil.Process(simulator.pid).cpu_times()
        postgres_s = postgres_cpu_s() - postgres_before
        connection = await asyncpg.connect(url)
        try:
            recorded = await connection.fetchval("SELECT count(*) FROM call_events")
            redialled = await connection.fetchval(
                "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND status = 'pending'",
                tracked,
            )
            dialled = await connection.fetchval(
                "SELECT count(*) FROM contacts c JOIN campaigns k ON k.id = c.campaign_id "
                "WHERE k.name = 'dialled' AND c.status = 'fired'"
            )
        finally:
            await connection.close()
    finally:
        worker.send_signal(2)
        worker.wait(timeout=30)
        simulator.terminate()
        simulator.wait(timeout=10)
        admin = await asyncpg.connect(arguments.server_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()
    worker_cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(f"command: {' '.join(sys.argv)}")
    print(f"callbacks posted      {arguments.callbacks:>10,}   in flight {arguments.concurrency}")
    print(f"HTTP statuses         {statuses}")
    print(f"recorded (call_events){recorded:>10,}   redials scheduled {redialled:,}")
    print(f"elapsed               {elapsed_s:>10.2f} s")
    print(f"callbacks per second  {arguments.callbacks / elapsed_s:>10,.0f}   (goal >= 2,000)")
    print(
        f"worker CPU            {worker_cpu_s:>10.2f} s  ({worker_cpu_s / elapsed_s:.0%} of a core)"
    )
    own_s = (own_after.user + own_after.system) - (own_before.user + own_before.system)
    simulator_s = (simulator_after.user + simulator_after.system) - (
        simulator_before.user + simulator_before.system
    )
    print(
        f"other CPU             load generator {own_s:.2f} s, PostgreSQL {postgres_s:.2f} s, "
        f"simulator {simulator_s:.2f} s"
    )
    print(
        f"dialled meanwhile     {dialled:>10,} contacts of the other campaign "
        f"(account CPS {arguments.dial_cps:g})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--callbacks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--dial-contacts", type=int, default=100_000)
    parser.add_argument(
        "--dial-cps", type=float, default=200.0, help="the worker's dialing rate meanwhile"
    )
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument(
        "--server-url",
        default=os.environ.get(
            "CAMPAIGN_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
