"""The command line's shared wiring: its commands, the one-line errors, what it imports."""

from __future__ import annotations

import logging
import subprocess
import sys

import asyncpg
import click
import pytest

from campaign.cli import cli
from campaign.cli.app import run_command
from campaign.config import SettingsError
from campaign.db import DatabaseError
from campaign.destinations import LoadError
from campaign.specs import SpecError

# What only dialing and serving need: `campaign load` of a large file must not pay for it.
DIALING_MODULES = {
    "aiohttp",
    "prometheus_client",
    "campaign.metrics",
    "campaign.plivo",
    "campaign.simulator",
    "campaign.web",
    "campaign.worker",
}


def test_every_command_is_registered() -> None:
    """The group holds each command the README documents, under its documented name."""
    assert set(cli.commands) == {
        "load",
        "status",
        "list",
        "export",
        "set",
        "pause",
        "resume",
        "cancel",
        "redial",
        "reconcile",
        "migrate",
        "worker",
        "serve",
        "demo",
        "simulator",
        "suppress",
        "api-key",
        "webhook",
    }
    suppress = cli.commands["suppress"]
    assert isinstance(suppress, click.Group)
    assert set(suppress.commands) == {"add", "remove", "list"}


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (SpecError("--from", "must be a phone number"), 2, "--from: must be a phone number"),
        (SettingsError("invalid setting PLIVO_API_URL: …"), 2, "invalid setting PLIVO_API_URL: …"),
        (
            LoadError("a.csv: no such file; check the path"),
            1,
            "a.csv: no such file; check the path",
        ),
        (DatabaseError("cannot connect to the database"), 1, "cannot connect to the database"),
        (PermissionError(13, "Permission denied", "out.csv"), 1, "Permission denied: out.csv"),
    ],
)
def test_user_errors_are_one_line_and_an_exit_code(
    error: Exception, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each error a user can cause ends the command with `campaign: error: …` on stderr alone and
    exit code 2 for bad settings or options, 1 otherwise."""

    async def command() -> None:
        raise error

    with pytest.raises(SystemExit) as exited:
        run_command(command)()
    assert exited.value.code == code
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"campaign: error: {line}\n")


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (
            asyncpg.NumericValueOutOfRangeError("integer out of range"),
            "NumericValueOutOfRangeError: integer out of range, SQLSTATE 22003",
        ),
        (
            asyncpg.InterfaceError("cannot perform operation: connection is closed\nmore"),
            "InterfaceError: cannot perform operation: connection is closed",
        ),
    ],
)
def test_a_database_error_nothing_explains_is_one_line_naming_the_command(
    error: Exception,
    described: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database error no message explains ends the command with one line naming it, exit 1;
    the whole error (its traceback) goes to the debug log only."""

    async def load() -> None:
        raise error

    caplog.set_level(logging.DEBUG, logger="campaign")
    with pytest.raises(SystemExit) as exited:
        run_command(load)()
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        f"campaign: error: `campaign load` failed in the database ({described}); set "
        "CAMPAIGN_LOG_LEVEL=debug to log the whole error\n"
    )
    assert [(record.levelno, record.exc_info is not None) for record in caplog.records] == [
        (logging.DEBUG, True)
    ]


def test_a_defect_is_not_hidden_as_a_user_error() -> None:
    """An error no user can cause keeps its traceback: it is a defect to report."""

    async def command() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_command(command)()


def test_the_command_line_imports_no_dialing_code() -> None:
    """Importing the command line (all `campaign load` runs before reading rows) loads neither
    aiohttp, prometheus-client nor the worker, Plivo client, web app or simulator."""
    code = "import sys, campaign.cli; print(' '.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    modules = set(result.stdout.split())
    assert "campaign.cli.load" in modules
    # A package counts as imported when any of its submodules is (aiohttp.web, …).
    parts = [name.split(".") for name in modules]
    packages = {".".join(part[:length]) for part in parts for length in range(1, len(part))}
    assert (modules | packages) & DIALING_MODULES == set()
