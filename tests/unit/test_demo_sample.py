"""`campaign demo`'s sample and its simulated callees, without a database or a network: the
sample CSV (names and appointments, the same for the same seed and day), the seed that makes
every time zone's callees show each kind of answer, so the demo shows them all at any hour,
and the reminder a CSV of one's own hears."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from campaign.cli.services import demo as demo_command
from campaign.demo import (
    DEMO_FROM,
    DEMO_MAX_ATTEMPTS,
    DEMO_MESSAGE,
    DEMO_PLAIN_MESSAGE,
    DEMO_ROWS,
    MONTHS,
    demo_message,
    demo_simulator_config,
    write_sample_csv,
)
from campaign.destinations import InvalidDestination, read_destination
from campaign.simulator import Ledger
from campaign.simulator.account import SimulatedAccount

APPOINTMENT = re.compile(r"(?P<weekday>\w+) (?P<day>\d+) (?P<month>\w+) at (?P<time>\d\d:\d\d)")
# Thursday: the two weeks after it hold two weekends.
FIRST_DAY = date(2026, 12, 3)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sample_rows_have_first_names_and_upcoming_appointments(tmp_path: Path) -> None:
    """Each row has a first name (but one row in ten, left empty as real lists do) and an
    appointment on a weekday within the two weeks after the given day, between 08:30 and 17:15,
    written as a reminder says it (`Monday 7 December at 10:30`, the weekday true to the
    date); the same seed and day write the same file, another day moves only the appointments,
    another seed changes the numbers."""
    path = tmp_path / "sample.csv"
    write_sample_csv(path, DEMO_ROWS, first_day=FIRST_DAY)
    rows = read_rows(path)
    assert len(rows) == DEMO_ROWS
    assert list(rows[0]) == ["first_name", "phone", "appointment"]
    assert [index for index, row in enumerate(rows) if not row["first_name"]] == [
        6,
        16,
        26,
        36,
        46,
    ]
    for row in rows:
        found = APPOINTMENT.fullmatch(row["appointment"])
        assert found is not None, row
        when = datetime.strptime(
            f"{found['day']} {MONTHS.index(found['month']) + 1} 2026 {found['time']}",
            "%d %m %Y %H:%M",
        )
        if when.date() < FIRST_DAY:
            when = when.replace(year=2027)
        assert FIRST_DAY < when.date() <= FIRST_DAY + timedelta(days=16), row
        assert when.strftime("%A") == found["weekday"], row
        assert when.weekday() < 5, row
        assert "08:30" <= found["time"] <= "17:15", row
    assert len({row["appointment"] for row in rows}) > DEMO_ROWS // 2

    again = tmp_path / "again.csv"
    write_sample_csv(again, DEMO_ROWS, first_day=FIRST_DAY)
    assert again.read_bytes() == path.read_bytes()
    next_week = tmp_path / "next-week.csv"
    write_sample_csv(next_week, DEMO_ROWS, first_day=FIRST_DAY + timedelta(days=7))
    moved = read_rows(next_week)
    assert [row["phone"] for row in moved] == [row["phone"] for row in rows]
    assert [row["appointment"] for row in moved] != [row["appointment"] for row in rows]
    other_seed = tmp_path / "other-seed.csv"
    write_sample_csv(other_seed, DEMO_ROWS, seed=8, first_day=FIRST_DAY)
    assert [row["phone"] for row in read_rows(other_seed)] != [row["phone"] for row in rows]


def test_every_time_zone_of_the_default_sample_shows_every_kind_of_answer(tmp_path: Path) -> None:
    """Whichever calling windows are open when the demo runs, whole time zones of the sample
    are dialled; with the demo's simulator (its seed, shares and draws by destination), each
    zone's callees include, on their first call, one who confirms (1), one who cancels (2),
    one who opts out (9) and one who is busy and answers a redial with a key. So the default
    demo shows all of them at any hour. (The CLI's default --rows is this sample's.)"""
    rows_option = next(param for param in demo_command.params if param.name == "rows")
    assert rows_option.default == DEMO_ROWS
    path = tmp_path / "sample.csv"
    write_sample_csv(path, DEMO_ROWS, first_day=FIRST_DAY)
    zones: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for row in read_rows(path):
        try:
            destination, time_zones = read_destination(row["phone"], "US")
        except InvalidDestination:
            continue
        if destination not in {d for callees in zones.values() for d in callees}:
            zones[time_zones].append(destination)
    assert len(zones) == 5

    account = SimulatedAccount(demo_simulator_config("token"), Ledger(), lambda: 0.0)

    def calls(destination: str) -> list[tuple[str, str | None]]:
        """The callee's calls until one is not redialled: (outcome, key pressed)."""
        fates: list[tuple[str, str | None]] = []
        while len(fates) < DEMO_MAX_ATTEMPTS:
            (call,) = account.place_calls(0, 0.0, DEMO_FROM, [destination], {})
            pressed = account.keypad(call)() if call.outcome == "completed" else None
            fates.append((call.outcome, pressed))
            if call.outcome not in ("busy", "no-answer"):
                break
        return fates

    for time_zones, callees in zones.items():
        fates = [calls(destination) for destination in callees]
        first_keys = {key for (outcome, key), *_ in fates if outcome == "completed"}
        assert {"1", "2", "9"} <= first_keys, (time_zones, fates)
        assert any(
            redials[0][0] == "busy" and redials[-1][0] == "completed" and redials[-1][1]
            for redials in fates
        ), (time_zones, fates)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n first_name ,phone, appointment\n Ada,+14155550123,Monday\n", DEMO_MESSAGE),
        ("name,phone\nAda,+14155550123\n", DEMO_PLAIN_MESSAGE),
        ("+14155550123\n", DEMO_PLAIN_MESSAGE),
        (b"phone,\xff\n", DEMO_PLAIN_MESSAGE),
    ],
    ids=["sample-columns", "no-appointment", "no-header", "not-utf8"],
)
def test_a_csv_of_ones_own_without_the_columns_hears_the_plain_reminder(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    """`campaign demo --csv FILE` says the reminder with {first_name} and {appointment} only
    when the file has both columns (the load would refuse a placeholder naming no column);
    otherwise, or when the file cannot be read as UTF-8, the reminder without them."""
    path = tmp_path / "own.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    assert demo_message(path) == message
    assert demo_message(tmp_path / "missing.csv") == DEMO_PLAIN_MESSAGE
