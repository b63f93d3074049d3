"""Suppression (do-not-call) lists: numbers and CSV files → one list, all or nothing.

A value is normalised exactly as `campaign load` normalises a destination
(`destinations.normalise_destination`, SIP URIs kept), so a number on a list matches the
contacts it must keep from being dialled; a CSV file is read as `load` reads one (`CsvSource`,
`CsvLayout.detect`, `--column`). Invariants:

- `add` writes nothing unless every value is a number: the valid ones stream into a staging
  table inside one transaction, which a bad value rolls back; memory holds one chunk of rows
  (large files are checked in worker processes, a few chunks ahead).
- A number already on the list keeps its reason and `created_at`: the first opt-out is the
  record (take it off and add it again to change them).
- `remove` removes nothing unless every value is a number; one statement.

The claim (schema.sql §3) reads the lists; nothing here needs to wake a worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import asyncpg

from campaign import db, queries
from campaign.destinations import (
    NUL,
    CsvLayout,
    InvalidDestination,
    LoadError,
    SourceRow,
    normalise_destination,
)
from campaign.importer import (
    CHUNK_ROWS,
    CsvSource,
    chunks,
    chunks_ahead,
    validation_executor,
)
from campaign.specs import SpecError
from campaign.suppression_filter import SAVE_AFTER, refresh_filters

logger = logging.getLogger(__name__)

DEFAULT_LIST = "default"
# Bad values listed one by one; the rest are counted.
BAD_SHOWN = 20


def reason_text(value: str | None) -> str | None:
    """The --reason to store (None when not given), else SpecError."""
    if value is not None and NUL in value:
        raise SpecError("--reason", "the reason holds a NUL byte (\\0); remove it")
    return value


def is_file_argument(argument: str) -> bool:
    """An argument of `suppress add` is a CSV file when it exists as a file or ends in .csv."""
    if argument.lower().endswith(".csv"):
        return True
    try:
        return Path(argument).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL in it
        return False


@dataclass(frozen=True, slots=True)
class BadValue:
    """A value that is not a number to suppress: where it was (`FILE line N`, `argument N`)."""

    where: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.value!r}: {self.reason}"


class RefusedValues(Exception):
    """Some values are not numbers; nothing was written. `shown`: the first BAD_SHOWN of them,
    in input order; `count`: all of them."""

    def __init__(self, message: str, shown: Sequence[BadValue], count: int) -> None:
        super().__init__(message)
        self.shown = list(shown)
        self.count = count


@dataclass(slots=True)
class BadValues:
    """The bad values met so far: the first BAD_SHOWN kept, all counted."""

    shown: list[BadValue] = field(default_factory=list)
    count: int = 0

    def extend(self, bad: Sequence[BadValue]) -> None:
        self.count += len(bad)
        room = BAD_SHOWN - len(self.shown)
        if room > 0:
            self.shown.extend(bad[:room])

    def refuse(self, done: str) -> RefusedValues:
        noun = "value is not a number" if self.count == 1 else "values are not numbers"
        return RefusedValues(
            f"{self.count:,} {noun} that can be suppressed; {done}", self.shown, self.count
        )


def normalised(raw: str, default_region: str | None) -> str:
    """The number as contacts store it (as `load` reads it), else InvalidDestination."""
    if NUL in raw:
        raise InvalidDestination("holds a NUL byte (\\0), which the database cannot store")
    return normalise_destination(raw, default_region)


def check_values(
    values: Sequence[tuple[str, str]], default_region: str | None
) -> tuple[list[str], list[BadValue]]:
    """(where, raw) values → their numbers, and the bad ones (AmbiguousNumber among them)."""
    numbers: list[str] = []
    bad: list[BadValue] = []
    for where, raw in values:
        try:
            numbers.append(normalised(raw, default_region))
        except InvalidDestination as error:
            bad.append(BadValue(where, raw, str(error)))
    return numbers, bad


def check_rows(
    rows: Sequence[SourceRow], phone_index: int, default_region: str | None, source: str
) -> tuple[list[str], list[BadValue]]:
    """A chunk of CSV rows → the numbers of their phone column, and the bad ones (pure: runs in
    worker processes)."""
    return check_values(
        [
            (
                f"{source} line {line_number}",
                cells[phone_index] if phone_index < len(cells) else "",
            )
            for line_number, cells in rows
        ],
        default_region,
    )


@dataclass(frozen=True, slots=True)
class AddSummary:
    """What `suppress add` did: values read, distinct numbers among them, how many were new."""

    list_name: str
    read: int
    distinct: int
    added: int

    @property
    def already(self) -> int:
        """Distinct numbers that were on the list already (left as they were)."""
        return self.distinct - self.added

    @property
    def repeated(self) -> int:
        """Values that repeat a number given before them."""
        return self.read - self.distinct

    def as_json(self) -> dict[str, object]:
        return {
            "list": self.list_name,
            "read": self.read,
            "added": self.added,
            "already_on_list": self.already,
            "repeated": self.repeated,
        }


class _Adding:
    """One `add` in progress on a connection inside its transaction."""

    def __init__(self, connection: queries.Connection) -> None:
        self.connection = connection
        self.read = 0
        self.bad = BadValues()

    async def take(self, numbers: list[str], bad: list[BadValue]) -> None:
        """Count a checked chunk; stage its numbers while nothing is bad (after that, staging
        is wasted: the transaction will roll back)."""
        self.read += len(numbers) + len(bad)
        self.bad.extend(bad)
        if numbers and not self.bad.count:
            await queries.stage_suppressions(self.connection, numbers)

    async def take_file(
        self, path: Path, column: str | None, default_region: str | None, jobs: int | None
    ) -> None:
        source = CsvSource(path)
        try:
            records = source.records()
            first = next(records, None)
            if first is None:
                raise LoadError(f"{path}: the file has no rows; nothing was added")
            layout = CsvLayout.detect(first[1], column, str(path))
            rows = chain([first] if layout.header is None else [], records)
            read_before = self.read
            await self._take_chunks(
                chunks(rows, CHUNK_ROWS),
                layout.phone_index,
                default_region,
                str(path),
                jobs,
                source.size_bytes,
            )
            if self.read == read_before:
                raise LoadError(f"{path}: no numbers under its header; nothing was added")
        finally:
            source.close()

    async def _take_chunks(
        self,
        row_chunks: Iterator[list[SourceRow]],
        phone_index: int,
        default_region: str | None,
        source: str,
        jobs: int | None,
        size_bytes: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        with validation_executor(size_bytes, jobs) as executor:
            in_flight: deque[asyncio.Future[tuple[list[str], list[BadValue]]]] = deque()
            ahead = chunks_ahead(executor)

            def submit_next() -> bool:
                chunk = next(row_chunks, None)
                if chunk is None:
                    return False
                in_flight.append(
                    loop.run_in_executor(
                        executor, check_rows, chunk, phone_index, default_region, source
                    )
                )
                return True

            try:
                while len(in_flight) < ahead and submit_next():
                    pass
                while in_flight:
                    numbers, bad = await in_flight.popleft()
                    submit_next()
                    await self.take(numbers, bad)
            finally:
                for future in in_flight:
                    future.cancel()


async def add_to_list(
    pool: asyncpg.Pool,
    arguments: Sequence[str],
    list_name: str,
    reason: str | None = None,
    *,
    default_region: str | None = None,
    column: str | None = None,
    jobs: int | None = None,
) -> AddSummary:
    """Put the numbers of `arguments` (numbers, and CSV files by is_file_argument) on the list,
    in one transaction; RefusedValues (nothing added) if any value is not a number.

    `list_name`, `reason` and `default_region` are taken as checked (specs.list_name(),
    reason_text(), specs.default_region()).
    """
    async with pool.acquire() as connection, connection.transaction():
        await queries.create_suppression_staging(connection)
        adding = _Adding(connection)
        numbers: list[tuple[str, str]] = []
        for position, argument in enumerate(arguments, start=1):
            if is_file_argument(argument):
                await adding.take(*check_values(numbers, default_region))
                numbers = []
                await adding.take_file(Path(argument), column, default_region, jobs)
            else:
                numbers.append((f"argument {position}", argument))
        await adding.take(*check_values(numbers, default_region))
        if adding.bad.count:
            raise adding.bad.refuse(f"nothing was added to list {list_name!r}")
        staged = await queries.insert_staged_suppressions(connection, list_name, reason)
    if staged.added >= SAVE_AFTER:
        # The list's filter, brought up to date now, so that the next load need not.
        try:
            async with pool.acquire() as connection:
                await refresh_filters(connection, [list_name])
        except db.DATABASE_ERRORS as error:  # the numbers are added: a load will do it
            logger.warning("list %r: its filter was not brought up to date: %s", list_name, error)
    return AddSummary(list_name, adding.read, staged.distinct_numbers, staged.added)


@dataclass(frozen=True, slots=True)
class RemoveSummary:
    """What `suppress remove` did: the numbers taken off, and those that were not on the list,
    each once, in the order given."""

    list_name: str
    removed: list[str]
    not_on_list: list[str]

    def as_json(self) -> dict[str, object]:
        return {"list": self.list_name, "removed": self.removed, "not_on_list": self.not_on_list}


async def remove_from_list(
    executor: queries.Executor,
    arguments: Sequence[str],
    list_name: str,
    *,
    default_region: str | None = None,
) -> RemoveSummary:
    """Take the numbers off the list in one statement; RefusedValues (nothing removed) if any
    value is not a number."""
    numbers, bad = check_values(
        [(f"argument {position}", raw) for position, raw in enumerate(arguments, start=1)],
        default_region,
    )
    if bad:
        refused = BadValues()
        refused.extend(bad)
        raise refused.refuse(f"nothing was removed from list {list_name!r}")
    distinct = list(dict.fromkeys(numbers))
    removed = await queries.delete_suppressions(executor, list_name, distinct)
    return RemoveSummary(
        list_name,
        [number for number in distinct if number in removed],
        [number for number in distinct if number not in removed],
    )
