"""A batch's path through the database: claim, write ahead, then record, fail or give back.

Each function is one round trip to one SQL function of schema.sql (section 4), which states the
rules; see campaign/dialing.py for the order they run in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from campaign.models import DialRequest, Limit, RequestOutcome
from campaign.queries.base import Executor, sql


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim took: its contacts (none when nothing was due or no slot was granted), when
    the rate limits let them be sent, and their request when the claim wrote it ahead."""

    contact_ids: list[int]
    destinations: list[str]
    # Seconds since the epoch, on the database's clock: when to send, and the clock as the
    # claim ended.
    send_at_s: float
    db_now_s: float
    request: DialRequest | None
    # Set when nothing was claimed because the campaign's own cap has no slot soon enough: when
    # to come back (database clock).
    retry_at_s: float | None
    # The `from` to send with (a caller ID of the campaign's pool, else its own).
    caller_id: str | None = None
    # What a claim that took nothing waits for: "priority" (a campaign of higher priority wants
    # the account's calls), "calls" (a cap of concurrent calls is reached: a hangup frees one),
    # "caller_id" (every caller ID had its calls of the day); None otherwise.
    waiting_for: str | None = None
    # The database's clock as the statement ended, and how long the server worked on it (real
    # seconds): with the times it left and came back, a sample of the clock (campaign/dbclock).
    replied_at_s: float = 0.0
    served_s: float = 0.0


async def claim_batch(
    executor: Executor,
    *,
    campaign_id: int,
    worker_id: str,
    wanted: int,
    lease_s: float,
    pace_window_s: float,
    call_limiters: Sequence[Limit],
    request_limiters: Sequence[Limit],
    own_limiters: Sequence[Limit],
    shared_slot_slack_s: float,
    write_ahead_within_s: float,
    max_calls_per_number: int | None = None,
    account_max_concurrent_calls: int | None = None,
) -> Claim:
    """Claim up to `wanted` due contacts of a running campaign within the rate limits and its
    callees' calling hours; of the limiters, `own_limiters` are the campaign's alone (its own
    cap). `max_calls_per_number`: the cap of calls per number per day across every campaign;
    `account_max_concurrent_calls`: the account's cap of calls live at once."""
    record = await executor.fetchrow(
        sql("claim_batch"),
        campaign_id,
        worker_id,
        wanted,
        lease_s,
        pace_window_s,
        [limit.name for limit in call_limiters],
        [limit.rate_per_s for limit in call_limiters],
        [limit.name for limit in request_limiters],
        [limit.rate_per_s for limit in request_limiters],
        [limit.name for limit in own_limiters],
        shared_slot_slack_s,
        write_ahead_within_s,
        max_calls_per_number,
        account_max_concurrent_calls,
    )
    assert record is not None  # claim_batch always answers one row
    contact_ids: list[int] = record["contact_ids"]
    destinations: list[str] = record["destinations"]
    request_id: int | None = record["dial_request_id"]
    caller_id: str | None = record["caller_id"]
    return Claim(
        contact_ids=contact_ids,
        destinations=destinations,
        send_at_s=record["send_at"],
        db_now_s=record["db_now"],
        request=None
        if request_id is None
        else DialRequest(request_id, contact_ids, destinations, caller_id),
        retry_at_s=record["retry_at"],
        caller_id=caller_id,
        waiting_for=record["waiting_for"],
        replied_at_s=record["replied_at"],
        served_s=record["served_s"],
    )


async def write_ahead(
    executor: Executor,
    *,
    campaign_id: int,
    worker_id: str,
    contact_ids: Sequence[int],
    lease_s: float,
) -> DialRequest | None:
    """Write the request of contacts claimed ahead of their slot; None when none may be sent
    (the campaign stopped running, or their claims were taken back)."""
    record = await executor.fetchrow(
        sql("write_ahead"), campaign_id, worker_id, list(contact_ids), lease_s
    )
    if record is None or record["dial_request_id"] is None:
        return None
    return DialRequest(
        record["dial_request_id"],
        record["contact_ids"],
        record["destinations"],
        record["caller_id"],
    )


async def fence(
    executor: Executor, *, request: DialRequest, worker_id: str, lease_s: float
) -> str | None:
    """Before a refused request is sent again: extend its lease and check that it may be (its
    campaign runs, every contact is still `sending` in it for this worker); None to send it,
    otherwise why not."""
    refusal: str | None = await executor.fetchval(
        sql("fence"), request.id, worker_id, request.contact_ids, lease_s
    )
    return refusal


async def release_claims(executor: Executor, *, contact_ids: Sequence[int], worker_id: str) -> None:
    """Give back contacts claimed (not sent) by this worker: they are pending again."""
    await executor.execute(sql("release_claims"), list(contact_ids), worker_id)


@dataclass(frozen=True, slots=True)
class ContactReply:
    """What Plivo's reply said of one contact of a request."""

    status: str  # fired, queued, or failed (an invalid number)
    request_uuid: str | None
    error: str | None


async def record_reply(
    executor: Executor,
    *,
    request: DialRequest,
    replies: Sequence[ContactReply],
    outcome: RequestOutcome,
    http_status: int,
    api_id: str | None,
    message: str,
    reply_uuids: Sequence[str],
    uuids_mapped: bool,
    sends: int,
    latency_ms: int,
    log_calls: bool = False,
) -> int | None:
    """Record Plivo's acceptance (replies in the request's contact order); the contacts
    recorded, or None when the request was settled already. `log_calls`: count the calls placed
    towards the caps of calls per number per day."""
    recorded: int | None = await executor.fetchval(
        sql("record_reply"),
        request.id,
        request.contact_ids,
        [reply.status for reply in replies],
        [reply.request_uuid for reply in replies],
        [reply.error for reply in replies],
        api_id,
        message,
        http_status,
        latency_ms,
        outcome.value,
        list(reply_uuids),
        uuids_mapped,
        sends,
        log_calls,
    )
    return recorded


@dataclass(frozen=True, slots=True)
class FailureRecorded:
    """What recording a failed request did."""

    # Contacts recorded; None when the request was settled already (nothing changed).
    recorded: int | None
    # The campaign was paused (an account problem).
    paused: bool


async def record_failure(
    executor: Executor,
    *,
    request: DialRequest,
    outcome: RequestOutcome,
    http_status: int | None,
    error: str,
    backoff_s: float,
    backoff_max_s: float,
    latency_ms: int | None,
    sends: int,
) -> FailureRecorded:
    """Record a request that failed as a whole, by its failure class (`outcome`)."""
    record = await executor.fetchrow(
        sql("record_failure"),
        request.id,
        request.contact_ids,
        outcome.value,
        http_status,
        error,
        backoff_s,
        backoff_max_s,
        latency_ms,
        sends,
    )
    assert record is not None  # record_dial_failure always answers one row
    return FailureRecorded(recorded=record["recorded"], paused=record["paused"])


async def unsend(
    executor: Executor,
    *,
    request: DialRequest,
    error: str,
    sends: int,
    latency_ms: int | None,
) -> int | None:
    """Give back a request that placed no call, its attempt uncounted; the contacts given back,
    or None when the request was settled already."""
    released: int | None = await executor.fetchval(
        sql("unsend"), request.id, request.contact_ids, error, sends, latency_ms
    )
    return released
