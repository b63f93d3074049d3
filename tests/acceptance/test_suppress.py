"""`campaign suppress add | remove | list` run as a user runs them: a subprocess, its output and
exit code, and what the lists then hold."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import asyncpg
from cli_fixtures import LOAD_OPTIONS
from worker_fixtures import claimed

from campaign import queries


def run(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def on_list(command: list[str], env: dict[str, str], name: str) -> list[dict[str, object]]:
    """The numbers on list `name`, as `suppress list --list NAME --json` prints them."""
    result = run(command, env, "suppress", "list", "--list", name, "--json")
    assert result.returncode == 0, result.stderr
    numbers: list[dict[str, object]] = json.loads(result.stdout)
    return numbers


def test_add_numbers_and_a_file_normalised_as_load_does(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Numbers and a CSV file go on the list in E.164, read as `campaign load` reads them:
    "(415) 555-0100" with --default-region US is +14155550100, SIP URIs stay; a number given
    twice or already on the list is counted, not added again, and keeps its first reason."""
    opt_outs = tmp_path / "opt-outs.csv"
    opt_outs.write_text("name,Mobile\nAda,(415) 555-0100\nBob,+1 415 555 0101\nCy,415.555.0100\n")
    result = run(
        campaign_command, cli_env, "suppress", "add", str(opt_outs), "+1-415-555-0102",
        "sip:Alice@example.com", "--default-region", "us", "--reason", "asked by phone",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "list default: 4 numbers added (0 already on it); 1 repeated a number given before them\n"
    )
    again = run(
        campaign_command, cli_env, "suppress", "add", "+14155550100", "+14155550103",
        "--reason", "another reason", "--json",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "list": "default",
        "read": 2,
        "added": 1,
        "already_on_list": 1,
        "repeated": 0,
    }
    numbers = on_list(campaign_command, cli_env, "default")
    assert [(n["destination"], n["reason"]) for n in numbers] == [
        ("+14155550100", "asked by phone"),
        ("+14155550101", "asked by phone"),
        ("+14155550102", "asked by phone"),
        ("+14155550103", "another reason"),
        ("sip:Alice@example.com", "asked by phone"),
    ]


def test_a_bad_value_adds_nothing_and_is_named(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """One value that is not a number (a file's line, an argument, digits with no country code
    that could be several numbers) refuses the whole add: each is printed with its line or
    argument and reason, exit 1, and nothing is on the list."""
    opt_outs = tmp_path / "opt-outs.csv"
    opt_outs.write_text("phone\n+14155550100\nnope\n+14155550101\n")
    result = run(
        campaign_command, cli_env, "suppress", "add", "+14155550102", str(opt_outs), "4155550103"
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{opt_outs} line 3: 'nope': not a phone number",
        "argument 3: '4155550103': no country code; it could be a number written nationally: "
        "+14155550103 (US), +3584155550103 (FI), +524155550103 (MX), …; pass --default-region "
        "<its country> if the file holds national numbers, or write every number with + and "
        "its country code",
        "campaign: error: 2 values are not numbers that can be suppressed; nothing was added to "
        "list 'default'",
    ]
    assert result.stdout == ""
    listing = run(campaign_command, cli_env, "suppress", "list", "--json")
    assert json.loads(listing.stdout) == []


def test_many_bad_values_are_listed_up_to_twenty(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A file of 25 bad rows prints the first 20 and counts the rest."""
    bad = tmp_path / "bad.csv"
    bad.write_text("phone\n" + "nope\n" * 25)
    result = run(campaign_command, cli_env, "suppress", "add", str(bad), "--list", "vip")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{bad} line 2: 'nope': not a phone number"
    assert lines[19] == f"{bad} line 21: 'nope': not a phone number"
    assert lines[20:] == [
        "… and 5 more",
        "campaign: error: 25 values are not numbers that can be suppressed; nothing was added "
        "to list 'vip'",
    ]


def test_remove_names_the_numbers_not_on_the_list(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """remove normalises as add does, takes the numbers off, names those that were not on the
    list (exit 0); a value that is not a number removes nothing (exit 1)."""
    added = run(
        campaign_command, cli_env, "suppress", "add", "+14155550100", "+14155550101",
        "--list", "vip",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    refused = run(
        campaign_command, cli_env, "suppress", "remove", "+14155550100", "nope", "--list", "vip"
    )
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "argument 2: 'nope': not a phone number",
        "campaign: error: 1 value is not a number that can be suppressed; nothing was removed "
        "from list 'vip'",
    ]
    assert len(on_list(campaign_command, cli_env, "vip")) == 2
    removed = run(
        campaign_command, cli_env, "suppress", "remove", "(415) 555-0100", "+14155550199",
        "--list", "vip", "--default-region", "US",
    )  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        "list vip: 1 number removed",
        "not on list vip: +14155550199",
    ]
    assert [n["destination"] for n in on_list(campaign_command, cli_env, "vip")] == ["+14155550101"]


def test_list_shows_the_lists_and_the_numbers_on_one(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """Without --list: each list with its count and newest date (a table, or one JSON array);
    with --list: its numbers with date and reason; an unknown list is empty, not an error."""
    empty = run(campaign_command, cli_env, "suppress", "list")
    assert empty.returncode == 0, empty.stderr
    assert "no suppression lists yet" in empty.stdout
    for args in (
        ["+14155550100", "+14155550101"],
        ["+14155550102", "--list", "vip", "--reason", "lawyer"],
    ):
        assert run(campaign_command, cli_env, "suppress", "add", *args).returncode == 0

    table = run(campaign_command, cli_env, "suppress", "list")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert [row[:2] for row in rows] == [["list", "numbers"], ["default", "2"], ["vip", "1"]]
    as_json = json.loads(run(campaign_command, cli_env, "suppress", "list", "--json").stdout)
    assert [(entry["list"], entry["numbers"]) for entry in as_json] == [("default", 2), ("vip", 1)]
    assert all(isinstance(entry["newest"], str) for entry in as_json)

    numbers = run(campaign_command, cli_env, "suppress", "list", "--list", "vip")
    assert numbers.returncode == 0, numbers.stderr
    lines = numbers.stdout.splitlines()
    assert lines[0].split() == ["destination", "created_at", "reason"]
    assert lines[1].split()[0::2] == ["+14155550102", "lawyer"]
    (vip,) = on_list(campaign_command, cli_env, "vip")
    assert (vip["destination"], vip["reason"]) == ("+14155550102", "lawyer")

    unknown = run(campaign_command, cli_env, "suppress", "list", "--list", "nobody")
    assert (unknown.returncode, unknown.stdout) == (0, "")
    assert "no numbers on list 'nobody'" in unknown.stderr
    assert on_list(campaign_command, cli_env, "nobody") == []


def test_list_names_are_checked(campaign_command: list[str], cli_env: dict[str, str]) -> None:
    """--list must be 1-100 characters and not blank: anything else exits 2 with one line
    naming --list, before the database is touched; 100 characters do, and so does --list
    " vip " (kept as given: names match campaigns' suppression_lists exactly)."""
    message = "--list: a list's name must be 1 to 100 characters"
    for name in ("", "   ", "x" * 101):
        for command in (["add", "+14155550100"], ["remove", "+14155550100"], ["list"]):
            result = run(campaign_command, cli_env, "suppress", *command, "--list", name)
            assert result.returncode == 2, (command, name)
            assert result.stderr.startswith(f"campaign: error: {message}"), result.stderr
    for name in ("x" * 100, " vip "):
        added = run(campaign_command, cli_env, "suppress", "add", "+14155550100", "--list", name)
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith(f"list {name}: 1 number added")
    assert [n["destination"] for n in on_list(campaign_command, cli_env, " vip ")] == [
        "+14155550100"
    ]
    region = run(
        campaign_command, cli_env, "suppress", "add", "+14155550100", "--default-region", "XX"
    )
    assert region.returncode == 2
    assert "--default-region: 'XX' is not a region code" in region.stderr


async def test_a_loaded_contact_is_not_dialled_once_its_number_is_suppressed(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path, pool: asyncpg.Pool
) -> None:
    """End to end: `campaign load` a file into a campaign that also honours the list `vip`,
    then `campaign suppress add` one number as the user wrote it to `default` and another to
    `vip`: the claim settles those two contacts `suppressed`, naming the list, and dials only
    the third."""
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("name,phone\nAda,(415) 555-0123\nBob,(415) 555-0124\nCy,(415) 555-0125\n")
    loaded = run(
        campaign_command, cli_env, "load", str(contacts), "--name", "reminders", *LOAD_OPTIONS,
        "--default-region", "US", "--suppression-list", "vip",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    for args in (["415-555-0123", "--default-region", "US"], ["+14155550124", "--list", "vip"]):
        added = run(campaign_command, cli_env, "suppress", "add", *args)
        assert added.returncode == 0, added.stderr

    campaign = await queries.campaign_by_name(pool, "reminders")
    assert campaign is not None
    assert await claimed(pool, campaign.id) == ["+14155550125"]
    rows = await pool.fetch("SELECT destination, status, last_error FROM contacts ORDER BY id")
    assert [tuple(row) for row in rows] == [
        ("+14155550123", "suppressed", "suppressed: on list default"),
        ("+14155550124", "suppressed", "suppressed: on list vip"),
        ("+14155550125", "claimed", None),
    ]
