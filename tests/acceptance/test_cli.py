"""The `campaign` command run as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

LOAD_OPTIONS = ["--from", "+14155550100", "--answer-url", "https://example.com/answer.xml"]


def run(
    command: list[str], env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


@pytest.fixture
def numbers_csv(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.csv"
    path.write_text(
        "name,phone\nAda,+1 415 555 0123\nBob,(415) 555-0124\nCy,nope\nDi,415-555-0123\n"
    )
    return path


def test_load_then_status_and_list(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path, tmp_path: Path
) -> None:
    """load prints the campaign and a summary, reports rejects; status and list show counts."""
    rejects = tmp_path / "rejects.csv"
    result = run(
        campaign_command,
        cli_env,
        "load",
        str(numbers_csv),
        "--name",
        "reminders",
        *LOAD_OPTIONS,
        "--default-region",
        "US",
        "--rejects",
        str(rejects),
        "--caller-name",
        "Clinic",
    )
    assert result.returncode == 0, result.stderr
    assert "campaign reminders (id 1): running" in result.stdout
    assert "rows read 4, loaded 2, duplicates 1, rejected 1" in result.stdout
    assert "line 4: 'nope' rejected: not a phone number" in result.stderr
    assert rejects.read_text().splitlines() == ["line,value,reason", "4,nope,not a phone number"]

    status = run(campaign_command, cli_env, "status", "reminders", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) | {"created_at": None} == {
        "campaign_id": 1,
        "campaign": "reminders",
        "status": "running",
        "total": 2,
        "pending": 2,
        "claimed": 0,
        "sending": 0,
        "fired": 0,
        "queued": 0,
        "failed": 0,
        "unknown": 0,
        "cancelled": 0,
        "created_at": None,
    }
    listing = run(campaign_command, cli_env, "list")
    assert listing.returncode == 0, listing.stderr
    assert "reminders" in listing.stdout
    assert "pending" in listing.stdout.splitlines()[0]


def test_add_to_existing_campaign(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path, tmp_path: Path
) -> None:
    """--campaign NAME adds a second file's new people to the campaign, JSON summary on request."""
    first = run(
        campaign_command,
        cli_env,
        "load",
        str(numbers_csv),
        "--name",
        "c1",
        *LOAD_OPTIONS,
        "--default-region",
        "US",
    )
    assert first.returncode == 0, first.stderr
    more = tmp_path / "more.csv"
    more.write_text("+14155550124\n+14155550125\n")
    second = run(campaign_command, cli_env, "load", str(more), "--campaign", "c1", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {
        "campaign": "c1",
        "campaign_id": 1,
        "status": "running",
        "rows_read": 2,
        "loaded": 1,
        "duplicates": 1,
        "rejected": 0,
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--caller-name", "x" * 51], "--caller-name: must be at most 50 characters"),
        (["--machine-detection-time", "50"], "--machine-detection-time: must be between 2000"),
        (["--ring-method", "PUT"], "--ring-method: must be GET or POST"),
        (["--sip-headers", "a=b;c"], "--sip-headers: must be key=value pairs"),
        (["--default-region", "XX"], "--default-region: 'XX' is not a region code"),
    ],
)
def test_bad_campaign_parameter_exits_2(
    campaign_command: list[str],
    cli_env: dict[str, str],
    numbers_csv: Path,
    arguments: list[str],
    message: str,
) -> None:
    """A bad Make-a-call parameter is one line naming the option, exit 2, nothing created."""
    result = run(
        campaign_command,
        cli_env,
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
    assert "Traceback" not in result.stderr
    listing = run(campaign_command, cli_env, "list", "--json")
    assert json.loads(listing.stdout) == []


def test_missing_file_and_unusable_file(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A missing file, or one with nothing dialable, exits 1 with one clear line; nothing kept."""
    missing = run(
        campaign_command, cli_env, "load", str(tmp_path / "nope.csv"), "--name", "x", *LOAD_OPTIONS
    )
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f"campaign: error: {tmp_path / 'nope.csv'}: no such file; check the path"
    )
    junk = tmp_path / "junk.csv"
    junk.write_text("phone\nabc\n")
    unusable = run(campaign_command, cli_env, "load", str(junk), "--name", "x", *LOAD_OPTIONS)
    assert unusable.returncode == 1
    assert (
        unusable.stderr.strip()
        .splitlines()[-1]
        .startswith(f"campaign: error: {junk}: none of its 1 rows")
    )
    assert json.loads(run(campaign_command, cli_env, "list", "--json").stdout) == []


def test_invalid_setting_exits_2_without_secret(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """An invalid setting is one line naming the variable, exit 2, and never shows the token."""
    env = cli_env | {"PLIVO_AUTH_TOKEN": "very-secret-token", "PLIVO_API_URL": "plivo.example"}
    result = run(campaign_command, env, "list")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "campaign: error: invalid setting PLIVO_API_URL: must be an http:// or https:// URL, "
        "e.g. https://api.plivo.com"
    )
    assert "very-secret-token" not in result.stdout + result.stderr


def test_unknown_campaign_status(campaign_command: list[str], cli_env: dict[str, str]) -> None:
    """Asking for a campaign that does not exist says how to find the right name."""
    result = run(campaign_command, cli_env, "status", "ghost")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "campaign: error: no campaign named 'ghost'; `campaign list` shows the campaigns"
    )


def test_migrate_reports_up_to_date(campaign_command: list[str], cli_env: dict[str, str]) -> None:
    """`campaign migrate` on a migrated database applies nothing and says it is up to date."""
    result = run(campaign_command, cli_env, "migrate")
    assert result.returncode == 0, result.stderr
    assert "applied" not in result.stdout
    assert "is up to date" in result.stdout


@pytest.mark.slow
def test_demo_runs_on_embedded_defaults(campaign_command: list[str], tmp_path: Path) -> None:
    """With nothing configured, `campaign demo` loads a sample and dials it via the simulator."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CAMPAIGN_", "PLIVO_"))
    }
    env["CAMPAIGN_DATA_DIR"] = str(tmp_path / "data")
    result = run(campaign_command, env, "demo", "--rows", "30", "--name", "demo")
    assert result.returncode == 0, result.stderr
    assert (
        "campaign demo (id 1): rows read 30, loaded 24, duplicates 3, rejected 3" in result.stdout
    )
    assert "dialled 24 destinations through the Plivo simulator" in result.stdout
    again = run(campaign_command, env, "status", "demo", "--json")
    progress = json.loads(again.stdout)
    assert (progress["status"], progress["fired"], progress["pending"]) == ("completed", 24, 0)
