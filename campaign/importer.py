"""CSV → validated, normalised contacts → COPY into Postgres, all-or-nothing.

The parse step (`CsvLayout`, `normalise_destination`, `validate_rows`) is pure and runs in worker
processes for large files, so that validation overlaps with reading the file and with the COPY.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import json
import multiprocessing
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import asyncpg
import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from campaign import queries
from campaign.models import Campaign, CampaignSpec, CampaignStatus

# Header names that mark the phone column, most specific first; compared case-insensitively
# with spaces and hyphens read as underscores.
PHONE_HEADERS: tuple[str, ...] = (
    "destination",
    "phone_number",
    "phone",
    "phonenumber",
    "mobile_number",
    "mobile",
    "cell_phone",
    "cellphone",
    "cell",
    "msisdn",
    "e164",
    "telephone",
    "tel",
    "number",
    "to",
    "contact_number",
    "sip_uri",
    "sip",
)
SIP_URI = re.compile(r"^sip:[^\s@<>]+@[A-Za-z0-9.\-]+(:[0-9]{1,5})?(;[^\s<>]*)?$", re.IGNORECASE)
CHUNK_ROWS = 5000
# Files at least this big are validated in worker processes: below it, starting them costs more
# than it saves.
PARALLEL_MIN_BYTES = 2_000_000


class LoadError(Exception):
    """The load cannot go on; nothing was written. The message names the file or row and the fix."""


class InvalidDestination(ValueError):
    """A CSV value is not a phone number or SIP URI we can dial; the message is the reason."""


def _header_key(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


def normalise_destination(raw: str, default_region: str | None) -> str:
    """E.164 with a leading + for a number, `sip:user@host` as is; else InvalidDestination."""
    value = raw.strip()
    if not value:
        raise InvalidDestination("empty phone number")
    if value[:4].lower() == "sip:":
        if not SIP_URI.match(value):
            raise InvalidDestination("not a SIP URI of the form sip:user@host")
        return "sip:" + value[4:]
    if "<" in value:
        raise InvalidDestination("contains <, which Plivo reads as a separator of destinations")
    try:
        number = phonenumbers.parse(value, default_region)
    except NumberParseException as error:
        if error.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if default_region is None and re.fullmatch(r"[0-9][0-9 .\-]*", value):
                # Plivo's own format is the country code and number without a `+`.
                return normalise_destination("+" + value, None)
            if value.startswith("+"):
                raise InvalidDestination("unknown country code") from None
            raise InvalidDestination(
                "no country code: write it as +<country code><number> or pass --default-region"
            ) from None
        if error.error_type == NumberParseException.NOT_A_NUMBER:
            raise InvalidDestination("not a phone number") from None
        if error.error_type in (
            NumberParseException.TOO_SHORT_NSN,
            NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            raise InvalidDestination("too short to be a phone number") from None
        raise InvalidDestination("too long to be a phone number") from None
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    reason = phonenumbers.is_possible_number_with_reason(number)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if reason == ValidationResult.TOO_SHORT:
        raise InvalidDestination("too short for a number of its country")
    if reason == ValidationResult.TOO_LONG:
        raise InvalidDestination("too long for a number of its country")
    if reason == ValidationResult.INVALID_LENGTH:
        raise InvalidDestination(f"wrong length for a number of its country ({e164})")
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        raise InvalidDestination("unknown country code")
    raise InvalidDestination(f"not an assigned number range ({e164})")


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """Where the phone number is in each row, and what the other columns are called."""

    phone_index: int
    header: tuple[str, ...] | None

    @classmethod
    def detect(cls, first_row: Sequence[str], column: str | None, source: str) -> CsvLayout:
        """Decide from the first non-blank row whether it is a header and which column to dial."""
        cells = [cell.strip() for cell in first_row]
        if column is not None:
            wanted = _header_key(column)
            for index, cell in enumerate(cells):
                if _header_key(cell) == wanted:
                    return cls(index, tuple(cells))
            raise LoadError(
                f"{source}: no column {column!r} in the header ({', '.join(cells)}); "
                "give --column one of these names"
            )
        keys = [_header_key(cell) for cell in cells]
        for name in PHONE_HEADERS:
            if name in keys:
                return cls(keys.index(name), tuple(cells))
        if len(cells) == 1:
            looks_dialable = any(ch.isdigit() for ch in cells[0]) or keys[0].startswith("sip:")
            # A lone column is the phone column; its first row is data unless it reads as a title.
            return cls(0, None if looks_dialable else tuple(cells))
        raise LoadError(
            f"{source}: no phone column found in the header ({', '.join(cells)}); "
            "name it with --column HEADER"
        )


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One CSV record: the line it starts on and its cells."""

    line_number: int
    cells: list[str]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that will not be dialled, and why."""

    line_number: int
    raw_value: str
    reason: str


# A valid row as COPY takes it: line_number, raw_destination, destination, fields (JSON text).
ContactRecord = tuple[int, str, str, str]


def validate_rows(
    rows: Sequence[SourceRow],
    layout: CsvLayout,
    default_region: str | None,
    from_number: str | None,
) -> tuple[list[ContactRecord], list[Rejected]]:
    """Validate and normalise a chunk of rows (pure: runs in worker processes)."""
    valid: list[ContactRecord] = []
    rejected: list[Rejected] = []
    header = layout.header
    phone_index = layout.phone_index
    for row in rows:
        cells = row.cells
        raw = cells[phone_index] if phone_index < len(cells) else ""
        try:
            destination = normalise_destination(raw, default_region)
        except InvalidDestination as error:
            rejected.append(Rejected(row.line_number, raw, str(error)))
            continue
        if destination == from_number:
            rejected.append(Rejected(row.line_number, raw, "is the campaign's own from number"))
            continue
        fields: dict[str, str] = {}
        for index, cell in enumerate(cells):
            if index == phone_index:
                continue
            name = header[index] if header is not None and index < len(header) else None
            fields[name or f"column{index + 1}"] = cell
        valid.append((row.line_number, raw, destination, json.dumps(fields, ensure_ascii=False)))
    return valid, rejected


class CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read, for the progress bar."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # RawIOBase's stub takes a Buffer
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


class CsvSource:
    """A CSV file read as a stream of records, with the line each record starts on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.size_bytes = path.stat().st_size
            binary = path.open("rb")
        except FileNotFoundError:
            raise LoadError(f"{path}: no such file; check the path") from None
        except IsADirectoryError:
            raise LoadError(f"{path}: is a folder, not a CSV file") from None
        except PermissionError:
            raise LoadError(f"{path}: not readable (permission denied)") from None
        except OSError as error:
            raise LoadError(f"{path}: cannot be read ({error.strerror})") from None
        self._counter = CountingReader(binary)
        # utf-8-sig drops a byte order mark; newline="" lets csv handle CRLF and quoted newlines.
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._counter, buffer_size=1 << 16), encoding="utf-8-sig", newline=""
        )
        self._binary = binary

    @property
    def bytes_read(self) -> int:
        return self._counter.bytes_read

    def close(self) -> None:
        self._text.close()
        self._binary.close()

    def records(self) -> Iterator[SourceRow]:
        """Every non-blank record, with its first line number."""
        reader = csv.reader(self._text)
        previous_line = 0
        try:
            for cells in reader:
                line_number = previous_line + 1
                previous_line = reader.line_num
                if not cells or all(not cell.strip() for cell in cells):
                    continue
                yield SourceRow(line_number, cells)
        except UnicodeDecodeError:
            raise LoadError(
                f"{self.path}: line {previous_line + 1} is not UTF-8 text; save the file as "
                "UTF-8 (CSV UTF-8) and load it again"
            ) from None
        except csv.Error as error:
            raise LoadError(f"{self.path}: line {reader.line_num}: {error}") from None


@dataclass(slots=True)
class LoadSummary:
    """What a load did."""

    campaign: Campaign
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "campaign": self.campaign.name,
            "campaign_id": self.campaign.id,
            "status": self.campaign.status.value,
            "rows_read": self.rows_read,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        }


class LoadObserver(Protocol):
    """Told about each rejected row and about progress through the file."""

    def rejected(self, row: Rejected) -> None: ...

    def progressed(self, bytes_read: int) -> None: ...


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to read the file."""

    column: str | None = None
    default_region: str | None = None
    # Worker processes for validation; None: as many as there are cores, for large files.
    jobs: int | None = None
    # Reject the whole file if any row is rejected.
    strict: bool = False


def _executor(source: CsvSource, jobs: int | None) -> concurrent.futures.Executor:
    if jobs is None:
        jobs = (multiprocessing.cpu_count() or 1) if source.size_bytes >= PARALLEL_MIN_BYTES else 1
    if jobs <= 1:
        # A thread still lets the event loop stream the previous chunk to Postgres meanwhile.
        return concurrent.futures.ThreadPoolExecutor(max_workers=1)
    # spawn: the loader process holds database connections and threads, which fork would copy.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn")
    )


def _chunks(records: Iterator[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    chunk: list[SourceRow] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _open_target(connection: queries.Connection, target: CampaignSpec | str) -> Campaign:
    if isinstance(target, CampaignSpec):
        try:
            return await queries.create_campaign(connection, target)
        except asyncpg.UniqueViolationError:
            raise LoadError(
                f"campaign {target.name!r} exists already; add to it with --campaign "
                f"{target.name!r}, or choose another --name"
            ) from None
    campaign = await queries.campaign_by_name(connection, target, for_update=True)
    if campaign is None:
        raise LoadError(
            f"no campaign named {target!r}; create it with --name {target!r} --from NUMBER "
            "--answer-url URL (see `campaign list`)"
        )
    if campaign.status == CampaignStatus.CANCELLED:
        raise LoadError(f"campaign {target!r} is cancelled; load the file into a new campaign")
    return campaign


async def load_csv(
    pool: asyncpg.Pool,
    source: CsvSource,
    target: CampaignSpec | str,
    options: LoadOptions,
    observer: LoadObserver,
) -> LoadSummary:
    """Create or open the campaign and load the file's contacts, in one transaction."""
    records = source.records()
    first = next(records, None)
    if first is None:
        raise LoadError(f"{source.path}: the file has no rows; nothing was loaded")
    layout = CsvLayout.detect(first.cells, options.column, str(source.path))

    def rows() -> Iterator[SourceRow]:
        if layout.header is None:
            yield first
        yield from records

    async with pool.acquire() as connection, connection.transaction():
        campaign = await _open_target(connection, target)
        summary = LoadSummary(campaign)
        await queries.create_load_staging(connection)
        loop = asyncio.get_running_loop()
        with _executor(source, options.jobs) as executor:
            in_flight: deque[asyncio.Future[tuple[list[ContactRecord], list[Rejected]]]] = deque()
            ahead = max(2, getattr(executor, "_max_workers", 1) * 2)
            chunks = _chunks(rows(), CHUNK_ROWS)

            def submit_next() -> bool:
                chunk = next(chunks, None)
                if chunk is None:
                    return False
                summary.rows_read += len(chunk)
                in_flight.append(
                    loop.run_in_executor(
                        executor,
                        validate_rows,
                        chunk,
                        layout,
                        options.default_region,
                        campaign.from_number,
                    )
                )
                return True

            try:
                while len(in_flight) < ahead and submit_next():
                    pass
                while in_flight:
                    valid, rejected = await in_flight.popleft()
                    submit_next()
                    for row in rejected:
                        observer.rejected(row)
                    summary.rejected += len(rejected)
                    if rejected and options.strict:
                        raise LoadError(
                            f"{source.path}: line {rejected[0].line_number}: "
                            f"{rejected[0].reason}; nothing was loaded (--strict)"
                        )
                    if valid:
                        await connection.copy_records_to_table("load_staging", records=valid)
                        inserted = await queries.insert_staged_contacts(connection, campaign.id)
                        summary.loaded += inserted
                        summary.duplicates += len(valid) - inserted
                    observer.progressed(source.bytes_read)
            finally:
                for future in in_flight:
                    future.cancel()
        if summary.loaded > 0:
            if campaign.status == CampaignStatus.COMPLETED:
                # New contacts reopen a campaign that had finished.
                await queries.reopen_campaign(connection, campaign.id)
            await queries.notify_work(connection, campaign.id)
        if summary.loaded + summary.duplicates == 0:
            raise LoadError(
                f"{source.path}: none of its {summary.rows_read} rows is a number that can be "
                "dialled; nothing was loaded (the rejected rows are listed above)"
            )
    return summary


def open_rejects_file(path: Path) -> tuple[IO[str], Callable[[Rejected], None]]:
    """A CSV file of rejected rows (line, value, reason) and a function that appends one."""
    try:
        handle = path.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise LoadError(f"{path}: cannot write the rejects file ({error.strerror})") from None
    writer = csv.writer(handle)
    writer.writerow(["line", "value", "reason"])

    def write(row: Rejected) -> None:
        writer.writerow([row.line_number, row.raw_value, row.reason])

    return handle, write
