"""The HTTP API's own records: API keys (their hashes), idempotency records, the rejected rows
of its loads; and the pages of contacts and responses it serves (keyset, by id)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from campaign.contact_filter import ContactFilter
from campaign.queries.base import Connection, Executor, sql


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: its name and rights, never the key (only its hash is stored)."""

    id: int
    name: str
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> ApiKey:
        return cls(
            record["id"],
            record["name"],
            record["read_only"],
            record["created_at"],
            record["revoked_at"],
        )


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a request with an Idempotency-Key took: its body's hash, and its answer once made."""

    request_sha256: bytes
    status: int | None
    content_type: str | None
    body: bytes | None


async def create_api_key(
    executor: Executor, name: str, key_sha256: bytes, *, read_only: bool
) -> ApiKey:
    """Store a new key's hash; asyncpg.UniqueViolationError if the name is taken."""
    record = await executor.fetchrow(sql("create_api_key"), name, key_sha256, read_only)
    assert record is not None  # INSERT … RETURNING: one row
    return ApiKey.from_record(record)


async def api_keys(executor: Executor) -> list[ApiKey]:
    """Every key, by name."""
    return [ApiKey.from_record(record) for record in await executor.fetch(sql("api_keys"))]


async def revoke_api_key(executor: Executor, name: str) -> ApiKey | None:
    """Revoke the live key called `name`; None if there is none."""
    record = await executor.fetchrow(sql("revoke_api_key"), name)
    return None if record is None else ApiKey.from_record(record)


async def api_key_by_hash(executor: Executor, key_sha256: bytes) -> tuple[ApiKey, bytes] | None:
    """The live key with this hash, and the stored hash (to compare in constant time)."""
    record = await executor.fetchrow(sql("api_key_by_hash"), key_sha256)
    return None if record is None else (ApiKey.from_record(record), record["key_sha256"])


async def claim_idempotency_key(
    executor: Executor, api_key_id: int, key: str, request_sha256: bytes
) -> bool:
    """Take the key for this request; False when a request took it within 24 hours."""
    record = await executor.fetchrow(sql("claim_idempotency_key"), api_key_id, key, request_sha256)
    return record is not None


async def idempotency_record(
    executor: Executor, api_key_id: int, key: str
) -> IdempotencyRecord | None:
    """The record of the key, if any."""
    record = await executor.fetchrow(sql("idempotency_record"), api_key_id, key)
    if record is None:
        return None
    return IdempotencyRecord(
        record["request_sha256"], record["status"], record["content_type"], record["body"]
    )


async def store_idempotent_answer(
    executor: Executor, api_key_id: int, key: str, status: int, content_type: str, body: bytes
) -> None:
    """Keep the answer a retry with the key gets."""
    await executor.execute(
        sql("store_idempotent_answer"), api_key_id, key, status, content_type, body
    )


async def release_idempotency_key(executor: Executor, api_key_id: int, key: str) -> None:
    """Free a key whose request ended without an answer (a retry runs again)."""
    await executor.execute(sql("release_idempotency_key"), api_key_id, key)


async def forget_expired_idempotency_keys(executor: Executor) -> None:
    """Delete the records older than 24 hours."""
    await executor.execute(sql("forget_expired_idempotency_keys"))


async def create_api_load(connection: Connection, campaign_id: int, summary: object) -> int:
    """A load made through the API; its id (the rejects URL names it)."""
    load_id = await connection.fetchval(sql("create_api_load"), campaign_id, summary)
    assert isinstance(load_id, int)
    return load_id


async def copy_api_load_rejects(
    connection: Connection, load_id: int, rows: Iterable[tuple[int, str, str]]
) -> None:
    """COPY a load's rejected rows (line, value, reason)."""
    await connection.copy_records_to_table(
        "api_load_rejects",
        records=((load_id, line, value, reason) for line, value, reason in rows),
        columns=("load_id", "line_number", "value", "reason"),
    )


async def api_load_exists(executor: Executor, load_id: int) -> bool:
    return bool(await executor.fetchval(sql("api_load_exists"), load_id))


async def api_load_reject_chunks(
    connection: Connection, load_id: int, chunk_rows: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """A load's rejected rows in line order, through a cursor (the caller holds the
    transaction)."""
    cursor = await connection.cursor(sql("api_load_rejects"), load_id)
    while records := await cursor.fetch(chunk_rows):
        yield records


async def contacts_page(
    executor: Executor,
    campaign_id: int,
    after_id: int,
    *,
    flt: ContactFilter,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` contacts after id `after_id`, by id, those the filter matches."""
    return list(
        await executor.fetch(sql("contacts_page"), campaign_id, after_id, *flt.query_args(), limit)
    )


async def contact_outcome(
    executor: Executor, campaign_id: int, contact_id: int
) -> asyncpg.Record | None:
    return await executor.fetchrow(sql("contact_outcome"), campaign_id, contact_id)


async def contact_attempts(
    executor: Executor, campaign_id: int, contact_id: int
) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("contact_attempts"), campaign_id, contact_id))


async def contact_call_events(
    executor: Executor, campaign_id: int, contact_id: int
) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("contact_call_events"), campaign_id, contact_id))


async def responses_page(
    executor: Executor, campaign_id: int, after_id: int, limit: int
) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("responses_page"), campaign_id, after_id, limit))
