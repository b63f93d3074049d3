"""Loading a CSV: a staging table COPYed into, then moved into the campaign's contacts."""

from __future__ import annotations

from campaign.queries.base import Connection, sql


async def create_load_staging(connection: Connection) -> None:
    """A temporary table, dropped at commit, that a load COPYs its rows into."""
    await connection.execute(sql("create_load_staging"))


async def insert_staged_contacts(connection: Connection, campaign_id: int) -> int:
    """Move the staged rows into the campaign's contacts, skipping duplicates; return how many."""
    inserted: int = await connection.fetchval(sql("insert_staged_contacts"), campaign_id)
    await connection.execute(sql("truncate_load_staging"))
    return inserted
