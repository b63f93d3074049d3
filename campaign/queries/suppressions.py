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
