"""Loading CSV files into Postgres: every quirk of real files, duplicates, all-or-nothing."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path

import asyncpg
import pytest
from worker_fixtures import claimed

from campaign import queries
from campaign.destinations import LoadError, Rejected
from campaign.importer import CsvSource, LoadOptions, LoadSummary, load_csv
from campaign.models import CampaignSpec, CampaignStatus, Schedule

SPEC = CampaignSpec(
    name="reminders",
    from_number="+14155550100",
    answer_url="https://example.com/answer.xml",
    call_parameters={"answer_method": "GET", "time_limit": 300},
)


@dataclass
class Recorder:
    """A LoadObserver that keeps what it is told."""

    rejects: list[Rejected] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)

    def rejected(self, row: Rejected) -> None:
        self.rejects.append(row)

    def progressed(self, bytes_read: int) -> None:
        self.progress.append(bytes_read)


async def load(
    pool: asyncpg.Pool,
    path: Path,
    content: bytes | str,
    target: CampaignSpec | str = SPEC,
    options: LoadOptions | None = None,
) -> tuple[LoadSummary, Recorder]:
    path.write_bytes(content.encode() if isinstance(content, str) else content)  # noqa: ASYNC240  # a small test file
    recorder = Recorder()
    source = CsvSource(path)
    try:
        summary = await load_csv(
            pool, source, target, options or LoadOptions(default_region="US"), recorder
        )
    finally:
        source.close()
    return summary, recorder


async def contacts(pool: asyncpg.Pool) -> list[tuple[str, str, int, dict[str, str]]]:
    rows = await pool.fetch(
        "SELECT destination, raw_destination, line_number, fields FROM contacts ORDER BY id"
    )
    return [tuple(row.values()) for row in rows]


async def test_load_creates_campaign_with_its_parameters(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A load creates the running campaign with the given Make-a-call parameters and contacts."""
    summary, _ = await load(pool, tmp_path / "a.csv", "phone\n+14155550123\n(415) 555-0124\n")
    row = await pool.fetchrow("SELECT * FROM campaigns")
    assert row is not None
    assert (row["name"], row["status"], row["from"], row["answer_method"], row["time_limit"]) == (
        "reminders",
        "running",
        "+14155550100",
        "GET",
        300,
    )
    assert (summary.rows_read, summary.loaded, summary.duplicates, summary.rejected) == (2, 2, 0, 0)
    assert [c[0] for c in await contacts(pool)] == ["+14155550123", "+14155550124"]
    statuses = await pool.fetch("SELECT DISTINCT status, attempts FROM contacts")
    assert [tuple(r.values()) for r in statuses] == [("pending", 0)]


async def test_bom_crlf_quotes_extra_columns_and_blank_lines(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """UTF-8 BOM, CRLF, quoted fields (with commas and newlines), extra columns, blank lines."""
    content = (
        "\ufeffName,Phone Number,Note\r\n"
        '"Smith, Ada","+1 (415) 555-0123","line one\r\nline two"\r\n'
        "\r\n"
        ",,\r\n"
        'Zoë,415.555.0124,"say ""hi"""\r\n'
    ).encode()
    summary, recorder = await load(pool, tmp_path / "quirks.csv", content)
    assert recorder.rejects == []
    assert summary.loaded == 2
    assert await contacts(pool) == [
        (
            "+14155550123",
            "+1 (415) 555-0123",
            2,
            {"Name": "Smith, Ada", "Note": "line one\r\nline two"},
        ),
        ("+14155550124", "415.555.0124", 6, {"Name": "Zoë", "Note": 'say "hi"'}),
    ]


async def test_one_column_without_header(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A bare list of numbers, first line included, is loaded with line numbers from 1."""
    summary, _ = await load(pool, tmp_path / "bare.csv", "+14155550123\n+14155550124\n")
    assert summary.loaded == 2
    assert [(c[0], c[2]) for c in await contacts(pool)] == [
        ("+14155550123", 1),
        ("+14155550124", 2),
    ]


async def test_rejects_are_reported_with_line_value_and_reason(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Each bad row is reported with its line number, raw value and reason; good rows load."""
    content = "phone\n+14155550123\nhello\n\n555-01\n+14155550100\n"
    summary, recorder = await load(pool, tmp_path / "r.csv", content)
    assert summary.loaded == 1
    assert summary.rejected == 3
    assert [(r.line_number, r.raw_value) for r in recorder.rejects] == [
        (3, "hello"),
        (5, "555-01"),
        (6, "+14155550100"),
    ]
    assert "from number" in recorder.rejects[2].reason


async def test_duplicates_within_file_and_against_campaign(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The same person written twice loads once; a second file adds only new people."""
    first, _ = await load(
        pool, tmp_path / "1.csv", "phone\n+14155550123\n(415) 555-0123\n+14155550124\n"
    )
    assert (first.loaded, first.duplicates) == (2, 1)
    second, _ = await load(
        pool, tmp_path / "2.csv", "phone\n415-555-0124\n+14155550125\n", target="reminders"
    )
    assert (second.loaded, second.duplicates) == (1, 1)
    assert second.campaign.name == "reminders"
    assert [c[0] for c in await contacts(pool)] == [
        "+14155550123",
        "+14155550124",
        "+14155550125",
    ]
    first_row = await pool.fetchrow(
        "SELECT line_number FROM contacts WHERE destination = $1", "+14155550123"
    )
    assert first_row is not None
    assert first_row["line_number"] == 2  # the first occurrence wins


async def test_nothing_usable_leaves_nothing_behind(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A file with no dialable row fails and creates no campaign."""
    with pytest.raises(LoadError, match="none of its 2 rows"):
        await load(pool, tmp_path / "bad.csv", "phone\nnope\n123\n")
    assert await pool.fetchval("SELECT count(*) FROM campaigns") == 0


async def test_failure_midway_rolls_everything_back(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Bytes that are not UTF-8 deep in the file undo the rows loaded before them."""
    good = "".join(f"+1415555{index:04d}\n" for index in range(100, 9100))
    content = b"phone\n" + good.encode() + b"+1415\xff5550123\n"
    with pytest.raises(LoadError, match="not UTF-8"):
        await load(pool, tmp_path / "latin1.csv", content)
    assert await pool.fetchval("SELECT count(*) FROM campaigns") == 0
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0


async def test_strict_refuses_any_rejected_row(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """With strict, one bad row fails the whole load and names its line."""
    with pytest.raises(LoadError, match="line 3"):
        await load(
            pool,
            tmp_path / "s.csv",
            "phone\n+14155550123\nnope\n",
            options=LoadOptions(default_region="US", strict=True),
        )
    assert await pool.fetchval("SELECT count(*) FROM campaigns") == 0


async def test_existing_name_and_missing_campaign(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A taken name, or adding to a campaign that does not exist, fails with the fix."""
    await load(pool, tmp_path / "a.csv", "phone\n+14155550123\n")
    with pytest.raises(LoadError, match="exists already; add to it with --campaign"):
        await load(pool, tmp_path / "b.csv", "phone\n+14155550124\n")
    with pytest.raises(LoadError, match="no campaign named 'other'"):
        await load(pool, tmp_path / "c.csv", "phone\n+14155550124\n", target="other")
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 1


async def test_missing_and_empty_files(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A missing file and an empty file each fail with one line naming the file."""
    with pytest.raises(LoadError, match="no such file"):
        CsvSource(tmp_path / "absent.csv")
    with pytest.raises(LoadError, match="no rows"):
        await load(pool, tmp_path / "empty.csv", "\n\n")
    assert await pool.fetchval("SELECT count(*) FROM campaigns") == 0


async def test_paused_campaign_and_progress_view(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A paused campaign is stored paused; campaign_progress counts its contacts by status."""
    spec = CampaignSpec(
        name="later",
        from_number="+14155550100",
        answer_url="https://example.com/a",
        status=CampaignStatus.PAUSED,
    )
    await load(pool, tmp_path / "p.csv", "phone\n+14155550123\n+14155550124\n", target=spec)
    progress = await queries.progress(pool, "later")
    assert progress is not None
    assert progress.status == CampaignStatus.PAUSED
    assert progress.total == 2
    assert progress.counts["pending"] == 2
    assert sum(progress.counts.values()) == 2


@pytest.mark.slow
async def test_parallel_validation_matches_inline(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Validating in worker processes loads exactly what validating inline loads, in order."""
    path = tmp_path / "many.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "n"])
        for index in range(12_000):
            value = f"(415) 555-{index % 10_000:04d}" if index % 97 else "bogus"
            writer.writerow([value, index])
    content = path.read_bytes()
    spec_b = CampaignSpec(name="inline", from_number="+14155550100", answer_url="https://e.com/a")
    parallel, parallel_log = await load(
        pool, path, content, options=LoadOptions(default_region="US", jobs=2)
    )
    inline, inline_log = await load(
        pool,
        tmp_path / "again.csv",
        content,
        target=spec_b,
        options=LoadOptions(default_region="US", jobs=1),
    )
    assert (parallel.loaded, parallel.duplicates, parallel.rejected) == (
        inline.loaded,
        inline.duplicates,
        inline.rejected,
    )
    assert parallel_log.rejects == inline_log.rejects
    orders = await pool.fetch(
        "SELECT campaign_id, array_agg(destination ORDER BY id) AS d FROM contacts GROUP BY 1"
    )
    assert orders[0]["d"] == orders[1]["d"]


# --- time zones and suppression at load ---------------------------------------------------------

LOCAL_HOURS = Schedule(calling_hours=((time(8), time(21)),))


async def zones_by_line(pool: asyncpg.Pool) -> dict[int, list[str]]:
    rows = await pool.fetch("SELECT line_number, time_zones FROM contacts ORDER BY id")
    return {row["line_number"]: row["time_zones"] for row in rows}


async def test_each_contact_gets_its_zones_from_its_row_its_number_or_the_default(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The row's tz column wins (any case, stored as the database spells it), then the number's
    zones, then --default-timezone; a bad zone name rejects its row with its line."""
    spec = replace(SPEC, schedule=LOCAL_HOURS, default_time_zone="america/chicago")
    content = (
        "phone,tz\n"
        "+14155550123,\n"  # 2: the number's zone
        "+14155550124,asia/kolkata\n"  # 3: the row's, in the database's spelling
        "+442071838750,\n"  # 4: London
        "sip:alice@example.com,\n"  # 5: no zone of its own: the default
        "+14155550125,Mars/Olympus\n"  # 6: rejected
        "+14155550126,America/New_Yrok\n"  # 7: rejected, with a suggestion
    )
    summary, recorder = await load(pool, tmp_path / "z.csv", content, target=spec)
    assert (summary.loaded, summary.rejected) == (4, 2)
    assert await zones_by_line(pool) == {
        2: ["America/Los_Angeles"],
        3: ["Asia/Kolkata"],
        4: ["Europe/London"],
        5: ["America/Chicago"],
    }
    assert [(r.line_number, r.reason) for r in recorder.rejects] == [
        (6, "'Mars/Olympus' in column 'tz' is not an IANA time zone name (like America/New_York)"),
        (
            7,
            "'America/New_Yrok' in column 'tz' is not an IANA time zone name (like "
            "America/New_York); did you mean America/New_York?",
        ),
    ]
    stored = await pool.fetchval("SELECT default_time_zone FROM campaigns")
    assert stored == "America/Chicago"


async def test_a_contact_without_a_zone_is_rejected_naming_default_timezone(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """With calling hours and no default zone, a SIP URI (no zone) is rejected with a reason
    that names --default-timezone; with `--calling-hours any` it needs none."""
    content = "phone\n+14155550123\nsip:alice@example.com\n"
    summary, recorder = await load(
        pool, tmp_path / "s.csv", content, target=replace(SPEC, schedule=LOCAL_HOURS)
    )
    assert (summary.loaded, summary.rejected) == (1, 1)
    assert recorder.rejects[0].line_number == 3
    assert "pass --default-timezone ZONE" in recorder.rejects[0].reason
    assert "a SIP URI has none" in recorder.rejects[0].reason
    anyhour, recorder = await load(
        pool, tmp_path / "s.csv", content, target=replace(SPEC, name="any")
    )
    assert (anyhour.loaded, anyhour.rejected) == (2, 0)


async def test_an_unknown_default_zone_or_zone_column_loads_nothing(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """--default-timezone the database does not know, or a --timezone-column the file lacks,
    refuses the load with the option and the fix; no campaign is left behind."""
    with pytest.raises(LoadError, match=r"--default-timezone: 'Europe/Lodnon' .*Europe/London\?"):
        await load(
            pool,
            tmp_path / "d.csv",
            "phone\n+14155550123\n",
            target=replace(SPEC, schedule=LOCAL_HOURS, default_time_zone="Europe/Lodnon"),
        )
    with pytest.raises(LoadError, match=r"no column 'zone' in the header .*--timezone-column"):
        await load(
            pool,
            tmp_path / "d.csv",
            "phone\n+14155550123\n",
            options=LoadOptions(default_region="US", timezone_column="zone"),
        )
    assert await pool.fetchval("SELECT count(*) FROM campaigns") == 0


async def test_contacts_of_a_set_of_zones_are_stored_together_first_duplicate_wins(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Ids follow the lines within each set of zones, the sets stored apart (what the claim
    reads); of a number written twice, the first line wins, even with another zone."""
    spec = replace(SPEC, schedule=LOCAL_HOURS)
    content = (
        "phone,timezone\n"
        "+14155550001,Europe/London\n"  # 2
        "+14155550002,\n"  # 3: Los Angeles
        "+14155550003,Europe/London\n"  # 4
        "+14155550002,Asia/Tokyo\n"  # 5: a duplicate of line 3
        "+14155550004,\n"  # 6
    )
    summary, _ = await load(pool, tmp_path / "o.csv", content, target=spec)
    assert (summary.loaded, summary.duplicates) == (4, 1)
    rows = await pool.fetch("SELECT line_number, time_zones FROM contacts ORDER BY id")
    assert [(row["line_number"], row["time_zones"]) for row in rows] == [
        (3, ["America/Los_Angeles"]),
        (6, ["America/Los_Angeles"]),
        (2, ["Europe/London"]),
        (4, ["Europe/London"]),
    ]


async def test_suppressed_numbers_are_stored_suppressed_at_load(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A number on `default` or on a list the campaign honours is stored `suppressed` with the
    list named, counted in the summary and never pending; one on another list is dialled."""
    await pool.executemany(
        "INSERT INTO suppressions (list, destination, reason) VALUES ($1, $2, 'asked')",
        [("default", "+14155550001"), ("clinic", "+14155550002"), ("other", "+14155550003")],
    )
    spec = replace(SPEC, suppression_lists=("default", "clinic"))
    content = "phone\n+14155550001\n+14155550002\n+14155550003\n+14155550004\n"
    summary, _ = await load(pool, tmp_path / "p.csv", content, target=spec)
    assert (summary.loaded, summary.suppressed) == (4, 2)
    assert summary.as_json()["suppressed"] == 2
    rows = await pool.fetch("SELECT destination, status, last_error FROM contacts ORDER BY id")
    assert [tuple(row.values()) for row in rows] == [
        ("+14155550001", "suppressed", "suppressed: on list default"),
        ("+14155550002", "suppressed", "suppressed: on list clinic"),
        ("+14155550003", "pending", None),
        ("+14155550004", "pending", None),
    ]
    progress = await queries.progress(pool, "reminders")
    assert progress is not None
    assert progress.counts["suppressed"] == 2


async def test_a_number_whose_zones_are_never_all_open_is_rejected_with_its_line(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A +1 toll-free number has the zones of all North America, Guam to Pago Pago (the
    shortest arc of the day that holds every one of their clocks is over 10 hours): with
    calling hours 09:00-17:00 they are never all open at once, in any season, so the contact
    would wait for ever. It is rejected with its line and the fix; its own zone in the row's
    timezone column makes it load."""
    spec = replace(SPEC, schedule=Schedule(calling_hours=((time(9), time(17)),)))
    content = (
        "phone,tz\n+18005550199,\n+14155550123,\n+18005550198,America/Chicago\n+14155550124,EST\n"
    )
    summary, recorder = await load(pool, tmp_path / "t.csv", content, target=spec)
    assert (summary.loaded, summary.rejected) == (2, 2)
    # An abbreviation is not a place's rules (EST skips summer time): refused at once.
    abbreviation, rejected = recorder.rejects
    assert abbreviation.line_number == 5
    assert "did you mean America/New_York?" in abbreviation.reason
    assert rejected.line_number == 2
    assert rejected.reason.startswith("its number spans 42 time zones (")
    assert rejected.reason.endswith(
        "that are never all within the calling hours (09:00-17:00) at once; give the row its "
        "own zone in a timezone column"
    )
    assert sorted(await zones_by_line(pool)) == [3, 4]


async def test_the_claim_settles_numbers_suppressed_since_the_load(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A load notes the lists' version it looked its numbers up at; numbers added after (a few:
    read whole; over a thousand: each number looked up) are settled `suppressed` by the claim,
    whichever list of the campaign they are on, and never claimed; the others are."""
    spec = replace(SPEC, suppression_lists=("default", "clinic"))
    content = "phone\n" + "".join(f"+1415555{index:04d}\n" for index in range(6))
    summary, _ = await load(pool, tmp_path / "v.csv", content, target=spec)
    seen = await pool.fetchval("SELECT DISTINCT suppressions_version FROM contacts")
    assert seen == await pool.fetchval("SELECT version FROM suppression_version")
    campaign_id = summary.campaign.id
    # A few added since the load: read whole.
    await pool.execute(
        "INSERT INTO suppressions (list, destination) VALUES ('default', '+14155550000'),"
        " ('clinic', '+14155550001'), ('other', '+14155550002')"
    )
    assert await pool.fetchval("SELECT min(added_version) FROM suppressions") > seen
    # The first three due: two of them settled, the third claimed.
    assert await claimed(pool, campaign_id, wanted=3) == ["+14155550002"]
    # Over a thousand added since: each number looked up.
    await pool.execute(
        "INSERT INTO suppressions (list, destination)"
        " SELECT 'default', '+1202555' || lpad(g::text, 4, '0') FROM generate_series(1, 1200) g"
        " UNION ALL SELECT 'default', '+14155550005'"
    )
    assert await claimed(pool, campaign_id, wanted=10) == ["+14155550003", "+14155550004"]
    rows = await pool.fetch("SELECT destination, status, last_error FROM contacts ORDER BY id")
    assert [tuple(row.values()) for row in rows] == [
        ("+14155550000", "suppressed", "suppressed: on list default"),
        ("+14155550001", "suppressed", "suppressed: on list clinic"),
        ("+14155550002", "claimed", None),
        ("+14155550003", "claimed", None),
        ("+14155550004", "claimed", None),
        ("+14155550005", "suppressed", "suppressed: on list default"),
    ]
