"""`campaign export`: a campaign's contacts with their outcomes, read through a cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncpg

from campaign.queries.base import Connection, sql


async def export_field_names(connection: Connection, campaign_id: int) -> list[str]:
    """The keys of the campaign's contacts' own CSV columns, sorted by name."""
    records = await connection.fetch(sql("export_field_names"), campaign_id)
    return [record["name"] for record in records]


async def contact_outcome_chunks(
    connection: Connection, campaign_id: int, field_names: Sequence[str], chunk_rows: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """The campaign's contacts with their outcomes, in id order, `chunk_rows` at a time.

    Read through a server-side cursor, so only one chunk is in memory; the caller holds the
    transaction the cursor lives in.
    """
    cursor = await connection.cursor(sql("export_contact_outcomes"), campaign_id, list(field_names))
    while records := await cursor.fetch(chunk_rows):
        yield records
