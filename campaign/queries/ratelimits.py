"""Slots of the shared rate limits outside a claim: a retried batch, and a single API request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from campaign.models import Limit
from campaign.queries.base import Executor, sql


@dataclass(frozen=True, slots=True)
class Slot:
    """When a grant of the rate limits may be used, and the clock as it was granted (seconds
    since the epoch, on the database's clock). `retry_at_s` is set instead when nothing was
    granted because the campaign's own cap has no slot soon enough: when to come back."""

    send_at_s: float
    db_now_s: float
    retry_at_s: float | None = None
    # As Claim's: the clock as the statement ended and the server's time on it.
    replied_at_s: float = 0.0
    served_s: float = 0.0


async def reserve_retry_slots(
    executor: Executor,
    *,
    call_limiters: Sequence[Limit],
    request_limiters: Sequence[Limit],
    own_limiters: Sequence[Limit],
    shared_slot_slack_s: float,
    calls: int,
) -> Slot:
    """New slots for a whole batch sent again: `calls` calls in one second, and one request."""
    record = await executor.fetchrow(
        sql("reserve_retry_slots"),
        [limit.name for limit in call_limiters],
        [limit.rate_per_s for limit in call_limiters],
        [limit.name for limit in request_limiters],
        [limit.rate_per_s for limit in request_limiters],
        [limit.name for limit in own_limiters],
        shared_slot_slack_s,
        calls,
    )
    assert record is not None  # reserve_retry_slots always answers one row
    return Slot(
        send_at_s=record["send_at"],
        db_now_s=record["db_now"],
        retry_at_s=record["retry_at"],
        replied_at_s=record["replied_at"],
        served_s=record["served_s"],
    )


@dataclass(frozen=True, slots=True)
class ClockReading:
    """The database's clock as a statement ended (seconds since the epoch) and how long the
    server worked on it (real seconds)."""

    replied_at_s: float
    served_s: float


async def read_clock(executor: Executor) -> ClockReading:
    """One reading of the database's clock, for the worker's estimate of it."""
    record = await executor.fetchrow(sql("read_clock"))
    assert record is not None
    return ClockReading(replied_at_s=record["replied_at"], served_s=record["served_s"])


async def reserve_request_slot(executor: Executor, limiter: Limit) -> float:
    """Take the next slot of one request limiter; how many seconds to wait before sending."""
    delay_s: float = await executor.fetchval(
        sql("reserve_request_slot"), limiter.name, limiter.rate_per_s
    )
    return delay_s


async def restart_limiter(executor: Executor, name: str) -> None:
    """A limiter whose rate changed: its next slot no later than now."""
    await executor.execute(sql("restart_limiter"), name)
