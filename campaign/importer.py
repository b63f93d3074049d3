"""CSV → validated, normalised contacts → COPY into Postgres, all-or-nothing.

The parse step (campaign/destinations.py) is pure and runs in worker processes for large files,
so that validation overlaps with reading the file and with the COPY.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import csv
import dataclasses
import io
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import asyncpg

from campaign import queries
from campaign.callerids import CallerIdMode
from campaign.destinations import (
    ContactRecord,
    CsvLayout,
    LoadError,
    Rejected,
    SourceRow,
    ZoneRule,
    time_zone_column,
    validate_rows,
)
from campaign.formulas import neutralise, neutralise_phone
from campaign.models import Campaign, CampaignSpec, CampaignStatus
from campaign.timezones import ZoneNames

# Rows per chunk a validating process reads: small enough that the loader and its processes
# stay under 150 MB together (1M rows: 131 MB with 2,500, 153 MB with 5,000).
CHUNK_ROWS = 2500
# Validated rows wait in the staging table (in the database, not here) until this many are
# there: each move stores its rows grouped by their sets of time zones, so that the claim reads
# few heap pages for the contacts of an open set. Bigger moves group better (docs/benchmarks.md:
# the claim of the open 1 % of 1M contacts ran at 0.92 of an all-open campaign's with 50,000,
# 0.84 with 5,000) but stall the validating processes while they run (a 1M-row load: 21,700
# rows/s with 50,000, about 26,000 with 5,000).
STAGED_ROWS_PER_INSERT = 5_000
# Files at least this big are validated in worker processes: below it, starting them costs more
# than it saves.
PARALLEL_MIN_BYTES = 2_000_000
# A load of at least this many contacts refreshes the table's statistics afterwards.
ANALYZE_AFTER_ROWS = 10_000


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
                if not "".join(cells).strip():  # no cells, or only blank ones
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
    # Of the loaded contacts, those on a suppression list the campaign honours (never dialled).
    suppressed: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "campaign": self.campaign.name,
            "campaign_id": self.campaign.id,
            "status": self.campaign.status.value,
            "rows_read": self.rows_read,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "suppressed": self.suppressed,
        }


class LoadObserver(Protocol):
    """Told about each rejected row and about progress through the file."""

    def rejected(self, row: Rejected) -> None: ...

    def progressed(self, bytes_read: int) -> None: ...


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to read the file."""

    column: str | None = None
    # The header of the time zone column (default: found by name, if there is one).
    timezone_column: str | None = None
    default_region: str | None = None
    # Worker processes for validation; None: as many as there are cores, for large files.
    jobs: int | None = None
    # Reject the whole file if any row is rejected.
    strict: bool = False


def validation_executor(size_bytes: int, jobs: int | None) -> concurrent.futures.Executor:
    """Where chunks of a file of `size_bytes` are validated: `jobs` processes (None: one per
    core for large files), or one thread for small ones."""
    if jobs is None:
        jobs = (multiprocessing.cpu_count() or 1) if size_bytes >= PARALLEL_MIN_BYTES else 1
    if jobs <= 1:
        # A thread still lets the event loop stream the previous chunk to Postgres meanwhile.
        return concurrent.futures.ThreadPoolExecutor(max_workers=1)
    # spawn: the loader process holds database connections and threads, which fork would copy.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn")
    )


def chunks(records: Iterator[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    """`records` in lists of `size` (the last one shorter)."""
    chunk: list[SourceRow] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _known_zone(names: ZoneNames, zone: str | None) -> str | None:
    """--default-timezone as the database spells it; LoadError if it knows no such zone."""
    if zone is None:
        return None
    known = names.canonical(zone)
    if known is None:
        raise LoadError(
            f"--default-timezone: {zone!r} is not a time zone the database knows "
            f"(IANA names like America/New_York){names.suggestion(zone)}"
        )
    return known


def _never_open_reason(campaign: Campaign, zones: tuple[str, ...]) -> str:
    """Why a contact whose zones' window never opens is rejected, and the fix."""
    schedule = campaign.schedule
    when = " before the campaign ends" if schedule.end_at is not None else ""
    if len(zones) == 1:
        return (
            f"its calling window never opens{when} (calling hours {schedule.hours_text()} in "
            f"{zones[0]}, within 15 days of the start)"
        )
    return (
        f"its number spans {len(zones)} time zones ({zones[0]} … {zones[-1]}) that are never "
        f"all within the calling hours ({schedule.hours_text()}) at once{when}; give the row "
        "its own zone in a timezone column"
    )


def _placeholder_columns(
    campaign: Campaign, layout: CsvLayout, source: str
) -> tuple[tuple[int, str], ...]:
    """The columns the campaign's message needs a value in (index, name), by its placeholders;
    LoadError when one names no column of the file."""
    needed = campaign.content.columns_needed()
    if not needed:
        return ()
    header = layout.header or ()
    missing = [name for name in needed if name not in header]
    if missing:
        columns = ", ".join(
            name for index, name in enumerate(header) if index != layout.phone_index
        )
        raise LoadError(
            f"{source}: the campaign's message says {{{missing[0]}}}, but the file has no such "
            f"column; its columns are: {columns or 'none besides the phone number'}; nothing "
            "was loaded"
        )
    return tuple(
        (header.index(name), name) for name, has_default in needed.items() if not has_default
    )


async def _open_target(connection: queries.Connection, target: CampaignSpec | str) -> Campaign:
    if isinstance(target, CampaignSpec):
        try:
            return await queries.create_campaign(connection, target)
        except asyncpg.UniqueViolationError:
            raise LoadError(
                f"campaign {target.name!r} exists already; add to it with --campaign "
                f"{target.name!r}, or choose another --name"
            ) from None
    # Held until the load commits: the campaign cannot complete meanwhile (a completion would miss
    # these contacts), but pause, resume and cancel take effect at once.
    campaign = await queries.campaign_for_load(connection, target)
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
    zone_column = time_zone_column(layout.header, options.timezone_column, str(source.path))

    def rows() -> Iterator[SourceRow]:
        if layout.header is None:
            yield first
        yield from records

    async with pool.acquire() as connection, connection.transaction():
        # The database reads the zones when it claims: a contact's zones must be its names.
        names = ZoneNames(await queries.time_zone_names(connection))
        if isinstance(target, CampaignSpec):
            target = dataclasses.replace(
                target, default_time_zone=_known_zone(names, target.default_time_zone)
            )
        campaign = await _open_target(connection, target)
        zone_rule = ZoneRule(
            names,
            zone_column,
            _known_zone(names, campaign.default_time_zone),
            required=campaign.schedule.has_local_rules,
        )
        summary = LoadSummary(campaign)
        required_columns = _placeholder_columns(campaign, layout, str(source.path))
        # None of them may be called (Plivo refuses a `from` among the destinations).
        caller_ids = frozenset(
            number for number, _calls in await queries.caller_ids(connection, campaign.id)
        )
        await queries.create_load_staging(connection)
        loop = asyncio.get_running_loop()
        with (
            validation_executor(source.size_bytes, options.jobs) as executor,
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as file_reader,
        ):
            in_flight: deque[asyncio.Future[tuple[list[ContactRecord], list[Rejected]]]] = deque()
            ahead = max(2, getattr(executor, "_max_workers", 1) * 2)
            staged = 0

            # Sets of zones whose window was found to open (or not) for this campaign.
            opens: dict[tuple[str, ...], bool] = {}

            async def reject_never_open() -> int:
                """Take out of the load the staged rows whose zones' window never opens: all
                within the calling hours at once never, within 15 days of the start or before
                the end. How many."""
                if not campaign.schedule.has_local_rules:
                    return 0
                taken = 0
                for zones in await queries.staged_time_zone_sets(connection):
                    if zones not in opens:
                        opening = await queries.first_window_opening(connection, campaign.id, zones)
                        opens[zones] = opening is not None
                    if opens[zones]:
                        continue
                    reason = _never_open_reason(campaign, zones)
                    for line_number, raw in await queries.reject_staged_time_zones(
                        connection, zones
                    ):
                        if options.strict:
                            raise LoadError(
                                f"{source.path}: line {line_number}: {reason}; nothing was "
                                "loaded (--strict)"
                            )
                        observer.rejected(Rejected(line_number, raw, reason))
                        taken += 1
                summary.rejected += taken
                return taken

            async def move_staged() -> None:
                nonlocal staged
                if not staged:
                    return
                staged -= await reject_never_open()
                inserted, suppressed = await queries.insert_staged_contacts(
                    connection,
                    campaign.id,
                    campaign.suppression_lists,
                    local_presence=campaign.caller_id_mode == CallerIdMode.LOCAL,
                )
                summary.loaded += inserted
                summary.suppressed += suppressed
                summary.duplicates += staged - inserted
                staged = 0

            file_chunks = chunks(rows(), CHUNK_ROWS)
            # The next chunk is read from the file in a thread while this coroutine waits for
            # PostgreSQL (a COPY, a move): the database's one backend is the load's slowest
            # part, so it should not wait for the CSV as well (docs/benchmarks.md).
            reading: asyncio.Future[list[SourceRow] | None] = loop.run_in_executor(
                file_reader, next, file_chunks, None
            )

            async def submit_next() -> bool:
                nonlocal reading
                chunk = await reading
                if chunk is None:
                    return False
                reading = loop.run_in_executor(file_reader, next, file_chunks, None)
                summary.rows_read += len(chunk)
                in_flight.append(
                    loop.run_in_executor(
                        executor,
                        validate_rows,
                        chunk,
                        layout,
                        options.default_region,
                        campaign.from_number,
                        zone_rule,
                        caller_ids,
                        required_columns,
                    )
                )
                return True

            try:
                while len(in_flight) < ahead and await submit_next():
                    pass
                while in_flight:
                    try:
                        valid, rejected = await in_flight.popleft()
                    except LoadError as error:
                        raise LoadError(f"{source.path}: {error}") from None
                    await submit_next()
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
                        staged += len(valid)
                    if staged >= STAGED_ROWS_PER_INSERT:
                        await move_staged()
                    observer.progressed(source.bytes_read)
                await move_staged()
            finally:
                for future in in_flight:
                    future.cancel()
                # The reading thread must be done with the file before it closes.
                with contextlib.suppress(Exception):
                    await reading
        # The campaign's status as the load ends, its row locked until the commit (waiting for a
        # status change in progress): a cancel that came meanwhile is seen, and one that comes
        # after waits for the commit and then cancels these contacts too.
        status = await queries.lock_campaign_status(connection, campaign.id)
        if status == CampaignStatus.CANCELLED:
            raise LoadError(
                f"campaign {campaign.name!r} was cancelled while {source.path} was loading; "
                "nothing was loaded"
            )
        if summary.loaded > 0:
            if status == CampaignStatus.COMPLETED:
                # New contacts reopen a campaign that had finished.
                await queries.reopen_campaign(connection, campaign.id)
            await queries.notify_work(connection, campaign.id)
        if summary.loaded + summary.duplicates == 0:
            raise LoadError(
                f"{source.path}: none of its {summary.rows_read} rows is a number that can be "
                "dialled; nothing was loaded (the rejected rows are listed above)"
            )
    if summary.loaded >= ANALYZE_AFTER_ROWS:
        # Fresh statistics before workers plan their claims: a plan made for a small table
        # stays cached in each worker connection and can cost the database many times over.
        await pool.execute("ANALYZE contacts")
    return summary


def open_rejects_file(
    path: Path, *, escape_formulas: bool = True
) -> tuple[IO[str], Callable[[Rejected], None]]:
    """A CSV file of rejected rows (line, value, reason) and a function that appends one.

    With `escape_formulas`, a value a spreadsheet would run as a formula (`=HYPERLINK(…)` in
    the uploaded file) is written as text (campaign/formulas.py); a plain number stays as it is.
    """
    try:
        handle = path.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise LoadError(f"{path}: cannot write the rejects file ({error.strerror})") from None
    writer = csv.writer(handle)
    writer.writerow(["line", "value", "reason"])

    def write(row: Rejected) -> None:
        if escape_formulas:
            writer.writerow(
                [row.line_number, neutralise_phone(row.raw_value), neutralise(row.reason)]
            )
        else:
            writer.writerow([row.line_number, row.raw_value, row.reason])

    return handle, write
