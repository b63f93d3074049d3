"""`campaign worker` processes as an operator runs them: kills, signals, several at once."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from cli_fixtures import LOAD_OPTIONS, run_cli, start_worker, worker_env
from plivo_fixtures import simulator_config
from worker_fixtures import wait_for

from campaign.simulator import RunningSimulator, running_simulator

pytestmark = pytest.mark.slow


@pytest.fixture
async def plivo() -> AsyncIterator[RunningSimulator]:
    """The simulator in this test's event loop, reachable by worker processes over loopback."""
    async with running_simulator(simulator_config(calls_per_second=10_000.0)) as running:
        yield running


async def load(
    command: list[str], env: dict[str, str], tmp_path: Path, name: str, count: int, *args: str
) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_text("phone\n" + "".join(f"+1415556{index:04d}\n" for index in range(count)))
    code, _out, err = await run_cli(
        command, env, "load", str(path), "--name", name, *LOAD_OPTIONS, *args
    )
    assert code == 0, err


async def counts(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT status, count(*) FROM contacts GROUP BY status")
    finally:
        await connection.close()
    return {row["status"]: row["count"] for row in rows}


async def test_sigkill_then_restart_loses_nothing_and_dials_nobody_twice(
    campaign_command: list[str],
    cli_env: dict[str, str],
    database_url: str,
    plivo: RunningSimulator,
    tmp_path: Path,
) -> None:
    """A worker killed mid-run and a new one started: all contacts terminal, none dialled twice."""
    env = worker_env(cli_env, plivo, CAMPAIGN_ACCOUNT_CPS="40")
    await load(campaign_command, env, tmp_path, "kill", 120, "--batch-size", "5")
    worker = await start_worker(campaign_command, env)

    async def some_dialled() -> bool:
        return len(plivo.ledger.dials) >= 20

    await wait_for(some_dialled)
    worker.kill()  # SIGKILL: no clean-up of any kind
    await worker.wait()
    before_restart = await counts(database_url)
    assert before_restart.get("pending", 0) > 0

    code, out, err = await run_cli(campaign_command, env, "worker", "--drain")
    assert code == 0, err
    assert "drained" in out
    final = await counts(database_url)
    assert set(final) <= {"fired", "queued", "unknown"}
    assert sum(final.values()) == 120
    dial_counts = plivo.ledger.dial_counts()
    assert max(dial_counts.values()) == 1
    dialled = set(dial_counts)
    connection = await asyncpg.connect(database_url)
    try:
        fired = {
            r["destination"]
            for r in await connection.fetch(
                "SELECT destination FROM contacts WHERE status IN ('fired', 'queued')"
            )
        }
    finally:
        await connection.close()
    assert fired <= dialled  # every contact said to be dialled was dialled, once


async def test_two_workers_share_the_account_limit(
    campaign_command: list[str],
    cli_env: dict[str, str],
    database_url: str,
    plivo: RunningSimulator,
    tmp_path: Path,
) -> None:
    """Two worker processes against one account limit of 8/s: no second of the ledger above 8."""
    env = worker_env(cli_env, plivo, CAMPAIGN_ACCOUNT_CPS="8")
    plivo.simulator.reconfigure(calls_per_second=8.0)
    await load(campaign_command, env, tmp_path, "shared", 48)
    workers = [await start_worker(campaign_command, env, "--drain") for _ in range(2)]
    outputs = await asyncio.gather(*(w.communicate() for w in workers))
    assert [w.returncode for w in workers] == [0, 0], outputs
    ledger = plivo.ledger
    assert max(ledger.calls_per_second().values()) <= 8
    assert not any(call.queued for call in ledger.dials)
    assert len(ledger.dials) == 48
    # Both processes did part of the work.
    assert all(b"batch of" in stderr for _stdout, stderr in outputs)


async def test_pause_resume_cancel_from_another_process(
    campaign_command: list[str],
    cli_env: dict[str, str],
    database_url: str,
    plivo: RunningSimulator,
    tmp_path: Path,
) -> None:
    """pause stops every dial within a second; resume restarts; cancel ends undialled contacts."""
    env = worker_env(cli_env, plivo, CAMPAIGN_ACCOUNT_CPS="10")
    await load(campaign_command, env, tmp_path, "ops", 200)
    worker = await start_worker(campaign_command, env)

    async def dialled_some() -> bool:
        return len(plivo.ledger.dials) >= 5

    await wait_for(dialled_some)
    code, out, err = await run_cli(campaign_command, env, "pause", "ops")
    assert (code, out.strip()) == (0, "campaign ops: paused"), err
    await asyncio.sleep(1.0)
    paused_at = len(plivo.ledger.dials)
    await asyncio.sleep(1.0)
    assert len(plivo.ledger.dials) == paused_at  # nothing dialled a second after the pause

    code, _out, err = await run_cli(campaign_command, env, "resume", "ops")
    assert code == 0, err

    async def dialling_again() -> bool:
        return len(plivo.ledger.dials) > paused_at + 3

    await wait_for(dialling_again)
    code, out, err = await run_cli(campaign_command, env, "cancel", "ops")
    assert code == 0, err
    assert "cancelled (" in out
    await asyncio.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    await asyncio.wait_for(worker.wait(), 20)
    final = await counts(database_url)
    assert final["cancelled"] > 0
    assert final.get("pending", 0) == final.get("claimed", 0) == final.get("sending", 0) == 0
    assert final["cancelled"] + final.get("fired", 0) == 200
    assert final.get("fired", 0) == len(plivo.ledger.dials)

    code, _out, err = await run_cli(campaign_command, env, "resume", "ops")
    assert code == 1
    assert "is cancelled" in err


async def test_sigterm_finishes_in_flight_and_exits_zero(
    campaign_command: list[str],
    cli_env: dict[str, str],
    database_url: str,
    plivo: RunningSimulator,
    tmp_path: Path,
) -> None:
    """SIGTERM: requests in flight are recorded, unsent claims given back, exit 0 promptly."""
    plivo.simulator.reconfigure(latency_s=0.3)
    env = worker_env(cli_env, plivo, CAMPAIGN_ACCOUNT_CPS="20")
    await load(campaign_command, env, tmp_path, "term", 100, "--batch-size", "10")
    worker = await start_worker(campaign_command, env)

    async def some_requests() -> bool:
        return len(plivo.ledger.make_call_requests()) >= 3

    await wait_for(some_requests)
    worker.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(worker.wait(), 10)
    assert code == 0
    final = await counts(database_url)
    assert final.get("claimed", 0) == final.get("sending", 0) == final.get("unknown", 0) == 0
    assert final["fired"] == len(plivo.ledger.dials)
    assert final["fired"] + final["pending"] == 100


async def test_worker_refuses_to_start_without_credentials(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """No PLIVO_AUTH_ID/TOKEN: one clear line, exit 2, and no silent fall-back to a simulator."""
    code, out, err = await run_cli(campaign_command, cli_env, "worker", "--drain")
    assert code == 2
    assert err.startswith("campaign: error: PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are not set")
    assert len(err.strip().splitlines()) == 1
    assert out == ""


async def test_status_json_after_a_drained_run(
    campaign_command: list[str],
    cli_env: dict[str, str],
    plivo: RunningSimulator,
    tmp_path: Path,
) -> None:
    """After `worker --drain`, `status --json` shows the campaign completed, every call fired."""
    env = worker_env(cli_env, plivo, CAMPAIGN_ACCOUNT_CPS="0", CAMPAIGN_API_REQUESTS_PER_WINDOW="0")
    await load(campaign_command, env, tmp_path, "done", 30)
    code, _out, err = await run_cli(campaign_command, env, "worker", "--drain")
    assert code == 0, err
    code, out, err = await run_cli(campaign_command, env, "status", "done", "--json")
    progress = json.loads(out)
    assert (progress["status"], progress["fired"], progress["total"]) == ("completed", 30, 30)
