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
import logging
import multiprocessing
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import asyncpg

from campaign import db, queries
from campaign.callerids import CallerIdMode
from campaign.destinations import (
    CopyRecord,
    CsvLayout,
    LoadError,
    Rejected,
    SourceRow,
    ZoneRule,
    copy_line_number,
    copy_raw_value,
    copy_text,
    time_zone_column,
    validate_rows_for_copy,
)
from campaign.formulas import neutralise, neutralise_phone
from campaign.models import Campaign, CampaignSpec, CampaignStatus
from campaign.suppression_filter import SuppressionFilters, read_filters, save_filters
from campaign.timezones import ZoneNames

logger = logging.getLogger(__name__)

# Rows per chunk a validating process (or thread) reads: small, so that little waits in memory.
CHUNK_ROWS = 1250
# Validated rows are COPYed into `contacts` this many at a time (at least), grouped by their sets
# of time zones and in line order within each, so that the claim, which walks one open set at a
# time, reads few heap pages (docs/benchmarks.md: the claim of the open 1 % of 1M contacts ran at
# 0.92 of an all-open campaign's with groups of 50,000 rows, 0.84 with 5,000). While one batch
# is stored, the next one is gathered, and with validating processes one more may wait.
ROWS_PER_COPY = 10_000
# With validation in a thread of the loader's process (small files, the API: its process serves
# callbacks too), fewer at a time, and none waits: that process's memory stays a few MB.
ROWS_PER_COPY_IN_PROCESS = 2500
# Files at least this big are validated in worker processes: below it, starting them costs more
# than it saves.
PARALLEL_MIN_BYTES = 2_000_000
# A load of at least this many contacts refreshes the table's statistics afterwards.
ANALYZE_AFTER_ROWS = 10_000
# How long a load waits for a second connection of its pool, for its suppression look-ups, when
# the pool says one is free (none: it looks its numbers up on its own connection).
SPARE_CONNECTION_WAIT_S = 1.0
_SPARE_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *db.DATABASE_ERRORS)


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
                yield line_number, cells
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
    """Where chunks of a file of `size_bytes` are validated: `jobs` processes, or one thread for
    `jobs` 1. By default, for large files, one process per core but one: the load's
    PostgreSQL backend needs a core of its own on a machine that runs both (on two cores, one
    validating process loaded 1M rows as fast as two, in 33 MiB less: docs/benchmarks.md);
    a thread for small files."""
    if jobs is None:
        if size_bytes < PARALLEL_MIN_BYTES:
            jobs = 1
        else:
            return _process_pool(max(1, (multiprocessing.cpu_count() or 1) - 1))
    if jobs <= 1:
        # A thread still lets the event loop stream the previous chunk to Postgres meanwhile.
        return concurrent.futures.ThreadPoolExecutor(max_workers=1)
    return _process_pool(jobs)


def _process_pool(processes: int) -> concurrent.futures.ProcessPoolExecutor:
    # spawn: the loader process holds database connections and threads, which fork would copy.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("spawn")
    )


def chunks_ahead(executor: concurrent.futures.Executor) -> int:
    """How many chunks a load (or `suppress add`) keeps submitted to its validating `executor`:
    four per process, so that they work on while the loader waits for PostgreSQL; one to a
    thread, which shares the loader's process (and the API's memory:
    tests/integration/test_api_upload.py) and validates the next chunk while the loader stores
    the one before."""
    if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
        processes: int = executor._max_workers  # type: ignore[attr-defined]  # its size
        return 4 * processes
    return 1


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


def _zones_of(record: CopyRecord) -> list[str]:
    return record[1]


class _CopyData:
    """The rows to COPY for `records` (CONTACT_COLUMNS in COPY's text format), made piece by
    piece as the COPY sends them (a batch's whole text would be a few MiB more at the load's
    peak); how many rows, and how many suppressed, once sent."""

    PIECE_ROWS = 500

    def __init__(
        self,
        campaign_id: int,
        records: list[CopyRecord],
        suppressions_version: int,
        suppressed: dict[str, str],
        found: queries.NewContactsLookUp,
    ) -> None:
        self._campaign_id = campaign_id
        self._records = records
        self._suppressions_version = suppressions_version
        self._suppressed = suppressed
        self._found = found
        self.rows = 0
        self.suppressed = 0

    async def pieces(self) -> AsyncIterator[bytes]:
        suppressed = self._suppressed
        groups = self._found.caller_id_groups
        head = f"{self._campaign_id}\t"
        version = self._suppressions_version
        pending = f"\tpending\t\\N\t{version}\t\\N\n"
        records = self._records
        for start in range(0, len(records), self.PIECE_ROWS):
            lines: list[str] = []
            for destination, _zones, columns in records[start : start + self.PIECE_ROWS]:
                listed = suppressed.get(destination) if suppressed else None
                group = None if groups is None else groups[destination]
                if listed is None and group is None:
                    lines.append(head + columns + pending)
                    continue
                if listed is None:
                    status, error = "pending", "\\N"
                else:
                    status, error = "suppressed", copy_text(f"suppressed: on list {listed}")
                    self.suppressed += 1
                group_text = "\\N" if group is None else copy_text(group)
                lines.append(f"{head}{columns}\t{status}\t{error}\t{version}\t{group_text}\n")
            self.rows += len(lines)
            yield "".join(lines).encode()


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


Validated = tuple[list[CopyRecord], list[Rejected]]


class NumbersSeen:
    """The numbers a load has stored in a campaign it created, as a Bloom filter: a number it
    has not seen is never taken for one it has (no false negatives), so only the others (its
    duplicates, and 1 to 5 % more) are looked up in `contacts` (a look-up of every number cost
    PostgreSQL 2.6 µs a row). Nobody else can add contacts to a campaign its transaction has not
    committed yet."""

    def __init__(self, expected: int) -> None:
        # 8 to 16 bits per number expected (two hashes: 1.4 to 5 % false positives when full,
        # half that on average over the load), at most 16 MiB.
        size = 1 << max(20, min(27, (expected * 8).bit_length()))
        self._bits = bytearray(size >> 3)
        self._mask = size - 1

    def maybe_seen(self, numbers: list[str]) -> list[str]:
        """Of `numbers` (distinct), those that may have been seen before; all are seen after."""
        bits = self._bits
        mask = self._mask
        maybe = []
        for number in numbers:
            key = hash(number)
            first = key & mask
            second = (key >> 32) & mask
            first_byte, first_bit = first >> 3, 1 << (first & 7)
            second_byte, second_bit = second >> 3, 1 << (second & 7)
            if bits[first_byte] & first_bit and bits[second_byte] & second_bit:
                maybe.append(number)
            bits[first_byte] |= first_bit
            bits[second_byte] |= second_bit
        return maybe


# A batch of validated rows handed to the task that stores them, with those of its destinations a
# suppression list may hold (by the lists' filters), and their look-up when one was started (on
# the look-ups' connection).
_Batch = tuple[list[CopyRecord], list[str], "asyncio.Future[dict[str, str]] | None"]


class _SuppressionLookUps:
    """Looks each batch's numbers up in the campaign's suppression lists on a connection of its
    own, as soon as the batch is handed over, while the load's connection stores the batch
    before: the look-up (with 10M numbers listed, 1.3 s of a 1M-row load) leaves the path of
    the COPYs, the load's slowest part. They run one at a time, in the order asked."""

    def __init__(self, connection: queries.Connection, lists: Sequence[str]) -> None:
        self._connection = connection
        self._lists = lists
        self._turn = asyncio.Lock()
        # Look-ups started and not yet taken by the batch they are for.
        self._running: set[asyncio.Future[dict[str, str]]] = set()

    def start(self, destinations: list[str]) -> asyncio.Future[dict[str, str]]:
        future = asyncio.ensure_future(self._look_up(destinations))
        self._running.add(future)
        return future

    async def take(self, future: asyncio.Future[dict[str, str]]) -> dict[str, str]:
        """The answer of a look-up started by `start`."""
        self._running.discard(future)
        return await future

    async def stop(self) -> None:
        """Cancel the look-ups not taken, and wait for them (the connection then goes back to
        its pool idle)."""
        running, self._running = self._running, set()
        for future in running:
            future.cancel()
        for future in running:
            with contextlib.suppress(BaseException):
                await future

    async def _look_up(self, destinations: list[str]) -> dict[str, str]:
        async with self._turn:
            return await queries.look_up_suppressions(self._connection, destinations, self._lists)


@contextlib.asynccontextmanager
async def _spare_connection(pool: asyncpg.Pool) -> AsyncIterator[queries.Connection | None]:
    """A second connection of `pool` for the load's suppression look-ups when two are free now
    (one stays free for whatever else shares the pool: the API's requests, the dashboard);
    else None (the load looks its numbers up on its own connection, as it did before)."""
    if pool.get_idle_size() + pool.get_max_size() - pool.get_size() < 2:
        yield None
        return
    try:
        # (A timeout given to acquire() would be kept for the release as well.)
        async with asyncio.timeout(SPARE_CONNECTION_WAIT_S):
            connection = await pool.acquire()
    except _SPARE_CONNECTION_ERRORS:  # the load goes on without it
        yield None
        return
    try:
        yield connection
    finally:
        # Its look-ups are done or cancelled and awaited; how it goes back cannot change the
        # load's outcome (the pool closes a connection that does not reset).
        with contextlib.suppress(Exception):
            await pool.release(connection)


class _ContactWriter:
    """Stores a load's validated rows in its campaign's contacts, at least ROWS_PER_COPY at a
    time: those whose window never opens rejected, the first row of each number kept (the others
    counted as duplicates, as are numbers the campaign has already), a number on one of its
    suppression lists stored `suppressed`."""

    def __init__(
        self,
        connection: queries.Connection,
        campaign: Campaign,
        source: CsvSource,
        strict: bool,
        observer: LoadObserver,
        summary: LoadSummary,
        seen: NumbersSeen | None = None,
        *,
        filters: SuppressionFilters,
        in_process: bool = False,
        look_ups: _SuppressionLookUps | None = None,
    ) -> None:
        self._connection = connection
        # The campaign's lists' filters: only the numbers they may hold are looked up.
        self._filters = filters
        # Suppression look-ups on a connection of their own (None: on this one, in turn).
        self._look_ups = look_ups
        # For a campaign this load creates: the numbers stored so far (else: look every one up).
        self._seen = seen
        self._campaign = campaign
        self._source = source
        self._strict = strict
        self._observer = observer
        self._summary = summary
        self._local_presence = campaign.caller_id_mode == CallerIdMode.LOCAL
        # Sets of zones whose window was found to open (or not) for this campaign.
        self._opens: dict[tuple[str, ...], bool] = {}
        self._batch: list[CopyRecord] = []
        # The task that stores batches, one after the other (the connection does one thing at a
        # time), and the batch handed to it, with its suppression look-up when one was started.
        self._storing: asyncio.Future[None] | None = None
        self._batches: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=1)
        # Whether the load's staging table exists (made when a batch first needs it).
        self._staging = False
        self._rows_per_copy = ROWS_PER_COPY_IN_PROCESS if in_process else ROWS_PER_COPY
        # Whether a batch may wait for the task (validating processes keep working meanwhile).
        self._may_wait = not in_process

    async def add(self, records: list[CopyRecord]) -> None:
        """Store `records` (the next in line order), or keep them for the next COPY."""
        self._batch.extend(records)
        if len(self._batch) >= self._rows_per_copy:
            await self._hand_over()

    async def finish(self) -> None:
        """Store the rows kept, and wait until every COPY is done."""
        await self._hand_over()
        await self._hand(None)
        if self._storing is not None:
            await self._storing

    async def abandon(self) -> None:
        """Stop storing (the load failed), and looking numbers up."""
        if self._storing is not None:
            self._storing.cancel()
            with contextlib.suppress(BaseException):
                await self._storing
        if self._look_ups is not None:
            await self._look_ups.stop()

    async def _hand_over(self) -> None:
        """Give the rows kept to the task that stores them: while it stores a batch, this
        coroutine goes back to the file and the validating processes for the next (the
        database, the load's slowest part, is not kept waiting for them, nor they for it)."""
        records, self._batch = self._batch, []
        if records:
            maybe = self._filters.maybe_listed([record[0] for record in records])
            look_up = None
            if maybe and self._look_ups is not None:
                look_up = self._look_ups.start(maybe)
            await self._hand((records, maybe, look_up))

    async def _hand(self, batch: _Batch | None) -> None:
        """Give `records` (None: the end) to the storing task: to wait for it while it stores
        the batch before, or (in process) once it is done with it; raise what stopped it."""
        if self._storing is None:
            self._storing = asyncio.ensure_future(self._store_batches())
        ready = asyncio.ensure_future(
            self._batches.put(batch) if self._may_wait else self._batches.join()
        )
        await asyncio.wait({ready, self._storing}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
        if self._storing.done():
            self._storing.result()  # raises what it failed with
            return
        if not self._may_wait:
            self._batches.put_nowait(batch)

    async def _store_batches(self) -> None:
        """Store the batches handed over, one after the other, until the end."""
        while (batch := await self._batches.get()) is not None:
            await self._store(*batch)
            self._batches.task_done()

    async def _store(
        self,
        records: list[CopyRecord],
        maybe_listed: list[str],
        look_up: asyncio.Future[dict[str, str]] | None,
    ) -> None:
        """COPY `records` into the campaign's contacts (`maybe_listed`: those of their
        destinations a suppression list may hold; `look_up`: their look-up, when it was started
        on the look-ups' connection)."""
        if self._campaign.schedule.has_local_rules:
            records = await self._without_never_open(records)
        seen: set[str] = set()
        kept: list[CopyRecord] = []
        for record in records:
            if record[0] not in seen:
                seen.add(record[0])
                kept.append(record)
        # Stable: in line order within each set of zones.
        kept.sort(key=_zones_of)
        if look_up is not None:
            assert self._look_ups is not None
            listed = await self._look_ups.take(look_up)
        elif not kept:
            return  # every row's window never opens: nothing to store, nor to count
        elif maybe_listed:
            listed = await queries.look_up_suppressions(
                self._connection, maybe_listed, self._campaign.suppression_lists
            )
        else:
            listed = {}
        stored, suppressed, present = await self._copy(kept, listed)
        self._summary.loaded += stored
        self._summary.suppressed += suppressed
        self._summary.duplicates += len(records) - len(kept) + present

    async def _copy(
        self, records: list[CopyRecord], listed: dict[str, str]
    ) -> tuple[int, int, int]:
        """Store those of `records` (each number once) the campaign has not, those on its lists
        (`listed`, with the list) `suppressed`; how many were stored, how many of them
        suppressed, and how many the campaign had already. Each notes the version the lists'
        filters reached (the claim looks up whatever was added after: a look-up may see a
        later version, but the numbers the filters ruled out were not looked up).

        In a campaign this load creates, only the numbers its filter says it may have stored
        already are looked up (its duplicates, 1 to 5 % more), and the rest is COPYed straight
        into `contacts`, in order. Into an existing campaign, every number goes through the
        staging table and the unique key (insert_staged_contacts), which also skips a number
        another session inserts meanwhile."""
        if not records:
            return 0, 0, 0
        destinations = [record[0] for record in records]
        found = await queries.look_up_new_contacts(
            self._connection,
            self._campaign.id,
            destinations,
            local_presence=self._local_presence,
            maybe_present=() if self._seen is None else self._seen.maybe_seen(destinations),
        )
        if self._seen is None:
            # Every number through the unique key, which also waits for another session's.
            if not self._staging:
                await queries.create_load_staging(self._connection)
                self._staging = True
            data = _CopyData(self._campaign.id, records, self._filters.version, listed, found)
            await queries.copy_contacts(self._connection, data.pieces(), staged=True)
            stored, suppressed = await queries.insert_staged_contacts(self._connection)
        else:
            new = records
            if found.present:
                new = [record for record in records if record[0] not in found.present]
            data = _CopyData(self._campaign.id, new, self._filters.version, listed, found)
            await queries.copy_contacts(self._connection, data.pieces())
            stored, suppressed = data.rows, data.suppressed
        return stored, suppressed, len(records) - stored

    async def _without_never_open(self, records: list[CopyRecord]) -> list[CopyRecord]:
        """`records` less those whose zones' window never opens (rejected)."""
        kept = []
        opens = self._opens
        for record in records:
            zones = tuple(record[1])
            if opens.get(zones) or await self._opening(zones):
                kept.append(record)
                continue
            reason = _never_open_reason(self._campaign, zones)
            if self._strict:
                raise LoadError(
                    f"{self._source.path}: line {copy_line_number(record)}: {reason}; nothing "
                    "was loaded (--strict)"
                )
            self._observer.rejected(
                Rejected(copy_line_number(record), copy_raw_value(record), reason)
            )
            self._summary.rejected += 1
        return kept

    async def _opening(self, zones: tuple[str, ...]) -> bool:
        """Whether the window of these zones ever opens for the campaign: all within the calling
        hours at once, within 15 days of the start and before the end."""
        if zones not in self._opens:
            first = await queries.first_window_opening(self._connection, self._campaign.id, zones)
            self._opens[zones] = first is not None
        return self._opens[zones]


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
    layout = CsvLayout.detect(first[1], options.column, str(source.path))
    zone_column = time_zone_column(layout.header, options.timezone_column, str(source.path))

    def rows() -> Iterator[SourceRow]:
        if layout.header is None:
            yield first
        yield from records

    async with pool.acquire() as connection, connection.transaction():
        # The database reads the zones when it claims: a contact's zones must be its names.
        names = ZoneNames(await queries.time_zone_names(connection))
        if isinstance(target, CampaignSpec):
            # (A campaign created here is seen by no other session until this load commits.)
            target = dataclasses.replace(
                target, default_time_zone=_known_zone(names, target.default_time_zone)
            )
        else:
            await queries.hold_campaign_for_load(connection, target)
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
        loop = asyncio.get_running_loop()
        # A campaign created by this load has only the contacts it stores.
        # (Rows of a name, a number and a note are 40 to 60 bytes.)
        seen = NumbersSeen(source.size_bytes // 40) if isinstance(target, CampaignSpec) else None
        executor = validation_executor(source.size_bytes, options.jobs)
        async with contextlib.AsyncExitStack() as storing:
            storing.enter_context(executor)
            file_reader = storing.enter_context(concurrent.futures.ThreadPoolExecutor(1))
            # Given back as the rows are stored, before the commit.
            spare = await storing.enter_async_context(_spare_connection(pool))
            filters = await read_filters(connection, campaign.suppression_lists)
            if spare is not None:
                # (Without a spare connection, not in the load's transaction: the row would
                # stay locked until it commits.) A filter not saved is built again next time.
                try:
                    await save_filters(spare, filters)
                except db.DATABASE_ERRORS as error:
                    logger.warning("a suppression list's filter was not saved: %s", error)
            writer = _ContactWriter(
                connection,
                campaign,
                source,
                options.strict,
                observer,
                summary,
                seen,
                filters=filters,
                in_process=not isinstance(executor, concurrent.futures.ProcessPoolExecutor),
                look_ups=(
                    None
                    if spare is None
                    else _SuppressionLookUps(spare, campaign.suppression_lists)
                ),
            )
            in_flight: deque[asyncio.Future[Validated]] = deque()
            ahead = chunks_ahead(executor)

            file_chunks = chunks(rows(), CHUNK_ROWS)
            # The next chunk is read from the file in a thread while this coroutine waits for
            # PostgreSQL (a look-up, a COPY): the database's one backend is the load's slowest
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
                        validate_rows_for_copy,
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
                    await writer.add(valid)
                    observer.progressed(source.bytes_read)
                await writer.finish()
            finally:
                await writer.abandon()
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
