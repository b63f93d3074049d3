"""Suppression (do-not-call) lists: `campaign suppress add | remove | list`.

The table `suppressions` (list, destination, reason, created_at) is public; the claim reads it
(schema.sql §3), these functions only manage it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from campaign.queries.base import Connection, Executor, sql


@dataclass(frozen=True, slots=True)
class SuppressionList:
    """A list as `suppress list` shows it: its name, how many numbers, the newest's date."""

    name: str
    numbers: int
    newest: datetime

    def as_json(self) -> dict[str, object]:
        return {"list": self.name, "numbers": self.numbers, "newest": self.newest.isoformat()}


@dataclass(frozen=True, slots=True)
class SuppressedNumber:
    """One number on a list."""

    destination: str
    reason: str | None
    created_at: datetime

    def as_json(self) -> dict[str, object]:
        return {
            "destination": self.destination,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SavedSuppressionFilter:
    """A list's Bloom filter as saved (campaign/suppression_filter.py)."""

    version: int
    size_log2: int
    destinations: int
    scheme: int
    bits: bytes


@dataclass(frozen=True, slots=True)
class StagedAdded:
    """What inserting the staged numbers did: distinct numbers staged, and how many were new."""

    distinct_numbers: int
    added: int


async def create_suppression_staging(connection: Connection) -> None:
    """A temporary table, dropped at commit, that `suppress add` COPYs numbers into."""
    await connection.execute(sql("create_suppression_staging"))


async def stage_suppressions(connection: Connection, destinations: Iterable[str]) -> None:
    """COPY normalised numbers into the staging table (duplicates are fine)."""
    await connection.copy_records_to_table(
        "suppression_staging", records=[(destination,) for destination in destinations]
    )


async def insert_staged_suppressions(
    connection: Connection, list_name: str, reason: str | None
) -> StagedAdded:
    """Put every staged number on `list_name` once; a number already on it is left as it was."""
    record = await connection.fetchrow(sql("insert_staged_suppressions"), list_name, reason)
    assert record is not None  # an aggregate: always one row
    return StagedAdded(record["distinct_numbers"], record["added"])


async def delete_suppressions(
    executor: Executor, list_name: str, destinations: Sequence[str]
) -> set[str]:
    """Take `destinations` off `list_name`; the ones that were on it."""
    records = await executor.fetch(sql("delete_suppressions"), list_name, list(destinations))
    return {record["destination"] for record in records}


async def suppression_lists(executor: Executor) -> list[SuppressionList]:
    """Every list that holds a number, by name."""
    records = await executor.fetch(sql("suppression_lists"))
    return [SuppressionList(r["list"], r["numbers"], r["newest"]) for r in records]


async def suppressed_number_chunks(
    connection: Connection, list_name: str, chunk_rows: int
) -> AsyncIterator[list[SuppressedNumber]]:
    """The numbers on `list_name` in destination order, `chunk_rows` at a time.

    Read through a server-side cursor, so only one chunk is in memory; the caller holds the
    transaction the cursor lives in.
    """
    cursor = await connection.cursor(sql("suppressed_numbers"), list_name)
    while records := await cursor.fetch(chunk_rows):
        yield [SuppressedNumber(r["destination"], r["reason"], r["created_at"]) for r in records]


async def suppression_filter(
    connection: Connection, list_name: str
) -> SavedSuppressionFilter | None:
    """`list_name`'s Bloom filter as last saved, if it has one."""
    record = await connection.fetchrow(sql("suppression_filter"), list_name)
    if record is None:
        return None
    return SavedSuppressionFilter(
        record["version"],
        record["size_log2"],
        record["destinations"],
        record["scheme"],
        record["bits"],
    )


async def count_suppressions(connection: Connection, list_name: str) -> int:
    """How many destinations `list_name` holds."""
    count: int = await connection.fetchval(sql("count_suppressions"), list_name)
    return count


async def suppression_lists_version(executor: Executor) -> int:
    """The suppression lists' version now."""
    version: int = await executor.fetchval(sql("suppression_lists_version"))
    return version


async def suppressions_added_since(
    connection: Connection, list_name: str, version: int, chunk_rows: int
) -> AsyncIterator[tuple[int, list[str]]]:
    """`list_name`'s destinations added after `version` (-1: all), `chunk_rows` at a time, each
    chunk with the lists' version of the snapshot they were read in (one snapshot: at least one
    chunk, maybe empty). Through a server-side cursor: the caller holds the transaction it lives
    in."""
    cursor = await connection.cursor(sql("suppressions_added_since"), list_name, version)
    while records := await cursor.fetch(chunk_rows):
        destinations = [r["destination"] for r in records if r["destination"] is not None]
        yield records[0]["version"], destinations


async def save_suppression_filter(
    executor: Executor,
    list_name: str,
    version: int,
    size_log2: int,
    destinations: int,
    scheme: int,
    bits: bytes | bytearray,
) -> None:
    """Keep `list_name`'s filter at `version`, unless one of a later version is kept."""
    await executor.execute(
        sql("save_suppression_filter"), list_name, version, size_log2, destinations, scheme, bits
    )
