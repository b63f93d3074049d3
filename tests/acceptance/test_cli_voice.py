"""`campaign load` with what the call says, as a user runs it: placeholders checked against the
file's columns, rows with an empty value rejected, content options refused with one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli_fixtures import fetch_rows, run

PUBLIC = {"CAMPAIGN_PUBLIC_URL": "https://dialer.example.com"}
BASE = ["--from", "+14155550100", "--calling-hours", "any"]


def test_a_message_with_placeholders_loads_and_is_served_by_the_engine(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    """The message's columns must be in the file; a row whose {appointment} is empty is
    rejected with its line, while an empty {first_name|there} takes its default; the answer URL
    is the engine's, the content and the menu are stored."""
    csv_file = tmp_path / "appointments.csv"
    csv_file.write_text(
        "phone,first_name,appointment\n"
        "+14155551001,Ann,3 December at 10:00\n"
        "+14155551002,,4 December at 09:30\n"
        "+14155551003,Cy,\n",
        encoding="utf-8",
    )
    loaded = run(
        campaign_command, {**cli_env, **PUBLIC}, "load", str(csv_file), "--name", "reminders",
        *BASE, "--message", "Hello {first_name|there}, your appointment is on {appointment}.",
        "--gather", "1=confirmed,9=opt-out", "--after", "1=Thank you, see you then.",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 2" in loaded.stdout
    assert "line 4" in loaded.stderr
    assert "column 'appointment' is empty and the campaign's message says it" in loaded.stderr
    (campaign,) = asyncio.run(
        fetch_rows(
            database_url, "SELECT id, answer_url, message, gather, after_keypress FROM campaigns"
        )
    )
    assert campaign["answer_url"] == (
        f"https://dialer.example.com/plivo/answer?campaign={campaign['id']}"
    )
    assert campaign["gather"] == '{"1": "confirmed", "9": "opt-out"}'
    assert campaign["after_keypress"] == '{"1": "Thank you, see you then."}'


def test_placeholders_and_content_options_are_checked(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A placeholder no column has refuses the load, listing the columns there are; --message
    with --answer-url, or without CAMPAIGN_PUBLIC_URL, and a broken --answer-xml are one line;
    nothing is created."""
    csv_file = tmp_path / "appointments.csv"
    csv_file.write_text("phone,name\n+14155551001,Ann\n", encoding="utf-8")
    template = tmp_path / "answer.xml"
    template.write_text("<Response><Speak>{name}</Response>", encoding="utf-8")
    load = ["load", str(csv_file), "--name", "x", *BASE]
    for env, arguments, code, message in (
        (PUBLIC, ["--message", "Hi {first_name}"], 1,
         "the campaign's message says {first_name}, but the file has no such column; its "
         "columns are: name"),
        (PUBLIC, ["--message", "Hi", "--answer-url", "https://example.com/a.xml"], 2,
         "campaign: error: --answer-url: with --message, --play or --answer-xml the engine"),
        ({}, ["--message", "Hi"], 2, "CAMPAIGN_PUBLIC_URL"),
        (PUBLIC, ["--answer-xml", str(template)], 2,
         f"campaign: error: --answer-xml: {template}: not well-formed XML"),
    ):  # fmt: skip
        refused = run(campaign_command, {**cli_env, **env}, *load, *arguments)
        assert refused.returncode == code, refused.stderr
        assert message in refused.stderr, refused.stderr
    assert "no campaigns yet" in run(campaign_command, cli_env, "list").stdout
