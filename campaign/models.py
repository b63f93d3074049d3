"""Domain types. The enums mirror the CHECK constraints of sql/schema.sql one to one (a test
compares them with the database's catalog)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any, NamedTuple

from campaign.callerids import PoolNumber
from campaign.callparams import CAMPAIGN_CALL_PARAMETER_NAMES
from campaign.voice import VoiceContent


class CampaignStatus(StrEnum):
    """Where a campaign stands; only `running` campaigns are dialled."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class ContactStatus(StrEnum):
    """Where a contact stands in its current dial attempt."""

    PENDING = "pending"  # waiting to be dialled (at next_attempt_at)
    CLAIMED = "claimed"  # taken by a worker, not sent yet
    SENDING = "sending"  # in a request whose reply is not recorded yet
    FIRED = "fired"  # Plivo answered "call fired"
    QUEUED = "queued"  # Plivo answered "call queued" (over the account's CPS; it dials later)
    FAILED = "failed"  # rejected, invalid, or out of attempts
    UNKNOWN = "unknown"  # the request's fate is unknown; never re-sent without reconciling
    CANCELLED = "cancelled"  # the campaign was cancelled before this contact was dialled
    SUPPRESSED = "suppressed"  # on a suppression list the campaign honours: never dialled
    EXPIRED = "expired"  # not dialled by the campaign's end_at


CONTACT_STATUSES: tuple[str, ...] = tuple(status.value for status in ContactStatus)


class RequestOutcome(StrEnum):
    """How a Make-a-call request ended (dial_requests.outcome; NULL while in flight)."""

    FIRED = "fired"  # Plivo answered "call fired"
    QUEUED = "queued"  # Plivo answered "call queued"
    NOT_SENT = "not_sent"  # certainly not placed: retried, given up, or never sent
    ACCOUNT_PROBLEM = "account_problem"  # 401/403/404: the campaign is paused
    REJECTED = "rejected"  # Plivo refused the request as built
    UNKNOWN = "unknown"  # Plivo may have placed the calls; reconcile before dialling again


class CallStatus(StrEnum):
    """What the callbacks (or `campaign reconcile`) told of a contact's latest call."""

    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCEL = "cancel"


class CallbackEvent(StrEnum):
    """Which of Plivo's callbacks a call event came from (call_events.event)."""

    RING = "ring"
    HANGUP = "hangup"
    MACHINE = "machine"


class Limit(NamedTuple):
    """One rate limiter of the database's rate_limiters (campaign/ratelimit.py names them)."""

    name: str
    rate_per_s: float


@dataclass(frozen=True, slots=True)
class DialRequest:
    """A request written ahead: its id, and its contacts with their destinations in the order
    they are sent in (one `to`, `<`-joined)."""

    id: int
    contact_ids: list[int]
    destinations: list[str]
    # The `from` it is sent with (a caller ID of the campaign's pool); None: the campaign's.
    caller_id: str | None = None


# A range of times of day [start, end); end None: up to midnight (24:00, which Python's time
# cannot hold).
TimeRange = tuple[time, time | None]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a campaign's calls may be placed: hours and days in each callee's local time, dates
    skipped, and the campaign's start and end (instants). The defaults: any time."""

    # None: any time of day.
    calling_hours: tuple[TimeRange, ...] | None = None
    # None: every day; else some of WEEKDAYS.
    calling_days: tuple[str, ...] | None = None
    skip_dates: tuple[date, ...] = ()
    start_at: datetime | None = None
    end_at: datetime | None = None

    @property
    def has_local_rules(self) -> bool:
        """Whether any rule is in the callee's local time (so contacts need time zones)."""
        return (
            self.calling_hours is not None or self.calling_days is not None or bool(self.skip_dates)
        )

    def hours_text(self) -> str:
        """The calling hours as the CLI takes them: `08:00-21:00`, or `any`."""
        if self.calling_hours is None:
            return "any"
        return ",".join(
            f"{start:%H:%M}-{'24:00' if end is None else format(end, '%H:%M')}"
            for start, end in self.calling_hours
        )

    def describe(self) -> str:
        """`08:00-21:00 in each callee's local time, on mon,fri, from … until …`: one line."""
        if self.calling_hours is None and self.calling_days is None:
            parts = ["at any hour"]
        else:
            parts = [f"{self.hours_text()} in each callee's local time"]
        if self.calling_days is not None:
            parts.append("on " + ",".join(self.calling_days))
        if self.skip_dates:
            parts.append("except " + ",".join(day.isoformat() for day in self.skip_dates))
        if self.start_at is not None:
            parts.append(f"from {self.start_at.isoformat()}")
        if self.end_at is not None:
            parts.append(f"until {self.end_at.isoformat()}")
        return ", ".join(parts)

    def as_json(self) -> dict[str, object]:
        return {
            "calling_hours": self.hours_text(),
            "calling_days": None if self.calling_days is None else list(self.calling_days),
            "skip_dates": [day.isoformat() for day in self.skip_dates],
            "start_at": None if self.start_at is None else self.start_at.isoformat(),
            "end_at": None if self.end_at is None else self.end_at.isoformat(),
        }

    @classmethod
    def from_record(cls, record: Any) -> Schedule:
        """Build from a `campaigns` row (its timemultirange as asyncpg's Ranges)."""
        hours = record["calling_hours"]
        days = record["calling_days"]
        return cls(
            calling_hours=None
            if hours is None
            else tuple((part.lower or time(0), part.upper) for part in hours),
            calling_days=None if days is None else tuple(days),
            skip_dates=tuple(record["skip_dates"]),
            start_at=record["start_at"],
            end_at=record["end_at"],
        )


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """A campaign's schedule, and when the window of the first of its pending contacts that
    wait for theirs next opens (None: none waits, or not in the next 15 days)."""

    schedule: Schedule
    next_opening: datetime | None

    def line(self, waiting: int) -> str:
        """`calls placed 08:00-21:00 …; 12 contacts wait for their window, next opening …`."""
        text = f"calls placed {self.schedule.describe()}"
        if waiting:
            text += f"; {waiting:,} pending wait for their calling window"
            if self.next_opening is not None:
                text += f", the next opens {self.next_opening.isoformat(timespec='minutes')}"
        return text


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a campaign is paced now: its priority, rate and batch size, its calls live against
    the caps of concurrent calls, and its caller IDs with their calls in the last day."""

    priority: int
    calls_per_second: float | None
    batch_size: int
    max_concurrent_calls: int | None
    live_calls: int
    # The account's cap and its calls live (every campaign's), when it has one.
    account_max_concurrent_calls: int | None
    account_live_calls: int
    caller_id_mode: str | None
    caller_ids: tuple[tuple[str, int], ...]

    def line(self) -> str:
        """`priority 0, 5 calls per second, batches of 100; 3 of 20 calls live; …`."""
        rate = (
            "the account's calls per second"
            if self.calls_per_second is None
            else f"{self.calls_per_second:g} calls per second"
        )
        parts = [f"pacing: priority {self.priority}, {rate}, batches of {self.batch_size}"]
        if self.max_concurrent_calls is not None:
            parts.append(f"{self.live_calls:,} of {self.max_concurrent_calls:,} calls live")
        if self.account_max_concurrent_calls is not None:
            parts.append(
                f"account {self.account_live_calls:,} of "
                f"{self.account_max_concurrent_calls:,} calls live"
            )
        if self.caller_ids:
            numbers = ", ".join(f"{number} ({calls:,})" for number, calls in self.caller_ids)
            parts.append(f"caller IDs ({self.caller_id_mode}, calls in the last day): {numbers}")
        return "; ".join(parts)

    def as_json(self) -> dict[str, object]:
        return {
            "priority": self.priority,
            "calls_per_second": self.calls_per_second,
            "batch_size": self.batch_size,
            "max_concurrent_calls": self.max_concurrent_calls,
            "live_calls": self.live_calls,
            "account_max_concurrent_calls": self.account_max_concurrent_calls,
            "account_live_calls": self.account_live_calls,
            "caller_id_mode": self.caller_id_mode,
            "caller_ids": [
                {"number": number, "calls_in_a_day": calls} for number, calls in self.caller_ids
            ],
        }


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What a new campaign is made of: its name, caller ID, call parameters and dialing settings."""

    name: str
    from_number: str
    answer_url: str
    call_parameters: dict[str, object] = field(default_factory=dict)
    calls_per_second: float | None = None
    batch_size: int = 100
    max_attempts: int = 3
    status: CampaignStatus = CampaignStatus.RUNNING
    # Final call statuses dialled again, and the delays before attempt 2, 3, … (last repeats).
    redial_on: tuple[str, ...] = ()
    redial_delays_s: tuple[int, ...] = ()
    # Point ring/hangup (and machine detection) callbacks at this engine, served at this URL.
    track_calls_at: str | None = None
    # When calls may be placed (the CLI's default: 08:00-21:00 in each callee's local time).
    schedule: Schedule = field(default_factory=Schedule)
    # The time zone of contacts whose number tells none; the lists the campaign honours; its
    # cap of calls per number per day.
    default_time_zone: str | None = None
    suppression_lists: tuple[str, ...] = ("default",)
    max_calls_per_number_per_day: int | None = None
    # Higher first; the cap of calls live at once (needs track_calls).
    priority: int = 0
    max_concurrent_calls: int | None = None
    # A pool of caller IDs (empty: `from_number` alone), how they are used, and their limits.
    caller_ids: tuple[PoolNumber, ...] = ()
    caller_id_mode: str | None = None
    calls_per_second_per_caller_id: float | None = None
    max_calls_per_caller_id_per_day: int | None = None
    # What the call says; with content to serve, answer_url is the engine's (at this URL).
    content: VoiceContent = field(default_factory=VoiceContent)
    serve_answers_at: str | None = None
    # Where its events go (a checked URL; campaign/webhooks): None, none are written.
    webhook_url: str | None = None


def content_from_record(record: Any) -> VoiceContent:
    """A campaign's content from its `campaigns` row (its jsonb columns decoded: db.py)."""
    return VoiceContent(
        message=record["message"],
        voice=record["voice"],
        language=record["language"],
        play_url=record["play_url"],
        play_after_url=record["play_after_url"],
        answer_template=record["answer_template"],
        gather=dict(record["gather"] or {}),
        gather_prompt=record["gather_prompt"],
        gather_timeout_s=record["gather_timeout_s"],
        gather_retries=record["gather_retries"],
        after_keypress=dict(record["after_keypress"] or {}),
        on_machine=record["on_machine"],
        voicemail_message=record["voicemail_message"],
    )


@dataclass(frozen=True, slots=True)
class Campaign:
    """A stored campaign."""

    id: int
    name: str
    status: CampaignStatus
    from_number: str
    answer_url: str
    call_parameters: dict[str, object]
    calls_per_second: float | None
    batch_size: int
    max_attempts: int
    status_reason: str | None
    created_at: datetime
    redial_on: tuple[str, ...] = ()
    redial_delays_s: tuple[int, ...] = ()
    track_calls: bool = False
    schedule: Schedule = field(default_factory=Schedule)
    default_time_zone: str | None = None
    suppression_lists: tuple[str, ...] = ("default",)
    max_calls_per_number_per_day: int | None = None
    # Higher first (dial_demand); calls live at once, at most (None: no cap of its own).
    priority: int = 0
    max_concurrent_calls: int | None = None
    # With a pool of caller IDs: "rotate" or "local" (None: "from" alone).
    caller_id_mode: str | None = None
    calls_per_second_per_caller_id: float | None = None
    max_calls_per_caller_id_per_day: int | None = None
    # What the call says when the engine serves the answer XML.
    content: VoiceContent = field(default_factory=VoiceContent)

    @classmethod
    def from_record(cls, record: Any) -> Campaign:
        """Build from a `campaigns` row."""
        return cls(
            id=record["id"],
            name=record["name"],
            status=CampaignStatus(record["status"]),
            from_number=record["from"],
            answer_url=record["answer_url"],
            call_parameters={
                name: record[name]
                for name in CAMPAIGN_CALL_PARAMETER_NAMES
                if name != "answer_url" and record[name] is not None
            },
            calls_per_second=record["calls_per_second"],
            batch_size=record["batch_size"],
            max_attempts=record["max_attempts"],
            status_reason=record["status_reason"],
            created_at=record["created_at"],
            redial_on=tuple(record["redial_on"]),
            redial_delays_s=tuple(record["redial_delays_s"]),
            track_calls=record["track_calls"],
            schedule=Schedule.from_record(record),
            default_time_zone=record["default_time_zone"],
            suppression_lists=tuple(record["suppression_lists"]),
            max_calls_per_number_per_day=record["max_calls_per_number_per_day"],
            priority=record["priority"],
            max_concurrent_calls=record["max_concurrent_calls"],
            caller_id_mode=record["caller_id_mode"],
            calls_per_second_per_caller_id=record["calls_per_second_per_caller_id"],
            max_calls_per_caller_id_per_day=record["max_calls_per_caller_id_per_day"],
            content=content_from_record(record),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """One row of the `campaign_progress` view."""

    campaign_id: int
    campaign: str
    status: CampaignStatus
    total: int
    counts: dict[str, int]
    created_at: datetime
    # How the calls of settled (fired or queued) contacts ended, as the hangup callbacks said.
    answered: int = 0
    busy: int = 0
    no_answer: int = 0
    call_failed: int = 0
    timeout: int = 0
    # answered / calls that ended; None until one has.
    answer_rate: float | None = None
    # Pending contacts due now whose calling window is closed.
    waiting_for_window: int = 0
    # Keypresses by meaning.
    responses: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Any) -> Progress:
        """Build from a `campaign_progress` row."""
        return cls(
            campaign_id=record["campaign_id"],
            campaign=record["campaign"],
            status=CampaignStatus(record["status"]),
            total=record["total"],
            counts={status: record[status] for status in CONTACT_STATUSES},
            created_at=record["created_at"],
            answered=record["answered"],
            busy=record["busy"],
            no_answer=record["no_answer"],
            call_failed=record["call_failed"],
            timeout=record["timeout"],
            answer_rate=record["answer_rate"],
            waiting_for_window=record["waiting_for_window"],
            responses=dict(record["responses"] or {}),
        )

    @property
    def calls_ended(self) -> int:
        """Calls whose hangup said how they ended (the answer rate's denominator)."""
        return self.answered + self.busy + self.no_answer + self.call_failed + self.timeout

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict, as `campaign status --json` prints it."""
        return {
            "campaign_id": self.campaign_id,
            "campaign": self.campaign,
            "status": self.status.value,
            "total": self.total,
            **self.counts,
            "created_at": self.created_at.isoformat(),
            "answered": self.answered,
            "busy": self.busy,
            "no_answer": self.no_answer,
            "call_failed": self.call_failed,
            "timeout": self.timeout,
            "answer_rate": self.answer_rate,
            "waiting_for_window": self.waiting_for_window,
            "responses": self.responses,
        }

    def responses_line(self) -> str | None:
        """`responses: confirmed 12, cancelled 3, opt-out 1`; None when no key was pressed."""
        if not self.responses:
            return None
        counts = sorted(self.responses.items(), key=lambda item: (-item[1], item[0]))
        return "responses: " + ", ".join(f"{meaning} {count:,}" for meaning, count in counts)


class RecordResult(StrEnum):
    """What recording a callback did."""

    RECORDED = "recorded"
    REDIAL = "redial"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One callback, reduced to what the contacts table records."""

    campaign_id: int
    event: str
    destination: str
    request_uuid: str | None
    call_uuid: str | None
    call_status: str | None
    hangup_cause: str | None
    hangup_cause_code: int | None
    duration_s: int | None
    bill_duration_s: int | None
    answered_at: datetime | None
    ended_at: datetime | None
    machine: bool | None
    payload: dict[str, str]

    @property
    def dedupe_key(self) -> str:
        """Equal for a callback and Plivo's retries of it, different for any other callback."""
        # Lengths before each part, so that no two different payloads make the same string.
        canonical = "".join(
            f"{len(key)}:{key}{len(value)}:{value}" for key, value in sorted(self.payload.items())
        )
        return hashlib.sha256(f"{self.event}|{canonical}".encode()).hexdigest()


class RedialableCallStatus(StrEnum):
    """A final call status a campaign may dial again (the CHECK on campaigns.redial_on)."""

    BUSY = "busy"
    NO_ANSWER = "no-answer"
    TIMEOUT = "timeout"
    FAILED = "failed"
    # Not a call status: the call an answering machine took (contacts.machine).
    MACHINE = "machine"


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """An endpoint's health as /metrics shows it."""

    endpoint_id: int
    disabled: bool
    # How long it has failed without a success; None: it has not.
    failing_s: float | None
    pending: int
    failed: int
