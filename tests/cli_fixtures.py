"""What the command-line tests share."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
from plivo_fixtures import AUTH_ID, AUTH_TOKEN

from campaign.simulator import RunningSimulator

# The options of a new campaign in `campaign load`. Calls at any hour: these tests run on the
# wall clock, at whatever hour CI runs them.
LOAD_OPTIONS = [
    "--from",
    "+14155550100",
    "--answer-url",
    "https://example.com/answer.xml",
    "--calling-hours",
    "any",
]


def run(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does; its output and exit code."""
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def fetch_rows(database_url: str, query: str) -> list[asyncpg.Record]:
    """The rows of one query, on a connection of its own."""
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


def worker_env(cli_env: dict[str, str], plivo: RunningSimulator, **extra: str) -> dict[str, str]:
    """The environment of a `campaign worker` process dialing `plivo`: short polls, leases and
    Plivo time-outs, so that the tests' kills and restarts play out in seconds."""
    return {
        **cli_env,
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": plivo.base_url,
        "CAMPAIGN_WORKER_POLL_INTERVAL_S": "0.1",
        "CAMPAIGN_PLIVO_TIMEOUT_S": "2",
        "CAMPAIGN_PLIVO_RETRY_BUDGET_S": "1",
        "CAMPAIGN_WORKER_LEASE_S": "4",
        "CAMPAIGN_LOG_LEVEL": "info",
        **extra,
    }


async def run_cli(command: list[str], env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking this loop (a simulator or a receiver may live in it)."""
    process = await asyncio.create_subprocess_exec(
        *command, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def start_worker(
    command: list[str], env: dict[str, str], *args: str, quiet: bool = False
) -> asyncio.subprocess.Process:
    """`campaign worker` as a process of its own; `quiet`: its output is dropped (a worker the
    test kills without reading it)."""
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    return await asyncio.create_subprocess_exec(
        *command, "worker", *args, env=env, stdout=output, stderr=output
    )
