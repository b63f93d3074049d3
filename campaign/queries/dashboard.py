"""The dashboard's records (sessions, failed logins, the audit trail) and its reads: rates,
the calls chart, Plivo's latency and errors, calling windows, failing webhooks, contact pages."""

from __future__ import annotations

from typing import Any

import asyncpg

from campaign.queries.api import ApiKey
from campaign.queries.base import Connection, Executor, sql


async def create_dashboard_session(
    executor: Executor, token_sha256: bytes, api_key_id: int, *, idle_s: float
) -> None:
    """Store a new session's token hash (and forget the sessions idle `idle_s`)."""
    await executor.execute(sql("create_dashboard_session"), token_sha256, api_key_id, idle_s)


async def touch_dashboard_session(
    executor: Executor, token_sha256: bytes, *, idle_s: float
) -> tuple[ApiKey, bytes] | None:
    """The key of the live session with this token hash, the session seen now; and the stored
    hash (to compare in constant time). None: no such session, idle too long, or key revoked."""
    record = await executor.fetchrow(sql("touch_dashboard_session"), token_sha256, idle_s)
    return None if record is None else (ApiKey.from_record(record), record["token_sha256"])


async def peek_dashboard_session(
    executor: Executor, token_sha256: bytes, *, idle_s: float
) -> tuple[ApiKey, bytes, float] | None:
    """As touch_dashboard_session without touching it; and the seconds it has left."""
    record = await executor.fetchrow(sql("peek_dashboard_session"), token_sha256, idle_s)
    if record is None:
        return None
    return ApiKey.from_record(record), record["token_sha256"], float(record["left_s"])


async def end_dashboard_session(executor: Executor, token_sha256: bytes) -> None:
    await executor.execute(sql("end_dashboard_session"), token_sha256)


async def login_failures(executor: Executor, address: str, window_s: float) -> tuple[int, float]:
    """How many logins from `address` failed in the last `window_s`, and in how many seconds
    the oldest of them leaves the window."""
    record = await executor.fetchrow(sql("login_failures"), address, window_s)
    assert record is not None  # an aggregate: one row
    return int(record["failures"]), float(record["retry_after_s"])


async def record_login_failure(executor: Executor, address: str, window_s: float) -> None:
    await executor.execute(sql("record_login_failure"), address, window_s)


async def write_dashboard_audit(
    executor: Executor, key_name: str, action: str, campaign: str | None, detail: dict[str, Any]
) -> None:
    await executor.execute(sql("write_dashboard_audit"), key_name, action, campaign, detail)


async def dashboard_audit(executor: Executor, limit: int) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("dashboard_audit"), limit))


async def dashboard_rates(executor: Executor, window_s: float) -> dict[int, int]:
    """Calls placed in the last `window_s` seconds, by campaign id."""
    records = await executor.fetch(sql("dashboard_rates"), window_s)
    return {record["campaign_id"]: record["calls"] for record in records}


async def dashboard_calls_per_minute(executor: Executor, campaign_id: int) -> list[int]:
    """Calls placed in each of the last 60 minutes, the oldest minute first."""
    minutes = [0] * 60
    for record in await executor.fetch(sql("dashboard_calls_per_minute"), campaign_id):
        if 0 <= record["minutes_ago"] < 60:
            minutes[59 - record["minutes_ago"]] = record["calls"]
    return minutes


async def dashboard_plivo_latency(executor: Executor, campaign_id: int) -> asyncpg.Record:
    record = await executor.fetchrow(sql("dashboard_plivo_latency"), campaign_id)
    assert record is not None  # an aggregate: one row
    return record


async def dashboard_plivo_errors(executor: Executor, campaign_id: int) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("dashboard_plivo_errors"), campaign_id))


async def dashboard_waiting_windows(executor: Executor, campaign_id: int) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("dashboard_waiting_windows"), campaign_id))


async def dashboard_failing_webhooks(executor: Executor, campaign_id: int) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("dashboard_failing_webhooks"), campaign_id))


async def dashboard_time_zones(executor: Executor, campaign_id: int) -> list[str]:
    return [r["zone"] for r in await executor.fetch(sql("dashboard_time_zones"), campaign_id)]


async def dashboard_contact_responses(
    executor: Executor, campaign_id: int, contact_id: int
) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("dashboard_contact_responses"), campaign_id, contact_id))


async def dashboard_contact_deliveries(
    executor: Executor, campaign_id: int, contact_id: int
) -> list[asyncpg.Record]:
    return list(await executor.fetch(sql("dashboard_contact_deliveries"), campaign_id, contact_id))


async def notify_campaign_changed(connection: Connection, campaign_id: int) -> None:
    """Wake the dashboards (sent at the commit of the caller's transaction)."""
    await connection.execute(sql("notify_campaign_changed"), campaign_id)
