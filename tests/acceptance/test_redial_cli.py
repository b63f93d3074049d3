"""`campaign redial` run as a user runs it: a subprocess, its output and exit code, and what the
contacts then are."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest
from cli_fixtures import LOAD_OPTIONS, fetch_rows, run


@pytest.fixture
def loaded(campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path) -> None:
    """Campaign `r` of three numbers, loaded by the CLI; then, as a worker and callbacks would
    leave them, the first failed, the second fired and busy, the third of unknown fate; the
    campaign completed."""
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("phone\n+14155550101\n+14155550102\n+14155550103\n")
    result = run(campaign_command, cli_env, "load", str(contacts), "--name", "r", *LOAD_OPTIONS)
    assert result.returncode == 0, result.stderr

    async def settle() -> None:
        connection = await asyncpg.connect(cli_env["CAMPAIGN_DATABASE_URL"])
        try:
            await connection.execute(
                "UPDATE contacts SET attempts = 1, status = CASE destination"
                " WHEN '+14155550101' THEN 'failed' WHEN '+14155550102' THEN 'fired'"
                " ELSE 'unknown' END,"
                " call_status = CASE WHEN destination = '+14155550102' THEN 'busy' END"
            )
            await connection.execute("UPDATE campaigns SET status = 'completed'")
        finally:
            await connection.close()

    asyncio.run(settle())


def _statuses(cli_env: dict[str, str]) -> list[str]:
    rows = asyncio.run(
        fetch_rows(cli_env["CAMPAIGN_DATABASE_URL"], "SELECT status FROM contacts ORDER BY id")
    )
    return [row["status"] for row in rows]


def _campaign_status(cli_env: dict[str, str]) -> str:
    rows = asyncio.run(fetch_rows(cli_env["CAMPAIGN_DATABASE_URL"], "SELECT status FROM campaigns"))
    return str(rows[0]["status"])


@pytest.mark.usefixtures("loaded")
def test_dry_run_counts_and_yes_redials(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """--dry-run prints how many match and how many can be dialled again, and changes nothing;
    --yes redials the settled ones (never the one of unknown fate) and the campaign runs again."""
    result = run(campaign_command, cli_env, "redial", "r", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "campaign r: 3 contacts match the filter; 2 of them can be dialled again"
    )
    assert "campaign reconcile" in result.stdout
    assert _statuses(cli_env) == ["failed", "fired", "unknown"]
    result = run(campaign_command, cli_env, "redial", "r", "--outcome", "busy", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "campaign r: 1 contacts set to dial again"
    assert _statuses(cli_env) == ["failed", "pending", "unknown"]
    assert _campaign_status(cli_env) == "running"
    result = run(
        campaign_command, cli_env, "redial", "r", "--status", "failed", "--status", "unknown",
        "--search", "0101", "--yes",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "campaign r: 1 contacts set to dial again"
    assert _statuses(cli_env) == ["pending", "pending", "unknown"]


@pytest.mark.usefixtures("loaded")
def test_without_yes_and_no_terminal_it_refuses_naming_yes(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """With stdin not a terminal and no --yes, nobody can confirm: exit 2, a line naming --yes,
    nothing changed."""
    result = run(campaign_command, cli_env, "redial", "r")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert result.stderr.count("\n") == 1
    assert _statuses(cli_env) == ["failed", "fired", "unknown"]


@pytest.mark.usefixtures("loaded")
def test_bad_values_name_the_option_and_the_fix(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """An unknown status, outcome or time zone: exit 2, one line naming the option and what it
    may be; an unknown or cancelled campaign: exit 1, one line saying what to do."""
    for args, named, fix in (
        (["--status", "done"], "--status", "failed"),
        (["--outcome", "hung up"], "--outcome", "no-answer"),
        (["--time-zone", "Mars/Olympus"], "--time-zone", "America/New_York"),
    ):
        result = run(campaign_command, cli_env, "redial", "r", *args, "--yes")
        assert result.returncode == 2, args
        assert result.stderr.startswith(f"campaign: error: {named}: "), result.stderr
        assert fix in result.stderr
    result = run(campaign_command, cli_env, "redial", "none", "--yes")
    assert result.returncode == 1
    assert "campaign list" in result.stderr
    assert (
        run(campaign_command, cli_env, "cancel", "r").returncode == 1
    )  # completed: not cancellable

    async def cancel() -> None:
        connection = await asyncpg.connect(cli_env["CAMPAIGN_DATABASE_URL"])
        try:
            await connection.execute("UPDATE campaigns SET status = 'cancelled'")
        finally:
            await connection.close()

    asyncio.run(cancel())
    result = run(campaign_command, cli_env, "redial", "r", "--yes")
    assert result.returncode == 1
    assert "is cancelled" in result.stderr
    assert "campaign load" in result.stderr
    assert _statuses(cli_env) == ["failed", "fired", "unknown"]


@pytest.mark.usefixtures("loaded")
def test_on_a_terminal_it_asks_first(campaign_command: list[str], cli_env: dict[str, str]) -> None:
    """With stdin a terminal and no --yes, it asks; `n` changes nothing (exit 1, aborted), `y`
    redials."""
    for answer, code, statuses in (
        ("n", 1, ["failed", "fired", "unknown"]),
        ("y", 0, ["pending", "pending", "unknown"]),
    ):
        controller, terminal = os.openpty()
        try:
            os.write(controller, f"{answer}\n".encode())
            result = subprocess.run(
                [*campaign_command, "redial", "r"],
                env=cli_env,
                stdin=terminal,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            os.close(terminal)
            os.close(controller)
        assert result.returncode == code, result.stderr
        assert "Dial 2 contacts again? [y/N]" in result.stdout
        assert _statuses(cli_env) == statuses
