"""A faithful fake Plivo Voice API for tests, demos and benchmarks.

It checks what Plivo checks (credentials, JSON body, every Make-a-call parameter rule, at most
1000 destinations, `from` not among them), keeps Plivo's account limits (calls per second, over
which calls are queued; 300 API requests per 5 s, over which it answers 429), plays each call
out (ring, answer, hangup) with V3-signed callbacks, answers the look-ups and the cancel of a
queued call, and injects faults at configured rates. Everything it did is kept in a ledger that
a test reads in-process or over HTTP at `GET /__simulator__/ledger`, a path Plivo does not use.

It stays cheap per request so that a benchmark can push tens of thousands of destinations a
second through it: a call's life is computed when it is placed, not played out by a task, unless
callbacks are on.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import ipaddress
import itertools
import json
import math
import random
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from campaign.callparams import CallParameterError, validate_call_parameters
from campaign.signature import (
    SIGNATURE_V3_HEADER,
    SIGNATURE_V3_NONCE_HEADER,
    compute_signature_v3,
    new_nonce,
)

MAX_DESTINATIONS_PER_REQUEST = 1000
LEDGER_PATH = "/__simulator__/ledger"
CDR_PAGE_MAX_LIMIT = 20
OUTCOMES = ("completed", "busy", "no-answer", "failed", "timeout")
# (HangupCause, HangupCauseCode) per outcome. 4000 is Plivo's documented normal hangup; the
# other codes are the simulator's own picks in Plivo's ranges, names as Plivo's docs spell them.
HANGUP_CAUSES: Mapping[str, tuple[str, int]] = {
    "completed": ("NORMAL_CLEARING", 4000),
    "busy": ("USER_BUSY", 3010),
    "no-answer": ("NO_ANSWER", 3000),
    "failed": ("UNALLOCATED_NUMBER", 2010),
    "timeout": ("RECOVERY_ON_TIMER_EXPIRE", 3020),
}
FAULTS = ("unavailable", "rate_limited", "error_after_placing", "hang_after_placing")
FAULTS_ALL = (*FAULTS, "reset_after_placing")

NUMBER_PATTERN = re.compile(r"^\+?[1-9][0-9]{6,14}$")
SIP_URI_PATTERN = re.compile(r"^sip:[^@\s<>]+@[^@\s<>]+$")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class _CallbackRefused(Exception):
    """A callback the simulator will not send."""


def is_loopback_url(url: str) -> bool:
    """Whether a URL's host is this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_valid_destination(destination: str) -> bool:
    """A number with its country code (E.164, `+` optional) or a SIP URI."""
    return bool(NUMBER_PATTERN.match(destination) or SIP_URI_PATTERN.match(destination))


def _bare(number: str) -> str:
    return number.removeprefix("+")


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the fake Plivo behaves. Rates are probabilities per Make-a-call request."""

    auth_id: str = "MASIMULATOR000000000"
    auth_token: str = field(default="simulator-auth-token", repr=False)
    calls_per_second: float = 2.0
    requests_per_window: int = 300
    request_window_s: float = 5.0
    # Relative shares of the call outcomes; normalised, so (1, 1, 0, 0, 0) is half and half.
    outcome_shares: Mapping[str, float] = field(
        default_factory=lambda: {
            "completed": 0.7,
            "busy": 0.1,
            "no-answer": 0.1,
            "failed": 0.05,
            "timeout": 0.05,
        }
    )
    # A call's timing: dial to ringing, ringing to answer (or to giving up), answer to hangup.
    ring_after_s: float = 0.005
    answer_after_s: float = 0.005
    talk_s: float = 0.01
    send_callbacks: bool = True
    # Of answered calls that asked for machine detection, the share a machine answers.
    machine_share: float = 0.2
    # Callbacks go only to loopback hosts unless this is set.
    callbacks_to_any_host: bool = False
    callback_timeout_s: float = 5.0
    # Faults, each with its own rate; at most one fault per request.
    unavailable_rate: float = 0.0
    rate_limited_rate: float = 0.0
    error_after_placing_rate: float = 0.0
    hang_after_placing_rate: float = 0.0
    reset_after_placing_rate: float = 0.0
    # Stop injecting faults after this many (None: never stop); handy for "fails twice, then ok".
    fault_budget: int | None = None
    hang_s: float = 60.0
    # Retry-After of an injected 429 (None: no header, as Plivo documents none).
    retry_after_s: float | None = 1.0
    latency_s: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        rates = {
            "unavailable_rate": self.unavailable_rate,
            "rate_limited_rate": self.rate_limited_rate,
            "error_after_placing_rate": self.error_after_placing_rate,
            "hang_after_placing_rate": self.hang_after_placing_rate,
            "reset_after_placing_rate": self.reset_after_placing_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("the fault rates must add up to at most 1")
        if self.calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        if self.requests_per_window < 1 or self.request_window_s <= 0:
            raise ValueError("requests_per_window and request_window_s must be positive")
        unknown = set(self.outcome_shares) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}; known: {', '.join(OUTCOMES)}")
        shares = list(self.outcome_shares.values())
        if any(share < 0 for share in shares) or sum(shares) <= 0:
            raise ValueError("outcome shares must be non-negative and not all zero")
        for name in ("ring_after_s", "answer_after_s", "talk_s", "hang_s", "latency_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


# --- the ledger ----------------------------------------------------------------------------------


@dataclass(slots=True)
class SimulatedCall:
    """One destination of an accepted Make-a-call request and the life it will have."""

    request_uuid: str
    call_uuid: str
    destination: str
    from_number: str
    request_sequence: int
    accepted_at: float
    dial_at: float
    outcome: str
    queued: bool
    parameters: Mapping[str, object] = field(repr=False)
    ring_after_s: float = 0.0
    answer_after_s: float = 0.0
    talk_s: float = 0.0
    cancelled: bool = False
    # Answered by a machine (only drawn when the request asked for machine detection).
    machine: bool = False

    @property
    def ring_at(self) -> float:
        return self.dial_at + self.ring_after_s

    @property
    def answer_at(self) -> float | None:
        """When the callee answers; None unless the outcome is `completed`."""
        if self.outcome != "completed":
            return None
        return self.ring_at + self.answer_after_s

    @property
    def end_at(self) -> float:
        """When the call ends: after the talk, or when ringing gives up (busy, no answer, …)."""
        answered = self.answer_at
        if answered is not None:
            return answered + self.talk_s
        return self.ring_at + self.answer_after_s


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One API request the simulator answered."""

    sequence: int
    received_at: float
    method: str
    path: str
    http_status: int
    destinations: int
    fault: str | None


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    """One callback the simulator sent (or failed to send)."""

    event: str
    url: str
    method: str
    call_uuid: str
    request_uuid: str
    sent_at: float
    http_status: int | None
    error: str | None


@dataclass(slots=True)
class Ledger:
    """Everything the simulator did, in order: dials, requests, callbacks, cancels."""

    dials: list[SimulatedCall] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    callbacks: list[CallbackRecord] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def make_call_requests(self) -> list[RequestRecord]:
        """The Make-a-call requests (any outcome), in arrival order."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Call/")]

    def dial_counts(self) -> Counter[str]:
        """How many times each destination was dialled."""
        return Counter(call.destination for call in self.dials)

    def calls_per_second(self) -> dict[int, int]:
        """Dials per whole second of the clock (epoch seconds → count)."""
        return dict(Counter(int(call.dial_at) for call in self.dials))

    def requests_per_window(self, window_s: float = 5.0) -> dict[float, int]:
        """API requests per window of `window_s` (window start → count)."""
        return dict(
            Counter(
                math.floor(r.received_at / window_s) * window_s
                for r in self.requests
                if r.path.startswith("/v1/")
            )
        )

    def summary(self, window_s: float = 5.0) -> dict[str, Any]:
        """The counts and rates, without the per-destination lists."""
        per_second = self.calls_per_second()
        per_window = self.requests_per_window(window_s)
        return {
            "dials": len(self.dials),
            "requests": len(self.requests),
            "callbacks": len(self.callbacks),
            "cancelled": len(self.cancelled),
            "calls_per_second": {str(k): v for k, v in sorted(per_second.items())},
            "max_calls_per_second": max(per_second.values(), default=0),
            "requests_per_window": {format(k, "g"): v for k, v in sorted(per_window.items())},
            "request_window_s": window_s,
        }

    def to_json(self, window_s: float = 5.0) -> dict[str, Any]:
        """The whole ledger as JSON-ready data (the `GET /__simulator__/ledger` body)."""
        return {
            **self.summary(window_s),
            "dials": [
                {
                    "request_uuid": call.request_uuid,
                    "call_uuid": call.call_uuid,
                    "destination": call.destination,
                    "dialled_at": call.dial_at,
                    "queued": call.queued,
                    "request_sequence": call.request_sequence,
                    "outcome": call.outcome,
                }
                for call in self.dials
            ],
            "requests": [
                {
                    "sequence": r.sequence,
                    "received_at": r.received_at,
                    "method": r.method,
                    "path": r.path,
                    "http_status": r.http_status,
                    "destinations": r.destinations,
                    "fault": r.fault,
                }
                for r in self.requests
            ],
            "callbacks": [
                {
                    "event": c.event,
                    "url": c.url,
                    "method": c.method,
                    "call_uuid": c.call_uuid,
                    "request_uuid": c.request_uuid,
                    "sent_at": c.sent_at,
                    "http_status": c.http_status,
                    "error": c.error,
                }
                for c in self.callbacks
            ],
            "cancelled": list(self.cancelled),
        }


# --- the fake Plivo ------------------------------------------------------------------------------


class _Rejected(Exception):
    """A request the simulator answers with an error status and a Plivo-style body."""

    def __init__(self, http_status: int, error: str, headers: Mapping[str, str] | None = None):
        super().__init__(error)
        self.http_status = http_status
        self.error = error
        self.headers = dict(headers or {})


def _format_time(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).strftime(TIME_FORMAT)


class PlivoSimulator:
    """The fake account: its limits, calls, queue, faults and ledger. Serve it with `create_app`."""

    def __init__(
        self, config: SimulatorConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config or SimulatorConfig()
        self._clock = clock
        self._random = random.Random(self._config.seed)
        self.ledger = Ledger()
        self._sequence = itertools.count(1)
        self._faults_injected = 0
        # The latest calls-per-second slot handed out (maybe in the future) and its dials.
        self._slot_start_s = -math.inf
        self._slot_used = 0
        self._recent_requests: deque[float] = deque()
        # Queued calls by request_uuid, and their dial times in a heap (lazily cleaned).
        self._queue: dict[str, SimulatedCall] = {}
        self._queue_heap: list[tuple[float, int, str]] = []
        self._calls_by_call_uuid: dict[str, SimulatedCall] = {}
        self._calls_by_destination: dict[str, list[SimulatedCall]] = {}
        self._callback_tasks: set[asyncio.Task[None]] = set()
        self._callback_session: aiohttp.ClientSession | None = None
        self._outcome_names: list[str] = []
        self._outcome_cumulative: list[float] = []
        self._set_outcome_shares()

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    def reconfigure(self, **changes: Any) -> None:
        """Change the behaviour mid-run (e.g. stop a fault); the ledger and queue are kept."""
        self._config = replace(self._config, **changes)
        self._set_outcome_shares()

    def _set_outcome_shares(self) -> None:
        names = [name for name in OUTCOMES if self._config.outcome_shares.get(name, 0) > 0]
        total = sum(self._config.outcome_shares[name] for name in names)
        self._outcome_names = names
        self._outcome_cumulative = list(
            itertools.accumulate(self._config.outcome_shares[name] / total for name in names)
        )

    # --- limits and bookkeeping ---

    def _uuid(self) -> str:
        # From the seeded generator, so a seeded run hands out the same uuids every time.
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _draw_outcome(self) -> str:
        index = bisect.bisect_left(self._outcome_cumulative, self._random.random())
        return self._outcome_names[min(index, len(self._outcome_names) - 1)]

    def _dial_slot(self, now: float) -> float:
        """When the next call may be dialled under the account's calls per second.

        Slots are whole seconds of the clock (or 1/cps seconds when cps < 1), each holding at
        most `calls_per_second` dials, so the ledger's per-second counts never exceed the limit.
        A call that does not fit is promised the first slot with room (it is queued until then).
        """
        cps = self._config.calls_per_second
        window_s = max(1.0, 1.0 / cps)
        capacity = max(1, math.floor(cps * window_s))
        current = math.floor(now / window_s) * window_s
        if self._slot_start_s < current:
            self._slot_start_s, self._slot_used = current, 0
        if self._slot_used >= capacity:
            self._slot_start_s += window_s
            self._slot_used = 0
        self._slot_used += 1
        return max(now, self._slot_start_s)

    def _over_request_rate(self, now: float) -> float | None:
        """Seconds until a request is allowed again, or None when this one is within the rate."""
        window = self._recent_requests
        while window and window[0] <= now - self._config.request_window_s:
            window.popleft()
        if len(window) >= self._config.requests_per_window:
            return window[0] + self._config.request_window_s - now
        window.append(now)
        return None

    def promote_due_calls(self) -> None:
        """Dial the queued calls whose slot has come (they enter the ledger then)."""
        now = self._clock()
        heap = self._queue_heap
        while heap and heap[0][0] <= now:
            _, _, request_uuid = heapq.heappop(heap)
            call = self._queue.pop(request_uuid, None)
            if call is not None:
                self.ledger.dials.append(call)

    def queued_request_uuids(self) -> list[str]:
        """The request_uuids still waiting for a CPS slot."""
        self.promote_due_calls()
        return list(self._queue)

    def _draw_fault(self) -> str | None:
        config = self._config
        rates = (
            ("unavailable", config.unavailable_rate),
            ("rate_limited", config.rate_limited_rate),
            ("error_after_placing", config.error_after_placing_rate),
            ("hang_after_placing", config.hang_after_placing_rate),
            ("reset_after_placing", config.reset_after_placing_rate),
        )
        if not any(rate for _, rate in rates):
            return None
        if config.fault_budget is not None and self._faults_injected >= config.fault_budget:
            return None
        draw = self._random.random()
        for name, rate in rates:
            if draw < rate:
                self._faults_injected += 1
                return name
            draw -= rate
        return None

    def _record(
        self,
        sequence: int,
        received_at: float,
        request: web.Request,
        http_status: int,
        destinations: int = 0,
        fault: str | None = None,
    ) -> None:
        self.ledger.requests.append(
            RequestRecord(
                sequence=sequence,
                received_at=received_at,
                method=request.method,
                path=request.path,
                http_status=http_status,
                destinations=destinations,
                fault=fault,
            )
        )

    def _check_account(self, request: web.Request, now: float) -> None:
        """Credentials (401), the auth id in the path (404), the API rate (429)."""
        header = request.headers.get("Authorization", "")
        try:
            credentials = aiohttp.BasicAuth.decode(header) if header else None
        except ValueError:
            credentials = None
        if (
            credentials is None
            or credentials.login != self._config.auth_id
            or credentials.password != self._config.auth_token
        ):
            raise _Rejected(401, "Authentication credentials invalid")
        if request.match_info.get("auth_id") != self._config.auth_id:
            raise _Rejected(404, "Resource not found")
        wait_s = self._over_request_rate(now)
        if wait_s is not None:
            raise _Rejected(
                429,
                "Too many requests",
                {"Retry-After": str(max(1, math.ceil(wait_s)))},
            )

    # --- Make a call ---

    async def _read_make_call(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise _Rejected(400, "Content-Type must be application/json")
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise _Rejected(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _Rejected(400, "Request body must be a JSON object")
        return body

    def _validate_make_call(self, body: dict[str, Any]) -> tuple[str, list[str], list[str]]:
        """Plivo's checks; returns `from`, the valid and the invalid destinations in `to` order."""
        for required in ("from", "to", "answer_url"):
            value = body.get(required)
            if value is None or value == "":
                raise _Rejected(400, f"{required} parameter is missing")
        from_number, to = body["from"], body["to"]
        if not isinstance(from_number, str) or not NUMBER_PATTERN.match(from_number):
            raise _Rejected(400, "from parameter is not a valid number")
        if not isinstance(to, str):
            raise _Rejected(400, "to parameter must be text, destinations separated by <")
        try:
            validate_call_parameters(body)
        except CallParameterError as error:
            raise _Rejected(400, f"invalid {error.parameter}: {error.message}") from None
        destinations = to.split("<")
        if len(destinations) > MAX_DESTINATIONS_PER_REQUEST:
            raise _Rejected(
                400,
                f"too many destinations: {len(destinations)}, at most "
                f"{MAX_DESTINATIONS_PER_REQUEST} per request",
            )
        bulk = len(destinations) > 1
        if bulk and body.get("parent_call_uuid"):
            raise _Rejected(400, "parent_call_uuid cannot be used with bulk calls")
        seen: set[str] = set()
        valid: list[str] = []
        invalid: list[str] = []
        bare_from = _bare(from_number)
        for destination in destinations:
            key = _bare(destination)
            if key in seen:
                raise _Rejected(400, f"duplicate destination {destination} in to")
            seen.add(key)
            if key == bare_from:
                raise _Rejected(400, "from number cannot be one of the destinations")
            (valid if is_valid_destination(destination) else invalid).append(destination)
        if not valid:
            raise _Rejected(400, "to parameter has no valid destination")
        return from_number, valid, invalid

    def _place_calls(
        self,
        sequence: int,
        now: float,
        from_number: str,
        destinations: list[str],
        parameters: Mapping[str, object],
    ) -> list[SimulatedCall]:
        config = self._config
        calls = []
        for destination in destinations:
            dial_at = self._dial_slot(now)
            queued = dial_at > now
            call = SimulatedCall(
                request_uuid=self._uuid(),
                call_uuid=self._uuid(),
                destination=destination,
                from_number=from_number,
                request_sequence=sequence,
                accepted_at=now,
                dial_at=dial_at,
                outcome=self._draw_outcome(),
                machine=bool(parameters.get("machine_detection"))
                and self._random.random() < config.machine_share,
                queued=queued,
                parameters=parameters,
                ring_after_s=config.ring_after_s,
                answer_after_s=config.answer_after_s,
                talk_s=config.talk_s,
            )
            calls.append(call)
            self._calls_by_call_uuid[call.call_uuid] = call
            self._calls_by_destination.setdefault(destination, []).append(call)
            if queued:
                self._queue[call.request_uuid] = call
                heapq.heappush(self._queue_heap, (dial_at, sequence, call.request_uuid))
            else:
                self.ledger.dials.append(call)
        if config.send_callbacks:
            for call in calls:
                task = asyncio.create_task(self._play_call(call))
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_tasks.discard)
        return calls

    async def handle_make_call(self, request: web.Request) -> web.StreamResponse:
        # The request is decided as it arrives (Plivo counts calls then), and the reply waits
        # the added latency: sleeping first would let requests overtake each other.
        response = await self._make_call(request)
        if self._config.latency_s:
            await asyncio.sleep(self._config.latency_s)
        return response

    async def _make_call(self, request: web.Request) -> web.StreamResponse:
        sequence = next(self._sequence)
        now = self._clock()
        self.promote_due_calls()
        fault: str | None = None
        try:
            self._check_account(request, now)
            fault = self._draw_fault()
            if fault == "unavailable":
                raise _Rejected(503, "Service unavailable")
            if fault == "rate_limited":
                retry_after = self._config.retry_after_s
                headers = {} if retry_after is None else {"Retry-After": format(retry_after, "g")}
                raise _Rejected(429, "Too many requests", headers)
            body = await self._read_make_call(request)
            from_number, valid, invalid = self._validate_make_call(body)
        except _Rejected as rejected:
            self._record(sequence, now, request, rejected.http_status, fault=fault)
            return self._error(rejected)
        parameters = {k: v for k, v in body.items() if k not in ("from", "to")}
        calls = self._place_calls(sequence, now, from_number, valid, parameters)
        queued = any(call.queued for call in calls)
        bulk = len(valid) + len(invalid) > 1
        reply: dict[str, Any] = {
            "message": f"{'calls' if bulk else 'call'} {'queued' if queued else 'fired'}",
            "request_uuid": [c.request_uuid for c in calls] if bulk else calls[0].request_uuid,
            "api_id": self._uuid(),
        }
        if invalid:
            reply["invalid_numbers"] = invalid
        # The seed's samples answer 201 for a fired call and 200 for a queued one.
        status = 200 if queued else 201
        if fault == "error_after_placing":
            self._record(sequence, now, request, 500, len(calls), fault)
            return self._error(_Rejected(500, "Internal server error"))
        if fault == "reset_after_placing":
            self._record(sequence, now, request, 0, len(calls), fault)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing more can be written; end the handler
        if fault == "hang_after_placing":
            self._record(sequence, now, request, status, len(calls), fault)
            await asyncio.sleep(self._config.hang_s)
            return web.json_response(reply, status=status)
        self._record(sequence, now, request, status, len(calls))
        return web.json_response(reply, status=status)

    def _error(self, rejected: _Rejected) -> web.Response:
        return web.json_response(
            {"api_id": self._uuid(), "error": rejected.error},
            status=rejected.http_status,
            headers=rejected.headers,
        )

    # --- look-ups and cancel ---

    async def _api_request(
        self, request: web.Request, answer: Callable[[float], web.Response]
    ) -> web.Response:
        sequence = next(self._sequence)
        now = self._clock()
        if self._config.latency_s:
            await asyncio.sleep(self._config.latency_s)
        self.promote_due_calls()
        try:
            self._check_account(request, now)
            response = answer(now)
        except _Rejected as rejected:
            self._record(sequence, now, request, rejected.http_status)
            return self._error(rejected)
        self._record(sequence, now, request, response.status)
        return response

    async def handle_list_calls(self, request: web.Request) -> web.Response:
        return await self._api_request(request, lambda now: self._list_calls(request, now))

    def _list_calls(self, request: web.Request, now: float) -> web.Response:
        query = request.query
        status = query.get("status")
        if status == "queued":
            return web.json_response({"api_id": self._uuid(), "calls": list(self._queue)})
        candidates = self._candidates(query.get("to_number"))
        from_number = query.get("from_number")
        if from_number is not None:
            candidates = [c for c in candidates if _bare(c.from_number) == _bare(from_number)]
        if status == "live":
            live = [
                c.call_uuid
                for c in candidates
                if not c.cancelled and c.call_uuid and c.dial_at <= now < c.end_at
            ]
            return web.json_response({"api_id": self._uuid(), "calls": live})
        if status is not None:
            raise _Rejected(400, "status must be queued or live")
        return self._call_records(query, candidates, now)

    def _candidates(self, to_number: str | None) -> list[SimulatedCall]:
        if to_number is None:
            calls = self._calls_by_call_uuid.values()
            return [c for c in calls if c.request_uuid not in self._queue]
        found: list[SimulatedCall] = []
        for key in {to_number, _bare(to_number), "+" + _bare(to_number)}:
            found.extend(self._calls_by_destination.get(key, ()))
        return [c for c in found if c.request_uuid not in self._queue]

    def _call_records(
        self, query: Mapping[str, str], candidates: list[SimulatedCall], now: float
    ) -> web.Response:
        try:
            limit = int(query.get("limit", "20"))
            offset = int(query.get("offset", "0"))
        except ValueError:
            raise _Rejected(400, "limit and offset must be whole numbers") from None
        if not 1 <= limit <= CDR_PAGE_MAX_LIMIT or offset < 0:
            raise _Rejected(400, f"limit must be between 1 and {CDR_PAGE_MAX_LIMIT}")
        after = query.get("end_time__gt")
        after_s = 0.0
        if after is not None:
            try:
                after_s = datetime.fromisoformat(after).replace(tzinfo=UTC).timestamp()
            except ValueError:
                raise _Rejected(400, "end_time__gt must look like 2026-01-31 12:00:00") from None
        ended = sorted(
            (c for c in candidates if not c.cancelled and c.end_at <= now and c.end_at > after_s),
            key=lambda c: c.end_at,
            reverse=True,
        )
        page = ended[offset : offset + limit]
        objects = []
        for call in page:
            cause, code = HANGUP_CAUSES[call.outcome]
            answered = call.answer_at
            duration = round(call.end_at - answered) if answered is not None else 0
            objects.append(
                {
                    "call_uuid": call.call_uuid,
                    "to_number": _bare(call.destination),
                    "from_number": _bare(call.from_number),
                    "call_direction": "outbound",
                    "initiation_time": _format_time(call.dial_at),
                    "answer_time": _format_time(answered),
                    "end_time": _format_time(call.end_at),
                    "hangup_cause_name": cause,
                    "hangup_cause_code": code,
                    "hangup_source": "Callee",
                    "call_duration": duration,
                    "bill_duration": duration,
                    "call_state": "ANSWER" if answered is not None else "NOANSWER",
                }
            )
        meta = {
            "limit": limit,
            "offset": offset,
            "total_count": len(ended),
            "next": None,
            "previous": None,
        }
        return web.json_response({"api_id": self._uuid(), "meta": meta, "objects": objects})

    async def handle_get_call(self, request: web.Request) -> web.Response:
        return await self._api_request(request, lambda now: self._get_call(request, now))

    def _get_call(self, request: web.Request, now: float) -> web.Response:
        call_id = request.match_info["call_id"]
        status = request.query.get("status")
        if status == "queued":
            call = self._queue.get(call_id)
            if call is None:
                raise _Rejected(404, "Call not found")
            return web.json_response(
                {
                    "api_id": self._uuid(),
                    "call_status": "queued",
                    "call_uuid": call.request_uuid,
                    "request_uuid": call.request_uuid,
                    "from": call.from_number,
                    "to": call.destination,
                    "direction": "outbound",
                }
            )
        found = self._calls_by_call_uuid.get(call_id)
        live = found is not None and not found.cancelled and found.dial_at <= now < found.end_at
        if found is None or (status == "live" and not live):
            raise _Rejected(404, "Call not found")
        return web.json_response(
            {
                "api_id": self._uuid(),
                "call_status": "in-progress" if live else found.outcome,
                "call_uuid": found.call_uuid,
                "request_uuid": found.request_uuid,
                "from": found.from_number,
                "to": found.destination,
                "direction": "outbound",
            }
        )

    async def handle_cancel(self, request: web.Request) -> web.Response:
        return await self._api_request(request, lambda now: self._cancel(request))

    def _cancel(self, request: web.Request) -> web.Response:
        request_uuid = request.match_info["request_uuid"]
        call = self._queue.pop(request_uuid, None)
        if call is None:
            raise _Rejected(404, "Request not found or no longer queued")
        call.cancelled = True
        self.ledger.cancelled.append(request_uuid)
        return web.Response(status=204)

    async def handle_ledger(self, request: web.Request) -> web.Response:
        self.promote_due_calls()
        window_s = self._config.request_window_s
        if request.query.get("summary"):
            return web.json_response(self.ledger.summary(window_s))
        return web.json_response(self.ledger.to_json(window_s))

    # --- a call's life and its callbacks ---

    async def _play_call(self, call: SimulatedCall) -> None:
        """Ring, answer (fetch answer_url) and hang up, sending the callbacks that are set."""
        parameters = call.parameters
        await self._sleep_until(call.dial_at)
        if call.cancelled:
            return
        await self._sleep_until(call.ring_at)
        common = {
            "From": _bare(call.from_number),
            "To": _bare(call.destination),
            "RequestUUID": call.request_uuid,
            "ALegRequestUUID": call.request_uuid,
            "CallUUID": call.call_uuid,
            "ALegUUID": call.call_uuid,
            "Direction": "outbound",
        }
        sip_headers = parameters.get("sip_headers")
        if isinstance(sip_headers, str):
            for pair in sip_headers.split(","):
                key, _, value = pair.partition("=")
                common[f"X-PH-{key}"] = value
        if parameters.get("ring_url"):
            await self._callback(call, "ring", {**common, "Event": "Ring", "CallStatus": "ringing"})
        answered = call.answer_at
        if answered is not None:
            await self._sleep_until(answered)
            await self._callback(
                call, "answer", {**common, "Event": "StartApp", "CallStatus": "in-progress"}
            )
            if parameters.get("machine_detection") and parameters.get("machine_detection_url"):
                await self._callback(
                    call,
                    "machine_detection",
                    {
                        **common,
                        "Event": "MachineDetection",
                        "CallStatus": "in-progress",
                        "Machine": "true" if call.machine else "false",
                    },
                )
        await self._sleep_until(call.end_at)
        if parameters.get("hangup_url"):
            cause, code = HANGUP_CAUSES[call.outcome]
            duration = str(round(call.end_at - answered)) if answered is not None else "0"
            await self._callback(
                call,
                "hangup",
                {
                    **common,
                    "Event": "Hangup",
                    "CallStatus": call.outcome,
                    "StartTime": _format_time(call.dial_at) or "",
                    "AnswerTime": _format_time(answered) or "",
                    "EndTime": _format_time(call.end_at) or "",
                    "HangupCause": cause,
                    "HangupCauseName": cause,
                    "HangupCauseCode": str(code),
                    "HangupSource": "Callee",
                    "Duration": duration,
                    "BillDuration": duration,
                    **(
                        {"Machine": "true" if call.machine else "false"}
                        if parameters.get("machine_detection") and answered is not None
                        else {}
                    ),
                },
            )

    async def _sleep_until(self, at: float) -> None:
        delay_s = at - self._clock()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def _callback(self, call: SimulatedCall, event: str, parameters: dict[str, str]) -> None:
        url = str(call.parameters.get(f"{event}_url"))
        method = str(call.parameters.get(f"{event}_method") or "POST").upper()
        session = self._callback_session
        if session is None:
            return
        nonce = new_nonce()
        signature = compute_signature_v3(self._config.auth_token, url, nonce, parameters, method)
        headers = {SIGNATURE_V3_HEADER: signature, SIGNATURE_V3_NONCE_HEADER: nonce}
        http_status: int | None = None
        error: str | None = None
        try:
            if not self._config.callbacks_to_any_host and not is_loopback_url(url):
                # A fake Plivo must not send requests into the world on a user's behalf.
                raise _CallbackRefused(
                    "not sent: the simulator calls back only to loopback hosts "
                    "(--callbacks-to-any-host allows others)"
                )
            timeout = aiohttp.ClientTimeout(total=self._config.callback_timeout_s)
            if method == "GET":
                request = session.get(url, params=parameters, headers=headers, timeout=timeout)
            else:
                request = session.post(url, data=parameters, headers=headers, timeout=timeout)
            async with request as response:
                await response.read()
                http_status = response.status
        except _CallbackRefused as refused:
            error = str(refused)
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        self.ledger.callbacks.append(
            CallbackRecord(
                event=event,
                url=url,
                method=method,
                call_uuid=call.call_uuid,
                request_uuid=call.request_uuid,
                sent_at=self._clock(),
                http_status=http_status,
                error=error,
            )
        )

    async def settle(self) -> None:
        """Wait until every call in flight has played out and sent its callbacks (for tests)."""
        while self._callback_tasks:
            await asyncio.gather(*list(self._callback_tasks), return_exceptions=True)

    # --- the aiohttp app ---

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._callback_session = aiohttp.ClientSession()
        try:
            yield
        finally:
            for task in list(self._callback_tasks):
                task.cancel()
            await asyncio.gather(*list(self._callback_tasks), return_exceptions=True)
            await self._callback_session.close()
            self._callback_session = None

    def create_app(self) -> web.Application:
        """The aiohttp application serving this simulator (Plivo's paths plus the ledger)."""
        app = web.Application()
        app[SIMULATOR_KEY] = self
        app.cleanup_ctx.append(self._lifecycle)
        account = "/v1/Account/{auth_id}"
        app.router.add_post(f"{account}/Call/", self.handle_make_call)
        app.router.add_get(f"{account}/Call/", self.handle_list_calls)
        app.router.add_get(f"{account}/Call/{{call_id}}/", self.handle_get_call)
        app.router.add_delete(f"{account}/Request/{{request_uuid}}/", self.handle_cancel)
        app.router.add_get(LEDGER_PATH, self.handle_ledger)
        return app


SIMULATOR_KEY = web.AppKey("simulator", PlivoSimulator)


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator serving on loopback: where to reach it and what it recorded."""

    simulator: PlivoSimulator
    base_url: str

    @property
    def ledger(self) -> Ledger:
        self.simulator.promote_due_calls()
        return self.simulator.ledger

    @property
    def config(self) -> SimulatorConfig:
        return self.simulator.config


@contextlib.asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator in this event loop (a free port unless given) until the block ends."""
    simulator = PlivoSimulator(config, clock=clock)
    runner = web.AppRunner(simulator.create_app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield RunningSimulator(simulator, f"http://{bound_host}:{bound_port}")
    finally:
        await runner.cleanup()


def serve_simulator(
    config: SimulatorConfig,
    *,
    host: str,
    port: int,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until interrupted (the `campaign simulator` command)."""
    simulator = PlivoSimulator(config)
    announce(
        f"Plivo simulator on http://{host}:{port} (auth id {config.auth_id}, "
        f"{config.calls_per_second:g} calls/s, ledger at {LEDGER_PATH})"
    )
    web.run_app(
        simulator.create_app(),
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
    )
