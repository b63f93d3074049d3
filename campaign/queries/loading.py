"""Loading a CSV: a staging table COPYed into, then moved into the campaign's contacts."""

from __future__ import annotations

from collections.abc import Sequence

from campaign.queries.base import Connection, sql


async def create_load_staging(connection: Connection) -> None:
    """A temporary table, dropped at commit, that a load COPYs its rows into."""
    await connection.execute(sql("create_load_staging"))


async def insert_staged_contacts(
    connection: Connection, campaign_id: int, suppression_lists: Sequence[str]
) -> tuple[int, int]:
    """Move the staged rows into the campaign's contacts, skipping duplicates, those on one of
    `suppression_lists` stored `suppressed`; return how many were inserted, and how many of
    them are suppressed."""
    row = await connection.fetchrow(
        sql("insert_staged_contacts"), campaign_id, list(suppression_lists)
    )
    await connection.execute(sql("truncate_load_staging"))
    assert row is not None
    return row["inserted"], row["suppressed"]


async def time_zone_names(connection: Connection) -> list[str]:
    """The names of the time zones the database knows (pg_timezone_names)."""
    return [row["name"] for row in await connection.fetch(sql("time_zone_names"))]
