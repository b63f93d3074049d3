"""Make-a-call throughput of one client process against the simulator in its own process.

Starts `campaign simulator` on 127.0.0.1 (zero latency, no callbacks, a CPS that never queues),
then for batch sizes 1, 10, 100 and 1000 keeps `--concurrency` requests in flight for
`--seconds` each and prints requests/s and destinations/s. Talks to nothing but 127.0.0.1.

    .venv/bin/python bench/client.py [--seconds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time

import aiohttp

from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session

AUTH_ID = "MABENCHMARK000000001"
AUTH_TOKEN = "bench-auth-token"
BATCH_SIZES = (1, 10, 100, 1000)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "campaign",
        "simulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--cps",
        "100000000",
        "--requests-per-window",
        "100000000",
        "--no-callbacks",
    ]
    environment = {**os.environ, "PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN}
    return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)


async def wait_until_up(base_url: str, deadline_s: float = 15.0) -> None:
    async with aiohttp.ClientSession() as session:
        give_up = time.monotonic() + deadline_s
        while True:
            try:
                async with session.get(f"{base_url}/__simulator__/ledger?summary=1") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > give_up:
                raise SystemExit("the simulator did not start")
            await asyncio.sleep(0.1)


async def measure(
    client: PlivoClient, batch_size: int, seconds: float, concurrency: int
) -> tuple[int, float]:
    """Requests completed and the time they took, `concurrency` requests kept in flight."""
    numbers = itertools.count(12_000_000_000)
    parameters = {"from": "14155550100", "answer_url": "http://127.0.0.1:9/answer"}
    stop_at = time.perf_counter() + seconds
    completed = 0

    async def sender() -> None:
        nonlocal completed
        while time.perf_counter() < stop_at:
            batch = [str(next(numbers)) for _ in range(batch_size)]
            await client.make_call(parameters, batch)
            completed += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return completed, time.perf_counter() - started


async def run(seconds: float, concurrency: int) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    simulator = start_simulator(port)
    try:
        await wait_until_up(base_url)
        config = PlivoClientConfig(auth_id=AUTH_ID, auth_token=AUTH_TOKEN, api_url=base_url)
        async with new_plivo_session(connection_limit=concurrency) as session:
            client = PlivoClient(session, config)
            print(f"{'batch':>6} {'requests':>9} {'requests/s':>11} {'destinations/s':>15}")
            for batch_size in BATCH_SIZES:
                await measure(client, batch_size, min(0.5, seconds), concurrency)  # warm-up
                requests, elapsed_s = await measure(client, batch_size, seconds, concurrency)
                rate = requests / elapsed_s
                print(f"{batch_size:>6} {requests:>9} {rate:>11.0f} {rate * batch_size:>15.0f}")
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.seconds, arguments.concurrency))


if __name__ == "__main__":
    main()
