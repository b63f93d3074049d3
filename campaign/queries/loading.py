"""Loading a CSV: a staging table COPYed into, then moved into the campaign's contacts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from campaign.queries.base import Connection, sql


async def create_load_staging(connection: Connection) -> None:
    """A temporary table, dropped at commit, that a load COPYs its rows into."""
    await connection.execute(sql("create_load_staging"))


async def insert_staged_contacts(
    connection: Connection,
    campaign_id: int,
    suppression_lists: Sequence[str],
    *,
    local_presence: bool = False,
) -> tuple[int, int]:
    """Move the staged rows into the campaign's contacts, skipping duplicates, those on one of
    `suppression_lists` stored `suppressed`, each matched to its local caller IDs with
    `local_presence`; return how many were inserted, and how many of them are suppressed."""
    row = await connection.fetchrow(
        sql("insert_staged_contacts"), campaign_id, list(suppression_lists), local_presence
    )
    await connection.execute(sql("truncate_load_staging"))
    assert row is not None
    return row["inserted"], row["suppressed"]


async def time_zone_names(connection: Connection) -> list[str]:
    """The names of the time zones the database knows (pg_timezone_names)."""
    return [row["name"] for row in await connection.fetch(sql("time_zone_names"))]


async def staged_time_zone_sets(connection: Connection) -> list[tuple[str, ...]]:
    """The distinct sets of time zones of the rows staged now."""
    return [
        tuple(row["time_zones"]) for row in await connection.fetch(sql("staged_time_zone_sets"))
    ]


async def first_window_opening(
    connection: Connection, campaign_id: int, time_zones: Sequence[str]
) -> datetime | None:
    """When the window of `time_zones` first opens for the campaign (None: not within 15 days of
    its start, or not before its end)."""
    opening: datetime | None = await connection.fetchval(
        sql("first_window_opening"), campaign_id, list(time_zones)
    )
    return opening


async def reject_staged_time_zones(
    connection: Connection, time_zones: Sequence[str]
) -> list[tuple[int, str]]:
    """Take the staged rows with these zones out of the load: (line number, value) each."""
    rows = await connection.fetch(sql("reject_staged_time_zones"), list(time_zones))
    return [(row["line_number"], row["raw_destination"]) for row in rows]
