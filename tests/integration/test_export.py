"""`campaign export`'s CSV against a real database: columns, values, order, streaming, failures."""

from __future__ import annotations

import csv
import errno
import io
import tracemalloc
from pathlib import Path

import asyncpg
import pytest

from campaign.export import (
    OUTCOME_COLUMNS,
    ExportError,
    OutputError,
    atomic_output,
    export_campaign,
)


def _files_in(folder: Path) -> list[str]:
    """The names of the files in `folder`, sorted: what an export left behind."""
    return sorted(path.name for path in folder.iterdir())


async def _campaign(pool: asyncpg.Pool, name: str) -> int:
    campaign_id: int = await pool.fetchval(
        """INSERT INTO campaigns (name, status, "from", answer_url)
           VALUES ($1, 'running', '+14155550100', 'https://example.com/a.xml') RETURNING id""",
        name,
    )
    return campaign_id


@pytest.fixture
async def outcomes_campaign(pool: asyncpg.Pool) -> None:
    """Campaign `results`: four contacts in every kind of state, and a contact of another one."""
    campaign_id = await _campaign(pool, "results")
    other_id = await _campaign(pool, "other")
    await pool.execute(
        """
        INSERT INTO contacts (campaign_id, destination, raw_destination, line_number, fields,
                              status, attempts, call_status, hangup_cause, hangup_cause_code,
                              duration_s, bill_duration_s, answered_at, ended_at, machine,
                              request_uuid, call_uuid, last_error, updated_at)
        VALUES
          ($1, '+14155550101', '415 555 0101', 2, '{"name": "Ada", "city": "Paris"}',
           'fired', 1, 'completed', 'NORMAL_CLEARING', 4000, 31, 60,
           '2026-03-01 10:00:05+00', '2026-03-01 10:00:36+00', false,
           'req-1', 'call-1', NULL, '2026-03-01 10:00:37+00'),
          ($1, '+14155550102', '(415) 555-0102', 3, '{"name": "Bob", "status": "vip"}',
           'pending', 1, 'busy', 'USER_BUSY', 3010, 0, 0,
           NULL, '2026-03-01 10:01:00+00', NULL,
           'req-2', 'call-2', NULL, '2026-03-01 10:01:01+00'),
          ($1, 'sip:zoe@example.com', 'sip:zoe@example.com', 4, '{}',
           'failed', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, 'invalid destination', '2026-03-01 10:02:00+00'),
          ($1, '+14155550104', '+1 415 555 0104', 5,
           '{"name": "Zoë, \\"the\\" boss\\nsecond line", "city": ""}',
           'queued', 2, 'no-answer', 'NO_ANSWER', 3020, 0, 0, NULL, NULL, true,
           'req-4', NULL, NULL, '2026-03-01 10:03:00+00'),
          ($2, '+14155550101', '415 555 0101', 2, '{"other": "x"}',
           'pending', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, '2026-03-01 10:00:00+00')
        """,
        campaign_id,
        other_id,
    )


async def test_export_header_and_rows(pool: asyncpg.Pool, outcomes_campaign: None) -> None:
    """Every contact of the campaign, in id order: its own columns by name (one clashing with an
    outcome column renamed field:…), then its outcome; NULL empty, times ISO 8601, booleans
    spelled out, quotes and newlines in values survive; another campaign's contact is absent."""
    out = io.StringIO(newline="")
    summary = await export_campaign(pool, "results", out)

    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == ["city", "name", "field:status", *OUTCOME_COLUMNS]
    assert rows[0][3:] == [
        "destination",
        "raw_destination",
        "line_number",
        "status",
        "outcome",
        "attempts",
        "call_status",
        "hangup_cause",
        "hangup_cause_code",
        "duration_s",
        "bill_duration_s",
        "answered_at",
        "ended_at",
        "machine",
        "request_uuid",
        "call_uuid",
        "caller_id",
        "response",
        "machine_action",
        "last_error",
        "updated_at",
    ]
    assert rows[1:] == [
        ["Paris", "Ada", "", "+14155550101", "415 555 0101", "2", "fired", "answered", "1",
         "completed", "NORMAL_CLEARING", "4000", "31", "60", "2026-03-01T10:00:05+00:00",
         "2026-03-01T10:00:36+00:00", "false", "req-1", "call-1", "", "", "", "",
         "2026-03-01T10:00:37+00:00"],
        ["", "Bob", "vip", "+14155550102", "(415) 555-0102", "3", "pending", "redial scheduled",
         "1", "busy", "USER_BUSY", "3010", "0", "0", "", "2026-03-01T10:01:00+00:00", "",
         "req-2", "call-2", "", "", "", "", "2026-03-01T10:01:01+00:00"],
        ["", "", "", "sip:zoe@example.com", "sip:zoe@example.com", "4", "failed", "failed", "1",
         "", "", "", "", "", "", "", "", "", "", "", "", "", "invalid destination",
         "2026-03-01T10:02:00+00:00"],
        ["", 'Zoë, "the" boss\nsecond line', "", "+14155550104", "+1 415 555 0104", "5",
         "queued", "no-answer", "2", "no-answer", "NO_ANSWER", "3020", "0", "0", "", "", "true",
         "req-4", "", "", "", "", "", "2026-03-01T10:03:00+00:00"],
    ]  # fmt: skip
    assert summary.rows == 4
    assert summary.columns == tuple(rows[0])


async def test_cells_that_start_like_formulas_are_written_as_text(pool: asyncpg.Pool) -> None:
    """The contact's own columns (names and values), Plivo's words and a raw phone that is more
    than a number get a leading ' when they start with = + - @ tab or CR; `destination` and a
    raw phone written as a plain number (+1 415 …) stay as they are. escape_formulas=False
    writes every cell as stored."""
    campaign_id = await _campaign(pool, "formulas")
    await pool.execute(
        """
        INSERT INTO contacts (campaign_id, destination, raw_destination, line_number, fields,
                              hangup_cause, last_error, machine)
        VALUES ($1, '+14155550101', '+1 415 555 0101', 2,
                '{"note": "=HYPERLINK(\\"http://evil.example\\",\\"x\\")", "@tag": "-2+3",
                  "tab": "\\tA", "cr": "\\rB", "plain": "x=1", "plus": "+cmd|/C calc!A0"}',
                '@SUM(1)', '-error', NULL),
               ($1, '+14155550102', '=1+2 415 555 0102', 3, '{}', NULL, NULL, NULL)
        """,
        campaign_id,
    )
    out = io.StringIO(newline="")
    await export_campaign(pool, "formulas", out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    cells = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert rows[0][:6] == ["'@tag", "cr", "note", "plain", "plus", "tab"]
    assert cells[0]["'@tag"] == "'-2+3"
    assert cells[0]["note"] == '\'=HYPERLINK("http://evil.example","x")'
    assert (cells[0]["tab"], cells[0]["cr"]) == ("'\tA", "'\rB")
    assert (cells[0]["plain"], cells[0]["plus"]) == ("x=1", "'+cmd|/C calc!A0")
    assert (cells[0]["hangup_cause"], cells[0]["last_error"]) == ("'@SUM(1)", "'-error")
    assert (cells[0]["destination"], cells[0]["raw_destination"]) == (
        "+14155550101",
        "+1 415 555 0101",
    )
    assert cells[1]["raw_destination"] == "'=1+2 415 555 0102"

    verbatim = io.StringIO(newline="")
    await export_campaign(pool, "formulas", verbatim, escape_formulas=False)
    rows = list(csv.reader(io.StringIO(verbatim.getvalue(), newline="")))
    assert rows[0][0] == "@tag"
    assert dict(zip(rows[0], rows[1], strict=True))["note"].startswith("=HYPERLINK(")


async def test_campaign_without_fields_has_only_outcome_columns(pool: asyncpg.Pool) -> None:
    """A campaign whose CSV had only the phone column exports just the outcome columns."""
    campaign_id = await _campaign(pool, "bare")
    await pool.execute(
        "INSERT INTO contacts (campaign_id, destination, raw_destination, line_number)"
        " VALUES ($1, '+14155550101', '+14155550101', 2)",
        campaign_id,
    )
    out = io.StringIO(newline="")
    await export_campaign(pool, "bare", out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == list(OUTCOME_COLUMNS)
    assert rows[1][:6] == ["+14155550101", "+14155550101", "2", "pending", "pending", "0"]


async def test_empty_campaign_exports_the_header_only(pool: asyncpg.Pool) -> None:
    """A campaign with no contacts yet exports a header and no rows."""
    await _campaign(pool, "empty")
    out = io.StringIO(newline="")
    summary = await export_campaign(pool, "empty", out)
    assert out.getvalue() == ",".join(OUTCOME_COLUMNS) + "\r\n"
    assert summary.rows == 0


async def _many_contacts(pool: asyncpg.Pool, count: int) -> None:
    campaign_id = await _campaign(pool, "big")
    await pool.execute(
        """
        INSERT INTO contacts (campaign_id, destination, raw_destination, line_number, fields)
        SELECT $1, '+1415' || lpad(n::text, 7, '0'), 'raw ' || n, n + 1,
               jsonb_build_object('name', 'person ' || n, 'note', repeat('x', 100))
        FROM generate_series(1, $2) AS n
        """,
        campaign_id,
        count,
    )


async def _export_peak_bytes(pool: asyncpg.Pool, path: Path, chunk_rows: int) -> int:
    """The most memory Python held at once while exporting campaign `big` to a file."""
    with path.open("w", encoding="utf-8", newline="") as out:
        tracemalloc.start()
        try:
            await export_campaign(pool, "big", out, chunk_rows=chunk_rows)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak


@pytest.mark.slow
async def test_streams_many_contacts_in_chunks(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """20,000 contacts come out whole and in order across chunk boundaries, and memory holds a
    chunk at a time: the peak is a small share of the file (reading all rows at once is not)."""
    count = 20_000
    await _many_contacts(pool, count)
    path = tmp_path / "big.csv"

    peak_bytes = await _export_peak_bytes(pool, path, chunk_rows=200)

    with path.open(encoding="utf-8", newline="") as written:
        rows = list(csv.reader(written))
    assert rows[0] == ["name", "note", *OUTCOME_COLUMNS]
    assert len(rows) == count + 1
    assert [row[0] for row in rows[1:]] == [f"person {n}" for n in range(1, count + 1)]
    assert [row[4] for row in rows[1:]] == [str(n + 1) for n in range(1, count + 1)]
    file_bytes = path.stat().st_size
    assert peak_bytes < file_bytes / 2, (peak_bytes, file_bytes)
    # The measure tells the two apart: all rows in one fetch need more than twice the file.
    all_at_once_bytes = await _export_peak_bytes(pool, tmp_path / "all.csv", chunk_rows=count)
    assert all_at_once_bytes > 2 * file_bytes, (all_at_once_bytes, file_bytes)


async def test_unknown_campaign(pool: asyncpg.Pool) -> None:
    """An unknown campaign name is an ExportError that says how to find the right one."""
    with pytest.raises(ExportError) as raised:
        await export_campaign(pool, "ghost", io.StringIO())
    assert str(raised.value) == "no campaign named 'ghost'; `campaign list` shows the campaigns"


def test_output_in_missing_folder(tmp_path: Path) -> None:
    """An --output in a folder that does not exist (or under a file) fails before any query."""
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for target in (tmp_path / "missing" / "out.csv", a_file / "out.csv"):
        with (
            pytest.raises(ExportError, match=r"^--output .*out\.csv: cannot write there \("),
            atomic_output(target),
        ):
            pytest.fail("the block must not run")
        assert not target.exists()
    assert _files_in(tmp_path) == ["file.txt"]


def test_output_that_is_a_folder(tmp_path: Path) -> None:
    """An --output naming a folder is refused; the folder is untouched."""
    with (
        pytest.raises(ExportError, match="is a folder; give the path of a file"),
        atomic_output(tmp_path),
    ):
        pytest.fail("the block must not run")
    assert _files_in(tmp_path) == []


async def test_failed_export_leaves_nothing_and_keeps_old_file(
    pool: asyncpg.Pool, outcomes_campaign: None, tmp_path: Path
) -> None:
    """An export that fails (unknown campaign) leaves no partial file, and an existing file at
    --output keeps its old content; a successful one replaces it whole."""
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with (
        pytest.raises(ExportError, match="no campaign named 'ghost'"),
        atomic_output(target) as out,
    ):
        await export_campaign(pool, "ghost", out)
    assert target.read_text() == "old\n"
    assert _files_in(tmp_path) == ["out.csv"]

    with atomic_output(target) as out:
        await export_campaign(pool, "results", out)
    assert target.read_text(encoding="utf-8").startswith("city,name,field:status,destination,")
    assert _files_in(tmp_path) == ["out.csv"]


class _FullDisk(io.StringIO):
    """A file that accepts the header, then fails as a full disk does."""

    def write(self, text: str) -> int:
        if self.tell() > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


async def test_write_failure_is_an_output_error(
    pool: asyncpg.Pool, outcomes_campaign: None, tmp_path: Path
) -> None:
    """A write that fails mid-export is an OutputError naming the cause; through atomic_output
    it names --output and leaves no file behind."""
    with pytest.raises(OutputError, match="cannot write the export: No space left on device"):
        await export_campaign(pool, "results", _FullDisk())

    target = tmp_path / "out.csv"
    with (
        pytest.raises(ExportError, match=r"^--output .*: cannot write the export: No space"),
        atomic_output(target),
    ):
        raise OutputError(OSError(errno.ENOSPC, "No space left on device"))
    assert _files_in(tmp_path) == []
