"""Operator commands while the engine works: cancel with requests in flight, pause and cancel
during a load, and the worker's warning about a database that may lose a write-ahead."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from cli_fixtures import LOAD_OPTIONS
from plivo_fixtures import AUTH_ID, AUTH_TOKEN, FakeClock, client_config, simulator_config
from worker_fixtures import make_campaign, numbers, wait_for, worker_config

from campaign.plivo import PlivoClient
from campaign.simulator import running_simulator
from campaign.worker import Worker

pytestmark = pytest.mark.slow

# Whether another backend is inside a load (looking its numbers up, or COPYing contacts).
LOADING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
    "AND (query ILIKE 'COPY %' OR query ILIKE '%load_staging%'"
    " OR query ILIKE '%suppression_version v%')"
)


async def start_cli(
    command: list[str], env: dict[str, str], *args: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def run_cli(command: list[str], env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking this loop (a simulator or a worker may live in it)."""
    process = await start_cli(command, env, *args)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_cancel_queued_also_cancels_the_calls_of_requests_in_flight(
    pool: asyncpg.Pool, cli_env: dict[str, str], campaign_command: list[str]
) -> None:
    """`cancel --cancel-queued` while a batch of 5 is in flight (Plivo answers in 3 s and holds 4
    of its calls queued, over the account's 1 call per second): the command waits for the reply
    and then cancels those 4 queued calls, so none of them can ring later."""
    await make_campaign(pool, numbers(5), batch_size=5)
    clock = FakeClock(time.time())  # frozen: the queued calls stay queued
    # Plivo answers in 3 s: the command (a new process) must start, connect and look while the
    # request is in flight, which took about a second on a busy machine.
    config = simulator_config(calls_per_second=1.0, latency_s=3.0)
    async with (
        running_simulator(config, clock=clock) as plivo,
        aiohttp.ClientSession() as session,
    ):
        stop = asyncio.Event()
        client = PlivoClient(session, client_config(plivo.base_url, timeout_s=10.0))
        worker = asyncio.create_task(
            Worker(pool, client, worker_config(concurrency=1)).run(stop=stop)
        )
        try:

            async def in_flight() -> bool:
                count = await pool.fetchval(
                    "SELECT count(*) FROM contacts WHERE status = 'sending'"
                )
                return bool(count == 5)

            await wait_for(in_flight)
            env = {
                **cli_env,
                "PLIVO_AUTH_ID": AUTH_ID,
                "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
                "PLIVO_API_URL": plivo.base_url,
                "CAMPAIGN_API_REQUESTS_PER_WINDOW": "0",
            }
            code, out, err = await run_cli(
                campaign_command, env, "cancel", "test", "--cancel-queued"
            )
        finally:
            stop.set()
            await asyncio.wait_for(worker, 15)
        cancelled_at_plivo = list(plivo.ledger.cancelled)
    assert code == 0, err
    assert "waiting for the replies to 5 calls in flight" in out
    # Plivo's reply says "queued" for the batch; the one call it placed at once has left the
    # queue already.
    assert "cancelled 4 calls queued at Plivo (1 had left the queue already)" in out
    assert len(cancelled_at_plivo) == 4
    rows = await pool.fetch("SELECT status, count(*) FROM contacts GROUP BY status")
    counts: dict[str, int] = {row["status"]: row["count"] for row in rows}
    assert counts == {"queued": 1, "cancelled": 4}


def big_csv(path: Path, rows: int, first: int) -> Path:
    """A CSV of `rows` numbers: large enough that loading it takes seconds."""
    lines = ["phone,name"] + [f"+1415{first + index:07d},n{index}" for index in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_pause_takes_effect_while_a_load_runs(
    pool: asyncpg.Pool, cli_env: dict[str, str], campaign_command: list[str], tmp_path: Path
) -> None:
    """`campaign pause` of a campaign a file is being loaded into returns at once, before the
    load commits (it used to wait for the whole load), and the load then completes."""
    code, _, err = await run_cli(
        campaign_command, cli_env, "load", str(big_csv(tmp_path / "a.csv", 10, 2_000_000)),
        "--name", "busy", *LOAD_OPTIONS,
    )  # fmt: skip
    assert code == 0, err
    load = await start_cli(
        campaign_command, cli_env, "load", str(big_csv(tmp_path / "b.csv", 150_000, 3_000_000)),
        "--campaign", "busy", "--jobs", "1",
    )  # fmt: skip
    try:
        await wait_for(lambda: pool.fetchval(LOADING), timeout_s=60)
        code, _, err = await run_cli(campaign_command, cli_env, "pause", "busy")
        assert code == 0, err
        # The pause returned before the load committed (it used to wait for the commit).
        assert await pool.fetchval("SELECT count(*) FROM contacts") == 10
    finally:
        await asyncio.wait_for(load.communicate(), 120)
    assert load.returncode == 0
    assert await pool.fetchval("SELECT status FROM campaigns WHERE name = 'busy'") == "paused"


async def test_a_load_into_a_campaign_cancelled_meanwhile_loads_nothing(
    pool: asyncpg.Pool, cli_env: dict[str, str], campaign_command: list[str], tmp_path: Path
) -> None:
    """A campaign cancelled while a file is being loaded into it: the cancel returns at once,
    the load ends with one line saying so and loads nothing, so no contact is left pending in
    the cancelled campaign."""
    code, _, err = await run_cli(
        campaign_command, cli_env, "load", str(big_csv(tmp_path / "a.csv", 10, 2_000_000)),
        "--name", "doomed", *LOAD_OPTIONS,
    )  # fmt: skip
    assert code == 0, err
    load = await start_cli(
        campaign_command, cli_env, "load", str(big_csv(tmp_path / "b.csv", 150_000, 3_000_000)),
        "--campaign", "doomed", "--jobs", "1",
    )  # fmt: skip
    try:
        await wait_for(lambda: pool.fetchval(LOADING), timeout_s=60)
        code, _, err = await run_cli(campaign_command, cli_env, "cancel", "doomed")
        assert code == 0, err
        # The cancel returned before the load committed (it used to wait for the commit).
        assert await pool.fetchval("SELECT count(*) FROM contacts") == 10
    finally:
        _, load_err = await asyncio.wait_for(load.communicate(), 120)
    assert load.returncode == 1
    assert "was cancelled while" in load_err.decode()
    assert "nothing was loaded" in load_err.decode()
    rows = await pool.fetch("SELECT status, count(*) FROM contacts GROUP BY status")
    counts: dict[str, int] = {row["status"]: row["count"] for row in rows}
    assert counts == {"cancelled": 10}


async def test_the_worker_warns_when_the_database_may_lose_a_write_ahead(
    cli_env: dict[str, str], campaign_command: list[str]
) -> None:
    """With synchronous_commit off, a crash may lose a request written ahead after it was sent:
    `campaign worker` says so when it starts (and still works)."""
    url = cli_env["CAMPAIGN_DATABASE_URL"]
    # The embedded server's URL has a query already (?host=<its socket directory>).
    env = {
        **cli_env,
        "CAMPAIGN_DATABASE_URL": url + ("&" if "?" in url else "?") + "synchronous_commit=off",
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": "http://127.0.0.1:9",
    }
    code, _, err = await run_cli(campaign_command, env, "worker", "--drain")
    assert code == 0, err
    assert "synchronous_commit = off" in err
    assert "dialled twice" in err
