"""Typed async functions over the named SQL blocks of sql/queries.sql."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import cache
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from campaign.models import Campaign, CampaignSpec, CampaignStatus, Progress

# A connection, whether taken from a pool or not.
Connection = asyncpg.Connection | PoolConnectionProxy
# Anything that runs a single query: a connection, or a pool for one-off reads.
Executor = Connection | asyncpg.Pool

_BLOCK_NAME = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of `-- name --` blocks into {name: sql}; text before the first is a header."""
    parts = _BLOCK_NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name} is defined twice in queries.sql")
        queries[name] = body.strip()
    return queries


@cache
def _queries() -> Mapping[str, str]:
    return parse_queries(resources.files("campaign").joinpath("sql/queries.sql").read_text())


def sql(name: str) -> str:
    """The SQL of one named block."""
    return _queries()[name]


async def create_campaign(connection: Connection, spec: CampaignSpec) -> Campaign:
    """Insert a campaign; a duplicate name raises asyncpg.UniqueViolationError."""
    parameters = spec.call_parameters
    record = await connection.fetchrow(
        sql("create_campaign"),
        spec.name,
        spec.status.value,
        spec.from_number,
        spec.answer_url,
        parameters.get("answer_method"),
        parameters.get("ring_url"),
        parameters.get("ring_method"),
        parameters.get("hangup_url"),
        parameters.get("hangup_method"),
        parameters.get("fallback_url"),
        parameters.get("fallback_method"),
        parameters.get("caller_name"),
        parameters.get("send_digits"),
        parameters.get("send_on_preanswer"),
        parameters.get("time_limit"),
        parameters.get("hangup_on_ring"),
        parameters.get("machine_detection"),
        parameters.get("machine_detection_time"),
        parameters.get("machine_detection_url"),
        parameters.get("machine_detection_method"),
        parameters.get("sip_headers"),
        parameters.get("ring_timeout"),
        spec.calls_per_second,
        spec.batch_size,
        spec.max_attempts,
        list(spec.redial_on),
        list(spec.redial_delays_s),
    )
    if spec.track_calls_at is not None and record is not None:
        record = await connection.fetchrow(
            sql("track_campaign_calls"), record["id"], spec.track_calls_at
        )
    return Campaign.from_record(record)


async def campaign_by_name(
    connection: Executor, name: str, *, for_update: bool = False
) -> Campaign | None:
    """The campaign called `name`, locked against concurrent changes when `for_update`."""
    query = sql("campaign_by_name_for_update" if for_update else "campaign_by_name")
    record = await connection.fetchrow(query, name)
    return None if record is None else Campaign.from_record(record)


async def progress(connection: Executor, name: str) -> Progress | None:
    """One campaign's row of `campaign_progress`."""
    record = await connection.fetchrow(sql("progress_by_name"), name)
    return None if record is None else Progress.from_record(record)


async def progress_all(connection: Executor) -> list[Progress]:
    """Every campaign's row of `campaign_progress`, oldest first."""
    return [Progress.from_record(record) for record in await connection.fetch(sql("progress_all"))]


async def create_load_staging(connection: Connection) -> None:
    """A temporary table, dropped at commit, that a load COPYs its rows into."""
    await connection.execute(sql("create_load_staging"))


async def insert_staged_contacts(connection: Connection, campaign_id: int) -> int:
    """Move the staged rows into the campaign's contacts, skipping duplicates; return how many."""
    inserted: int = await connection.fetchval(sql("insert_staged_contacts"), campaign_id)
    await connection.execute(sql("truncate_load_staging"))
    return inserted


async def notify_work(connection: Connection, campaign_id: int) -> None:
    """Wake the workers (delivered when the surrounding transaction commits)."""
    await connection.execute(sql("notify_work"), campaign_id)


async def set_campaign_status(
    connection: Connection,
    name: str,
    status: CampaignStatus,
    allowed_from: Sequence[CampaignStatus],
) -> Campaign | None:
    """Move campaign `name` to `status` if it is in one of `allowed_from`; None otherwise."""
    record = await connection.fetchrow(
        sql("set_campaign_status"), name, status.value, [state.value for state in allowed_from]
    )
    return None if record is None else Campaign.from_record(record)


async def cancel_contacts(connection: Connection, campaign_id: int) -> int:
    """Cancel the campaign's contacts not dialled yet; return how many."""
    cancelled: int = await connection.fetchval(sql("cancel_contacts"), campaign_id)
    return cancelled


async def reopen_campaign(connection: Connection, campaign_id: int) -> None:
    """A completed campaign that got new contacts to dial runs again."""
    await connection.execute(sql("reopen_campaign"), campaign_id)


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
