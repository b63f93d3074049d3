"""Bulk redial: how many of a campaign's contacts a filter matches, how many of them may be
dialled again, and setting those pending (campaign/contact_filter.py is the filter)."""

from __future__ import annotations

from dataclasses import dataclass

from campaign.contact_filter import ContactFilter
from campaign.queries.base import Connection, Executor, sql


@dataclass(frozen=True, slots=True)
class RedialCounts:
    """Of the contacts a filter matches (`matched`, as a listing shows them), how many may be
    dialled again now (`redialable`); `ended`: the campaign's end_at has passed."""

    matched: int
    redialable: int
    ended: bool


async def redial_counts(executor: Executor, campaign_id: int, flt: ContactFilter) -> RedialCounts:
    record = await executor.fetchrow(sql("redial_counts"), campaign_id, *flt.query_args())
    assert record is not None  # an aggregate: always one row
    return RedialCounts(record["matched"], record["redialable"], record["ended"])


async def redial_contacts(connection: Connection, campaign_id: int, flt: ContactFilter) -> int:
    """Set the redialable contacts the filter matches pending, due now; how many. The caller
    holds the campaign's row lock (FOR UPDATE) in the same transaction."""
    redialled: int = await connection.fetchval(
        sql("redial_contacts"), campaign_id, *flt.query_args()
    )
    return redialled
