"""`campaign load` with pacing options, as a user runs it: caller-ID pools from --from and
--from-file, local presence, a pool number among the destinations, and the cap of concurrent
calls that needs --track-calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli_fixtures import fetch_rows, run


def test_load_a_pool_of_caller_ids_with_local_presence(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    """--from two numbers and --from-file a third: the pool is stored in order with its keys,
    the first is the campaign's `from`; each contact gets the numbers that may call it (its area
    code, else its country code, else any); a row that is one of the pool's numbers is rejected
    with its line; the pacing options are stored and `status` shows them."""
    pool_file = tmp_path / "pool.txt"
    pool_file.write_text("# London\n+442071234567\n", encoding="utf-8")
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "phone\n+14155551234\n+12125557777\n+441619460000\n+33142685300\n+12125550100\n",
        encoding="utf-8",
    )
    loaded = run(
        campaign_command, {**cli_env, "CAMPAIGN_PUBLIC_URL": "https://dialer.example.com"},
        "load", str(csv_file), "--name", "survey",
        "--from", "+14155550100,+12125550100", "--from-file", str(pool_file),
        "--caller-id", "local", "--answer-url", "https://example.com/a.xml",
        "--calling-hours", "any", "--priority", "5", "--track-calls",
        "--max-concurrent-calls", "20", "--calls-per-second-per-caller-id", "1",
        "--max-calls-per-caller-id-per-day", "500", "--rejects", str(tmp_path / "rejects.csv"),
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 4" in loaded.stdout
    assert "rejected 1" in loaded.stdout
    assert "line 6" in loaded.stderr
    assert "is one of the campaign's caller IDs" in loaded.stderr
    campaign = asyncio.run(
        fetch_rows(
            database_url,
            'SELECT "from", priority, max_concurrent_calls, caller_id_mode,'
            " calls_per_second_per_caller_id, max_calls_per_caller_id_per_day FROM campaigns",
        )
    )[0]
    assert tuple(campaign) == ("+14155550100", 5, 20, "local", 1.0, 500)
    pool = asyncio.run(
        fetch_rows(
            database_url,
            "SELECT caller_id, area_key, country_key FROM campaign_caller_ids ORDER BY position",
        )
    )
    assert [tuple(row) for row in pool] == [
        ("+14155550100", "area:+1415", "country:+1"),
        ("+12125550100", "area:+1212", "country:+1"),
        ("+442071234567", "area:+4420", "country:+44"),
    ]
    groups = asyncio.run(
        fetch_rows(database_url, "SELECT destination, caller_id_group FROM contacts ORDER BY id")
    )
    assert {row["destination"]: row["caller_id_group"] for row in groups} == {
        "+14155551234": "area:+1415",
        "+12125557777": "area:+1212",
        "+441619460000": "country:+44",
        "+33142685300": None,
    }
    status = run(campaign_command, cli_env, "status", "survey", "--once")
    assert status.returncode == 0, status.stderr
    assert (
        "pacing: priority 5, the account's calls per second, batches of 100; 0 of 20 calls live;"
        " caller IDs (local, calls in the last day): +14155550100 (0), +12125550100 (0),"
        " +442071234567 (0)"
    ) in status.stdout


def test_pacing_options_refused_with_one_line(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """--max-concurrent-calls without --track-calls, a bad number in --from-file, and a missing
    --from-file: one line naming the option, exit 2, nothing created."""
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text("phone\n+14155551234\n", encoding="utf-8")
    bad_pool = tmp_path / "bad.txt"
    bad_pool.write_text("+14155550100\nnope\n", encoding="utf-8")
    base = [
        "load", str(csv_file), "--name", "x", "--answer-url", "https://example.com/a.xml",
    ]  # fmt: skip
    for arguments, message in (
        (["--from", "+14155550100", "--max-concurrent-calls", "5"],
         "campaign: error: --max-concurrent-calls: a call counts until its hangup callback, so"
         " the cap needs --track-calls"),
        (["--from-file", str(bad_pool)],
         "campaign: error: --from-file: number 2: 'nope': not a phone number"),
        (["--from-file", str(tmp_path / "missing.txt")],
         "campaign: error: --from-file: cannot read"),
    ):  # fmt: skip
        refused = run(campaign_command, cli_env, *base, *arguments)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(message), refused.stderr
    listed = run(campaign_command, cli_env, "list")
    assert "no campaigns yet" in listed.stdout


def test_an_untracked_campaign_under_the_account_cap_is_warned_about(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """With CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS set, a campaign loaded without --track-calls
    loads, with a warning that its calls hold the account's cap until overdue (their hangups are
    unheard), naming --track-calls; with --track-calls, no warning."""
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text("phone\n+14155551234\n", encoding="utf-8")
    capped = {**cli_env, "CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS": "10"}
    options = ["--from", "+14155550100", "--answer-url", "https://example.com/a.xml",
               "--calling-hours", "any"]  # fmt: skip
    untracked = run(campaign_command, capped, "load", str(csv_file), "--name", "a", *options,
                    "--time-limit", "300")  # fmt: skip
    assert untracked.returncode == 0, untracked.stderr
    assert (
        "campaign: warning: campaign a does not track its calls, so each counts towards "
        "CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS until ring_timeout + time_limit (300 s)"
    ) in untracked.stderr
    tracked = run(
        campaign_command, {**capped, "CAMPAIGN_PUBLIC_URL": "https://dialer.example.com"},
        "load", str(csv_file), "--name", "b", *options, "--track-calls",
    )  # fmt: skip
    assert tracked.returncode == 0, tracked.stderr
    assert "warning" not in tracked.stderr
