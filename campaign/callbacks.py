"""Plivo's ring, hangup and machine-detection callbacks: checked, parsed, recorded once.

Parsing is pure (`parse_callback`); recording is one round trip (the `record_call_event` SQL
function), idempotent because Plivo retries: the same callback twice is recorded once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter

from campaign import db, queries
from campaign.destinations import destination_of
from campaign.metrics import Metrics
from campaign.models import CallEvent, RecordResult

logger = logging.getLogger(__name__)

CALLBACK_PATHS = {"ring": "/plivo/ring", "hangup": "/plivo/hangup", "machine": "/plivo/machine"}
CAMPAIGN_PARAMETER = "campaign"
HANGUP_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "timeout", "cancel"})


class CallbackError(ValueError):
    """A callback we cannot use (no campaign, no destination); answered 400, nothing changed."""


def callback_url(public_url: str, event: str, campaign_id: int) -> str:
    """The URL a tracked campaign gives Plivo for `event` callbacks."""
    return f"{public_url}{CALLBACK_PATHS[event]}?{CAMPAIGN_PARAMETER}={campaign_id}"


def _text(payload: Mapping[str, str], key: str) -> str | None:
    value = payload.get(key, "").strip()
    return value or None


def _integer(payload: Mapping[str, str], key: str) -> int | None:
    value = _text(payload, key)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _time(payload: Mapping[str, str], key: str) -> datetime | None:
    value = _text(payload, key)
    if value is None:
        return None
    try:
        # Plivo sends times as "2020-04-08 11:34:33" in UTC (fromisoformat reads it, fast).
        return datetime.fromisoformat(value[:19]).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_callback(event: str, query: Mapping[str, str], payload: Mapping[str, str]) -> CallEvent:
    """Build a CallEvent from a callback's query string (our campaign id) and Plivo's fields."""
    campaign = query.get(CAMPAIGN_PARAMETER, "")
    if not campaign.isdigit():
        raise CallbackError(f"the callback URL has no ?{CAMPAIGN_PARAMETER}=<id>")
    to = _text(payload, "To")
    if to is None:
        raise CallbackError("the callback has no To")
    call_status = _text(payload, "CallStatus")
    if event == "hangup" and call_status not in HANGUP_STATUSES:
        raise CallbackError(f"a hangup callback with CallStatus {call_status!r}")
    machine_text = _text(payload, "Machine")
    return CallEvent(
        campaign_id=int(campaign),
        event=event,
        destination=destination_of(to),
        request_uuid=_text(payload, "RequestUUID"),
        call_uuid=_text(payload, "CallUUID"),
        call_status=call_status,
        hangup_cause=_text(payload, "HangupCause") or _text(payload, "HangupCauseName"),
        hangup_cause_code=_integer(payload, "HangupCauseCode"),
        duration_s=_integer(payload, "Duration"),
        bill_duration_s=_integer(payload, "BillDuration"),
        answered_at=_time(payload, "AnswerTime"),
        ended_at=_time(payload, "EndTime"),
        machine=None if machine_text is None else machine_text.lower() == "true",
        payload=dict(payload),
    )


class CallbackRecorder:
    """Records callbacks into the contacts table, many per round trip, counting them in metrics.

    Each callback waits for the commit that records it (Plivo is answered only once it is
    safe), but callbacks arriving together share one statement and one commit: while one batch
    is written, the next gathers, so throughput follows the arrival rate instead of the disk's
    flush time.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        *,
        max_batch: int = 200,
        writers: int = 4,
        account_capped: bool = False,
    ) -> None:
        self._pool = pool
        # Whether the account has a cap of concurrent calls (every hangup then frees a call).
        self._account_capped = account_capped
        self._metrics = metrics
        self._max_batch = max_batch
        self._max_writers = writers
        self._waiting: list[tuple[CallEvent, asyncio.Future[RecordResult]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        # The labelled counters, looked up once each: this runs thousands of times a second.
        self._counters: dict[tuple[str, RecordResult], Counter] = {}

    async def record(self, event: CallEvent) -> RecordResult:
        """Record one callback; UNKNOWN (nothing changed) when it matches no contact's call."""
        future: asyncio.Future[RecordResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        # Several batches may be written at once, on their own connections; each writer takes
        # what has gathered since the last one started.
        if len(self._writers) < self._max_writers:
            writer = asyncio.create_task(self._write_batches())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        result = await future
        counter = self._counters.get((event.event, result))
        if counter is None:
            counter = self._metrics.callbacks.labels(event.event, result.value)
            self._counters[(event.event, result)] = counter
        counter.inc()
        if result == RecordResult.REDIAL:
            self._metrics.redials.inc()
        if result == RecordResult.UNKNOWN:
            logger.warning(
                "%s callback for an unknown call (campaign %d, request_uuid %s): ignored",
                event.event,
                event.campaign_id,
                event.request_uuid,
            )
        return result

    async def _write_batches(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                results = await self._write([event for event, _ in batch])
            except db.DATABASE_ERRORS:
                # One bad callback (or a deadlock with another process) must not fail the
                # others: write them one by one, each failing alone.
                for event, future in batch:
                    try:
                        (result,) = await self._write([event])
                    except db.DATABASE_ERRORS as error:
                        if not future.done():
                            future.set_exception(error)
                        continue
                    if not future.done():
                        future.set_result(result)
                continue
            for (_event, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _write(self, events: list[CallEvent]) -> list[RecordResult]:
        # Contacts are locked in (campaign, destination) order, so that two processes writing
        # overlapping batches cannot deadlock.
        order = sorted(
            range(len(events)), key=lambda i: (events[i].campaign_id, events[i].destination)
        )
        recorded = await queries.record_call_events(
            self._pool, [events[i] for i in order], account_capped=self._account_capped
        )
        results: list[RecordResult] = [RecordResult.UNKNOWN] * len(events)
        for position, result in zip(order, recorded, strict=True):
            results[position] = result
        return results
