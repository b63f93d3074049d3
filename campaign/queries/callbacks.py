"""Recording Plivo's callbacks, many per round trip (schema.sql: record_call_events)."""

from __future__ import annotations

from collections.abc import Sequence

from campaign.models import CallEvent, RecordResult
from campaign.queries.base import Executor, sql


async def record_call_events(
    executor: Executor, events: Sequence[CallEvent], *, account_capped: bool = False
) -> list[RecordResult]:
    """Record `events` in one statement and one commit, in the order given (which is the order
    their contacts are locked in); each one's result, in the same order. A hangup of a call
    under a cap of concurrent calls (the account's when `account_capped`) wakes the workers
    waiting at it."""
    records = await executor.fetch(
        sql("record_call_events"),
        [event.campaign_id for event in events],
        [event.event for event in events],
        [event.destination for event in events],
        [event.request_uuid for event in events],
        [event.call_uuid for event in events],
        [event.call_status for event in events],
        [event.payload for event in events],
        [event.dedupe_key for event in events],
        [event.hangup_cause for event in events],
        [event.hangup_cause_code for event in events],
        [event.duration_s for event in events],
        [event.bill_duration_s for event in events],
        [event.answered_at for event in events],
        [event.ended_at for event in events],
        [event.machine for event in events],
        account_capped,
    )
    results: list[RecordResult] = [RecordResult.UNKNOWN] * len(events)
    for record in records:
        results[record["callback_index"] - 1] = RecordResult(record["callback_result"])
    return results
