"""`campaign export`: every contact of a campaign with its outcome, as CSV, streamed."""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import asyncpg

from campaign import queries
from campaign.formulas import neutralise, neutralise_phone

# After the contact's own CSV columns, in this order: the columns of the `contact_outcomes` view.
OUTCOME_COLUMNS: tuple[str, ...] = (
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
)
# A contact's own column named like one of ours is written as `field:<name>`, so that no two
# columns of the header share a name.
FIELD_PREFIX = "field:"
# Rows fetched from the server-side cursor at a time: memory stays flat however big the campaign.
DEFAULT_CHUNK_ROWS = 5_000


class ExportError(Exception):
    """An export a user asked for cannot be made; the message says why in one line."""


class OutputError(ExportError):
    """Writing the export failed (a full disk, a closed pipe); `error` is the OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"cannot write the export: {error.strerror or error}")
        self.error = error


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote."""

    campaign: str
    rows: int
    columns: tuple[str, ...]


def export_header(field_names: Sequence[str]) -> tuple[str, ...]:
    """The CSV header: the contact's own columns (renamed when they clash), then the outcome's."""
    own = tuple(
        f"{FIELD_PREFIX}{name}" if name in OUTCOME_COLUMNS else name for name in field_names
    )
    return own + OUTCOME_COLUMNS


def csv_value(value: object) -> object:
    """A database value as the CSV cell shows it: NULL empty, booleans and times spelled out."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# How each outcome column's text is written when formulas are neutralised
# (campaign/formulas.py): the engine's `destination` as is, the phone as written unless it is
# more than a number, every other text (from Plivo, or our own words) neutralised.
_KEPT_COLUMNS = frozenset({"destination"})
_PHONE_COLUMNS = frozenset({"raw_destination"})


def _neutralised(column: str, value: object) -> object:
    if not isinstance(value, str) or column in _KEPT_COLUMNS:
        return value
    return neutralise_phone(value) if column in _PHONE_COLUMNS else neutralise(value)


def export_row(record: asyncpg.Record, *, escape_formulas: bool = True) -> list[object]:
    """One `export_contact_outcomes` record as the cells of a CSV row; with `escape_formulas`,
    text that a spreadsheet would run as a formula is written as text."""
    own = [csv_value(value) for value in record["field_values"]]
    outcome = [(column, csv_value(record[column])) for column in OUTCOME_COLUMNS]
    if not escape_formulas:
        return [*own, *(value for _, value in outcome)]
    cells: list[object] = [neutralise(value) if isinstance(value, str) else value for value in own]
    cells.extend(_neutralised(column, value) for column, value in outcome)
    return cells


@contextlib.asynccontextmanager
async def export_chunks(
    pool: asyncpg.Pool, name: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> AsyncIterator[tuple[tuple[str, ...], AsyncIterator[list[asyncpg.Record]]]]:
    """Campaign `name`'s export: its header and its records (export_row makes each a row), in
    contact id order, `chunk_rows` at a time from a server-side cursor.

    One snapshot (a repeatable-read transaction, held while the block runs) serves the header's
    keys and every row, so a load running meanwhile cannot add a column the header lacks.
    Raises ExportError for an unknown campaign.
    """
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        campaign = await queries.campaign_by_name(connection, name)
        if campaign is None:
            raise ExportError(f"no campaign named {name!r}; `campaign list` shows the campaigns")
        field_names = await queries.export_field_names(connection, campaign.id)
        yield (
            export_header(field_names),
            queries.contact_outcome_chunks(connection, campaign.id, field_names, chunk_rows),
        )


async def export_campaign(
    pool: asyncpg.Pool,
    name: str,
    out: IO[str],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    escape_formulas: bool = True,
    written: Callable[[], Awaitable[None]] | None = None,
) -> ExportSummary:
    """Write campaign `name`'s contacts with their outcomes to `out` as CSV, in contact id order
    (see export_chunks), awaiting `written` after each chunk (the HTTP API sends it on then).

    With `escape_formulas`, cells (and column names) a spreadsheet would run as formulas are
    written as text (campaign/formulas.py). Raises ExportError for an unknown campaign and
    OutputError when `out` cannot be written.
    """
    async with export_chunks(pool, name, chunk_rows=chunk_rows) as (header, chunks):
        writer = csv.writer(out)
        rows = 0
        try:
            writer.writerow([neutralise(name) for name in header] if escape_formulas else header)
            async for records in chunks:
                writer.writerows(
                    export_row(record, escape_formulas=escape_formulas) for record in records
                )
                rows += len(records)
                if written is not None:
                    await written()
            out.flush()
        except OSError as error:
            raise OutputError(error) from None
    return ExportSummary(campaign=name, rows=rows, columns=header)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[IO[str]]:
    """A CSV text file that appears at `path` whole or not at all.

    It is written beside `path` under a hidden temporary name and renamed over `path` only when
    the block ends without an error; on any error (or Ctrl-C) the temporary file is removed.
    """
    if path.is_dir():
        raise ExportError(f"--output {path}: is a folder; give the path of a file")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        handle = temporary.open("x", encoding="utf-8", newline="")
    except OSError as error:
        raise ExportError(
            f"--output {path}: cannot write there ({error.strerror or error}); "
            "choose a file in a folder you can write to"
        ) from None
    try:
        yield handle
    except BaseException as error:
        with contextlib.suppress(OSError):
            handle.close()
        temporary.unlink(missing_ok=True)
        if isinstance(error, OutputError):
            raise ExportError(f"--output {path}: {error}") from None
        raise
    try:
        handle.close()
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ExportError(
            f"--output {path}: cannot write there ({error.strerror or error})"
        ) from None
