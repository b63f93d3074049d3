"""The simulator's ledger: every call it placed, request it answered and callback it sent, in
order, and what each callee heard of the call's Plivo XML. Tests read it in-process;
`GET /__simulator__/ledger` serves it as JSON.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from campaign.destinations import bare_number


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
    # What the callee heard and did, in order, as the call's XML was played (see `callflow`):
    # {"kind": "speak", "text", "voice", "language", "loop"}, {"kind": "play", "url", "loop"},
    # {"kind": "wait", "length", "beep", "until_beep"}, {"kind": "digits", "digits", "valid"},
    # {"kind": "no_digits"}, {"kind": "hangup"}, {"kind": "unknown", "element"},
    # {"kind": "error", "detail"}. JSON-ready.
    heard: list[dict[str, Any]] = field(default_factory=list, repr=False)

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

    @property
    def duration_s(self) -> int:
        """Whole seconds from answer to hangup (Plivo's `Duration`); 0 for an unanswered call."""
        answered = self.answer_at
        return round(self.end_at - answered) if answered is not None else 0


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
    # The account limit that refused it (`request_rate`: 429, `concurrent_calls`: 403/5030).
    refusal: str | None = None


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

    def calls_to(self, destination: str) -> list[SimulatedCall]:
        """The dialled calls to `destination` (written with or without its `+`), in dial order."""
        wanted = bare_number(destination)
        return [call for call in self.dials if bare_number(call.destination) == wanted]

    def heard(self, destination: str) -> list[dict[str, Any]]:
        """What the callee at `destination` heard and pressed, in order (see `SimulatedCall.heard`);
        a destination dialled more than once: each call's entries, in dial order."""
        return [entry for call in self.calls_to(destination) for entry in call.heard]

    def spoken_text(self, destination: str) -> str:
        """Every `<Speak>` the callee at `destination` heard, in order, joined with a space."""
        return " ".join(e["text"] for e in self.heard(destination) if e["kind"] == "speak")

    def digits_pressed(self, destination: str) -> list[str]:
        """The keys the callee at `destination` pressed at `<GetDigits>` menus, in order (also
        those the menu's validDigits refused)."""
        return [e["digits"] for e in self.heard(destination) if e["kind"] == "digits"]

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

    def refusals(self, refusal: str) -> int:
        """How many requests the account limit `refusal` refused (see `RequestRecord`)."""
        return sum(1 for r in self.requests if r.refusal == refusal)

    def live_calls_timeline(self) -> list[tuple[float, int]]:
        """When the number of live calls changed and what it became, in time order.

        From the dialled calls' `dial_at` and `end_at`: a call is live in [dial_at, end_at), so a
        call ending as another is dialled does not count twice, and a call that rings for no
        time is never live. Queued calls enter at their dial; cancelled calls never do. The
        count before the first point is 0; the last point is the last call's end (0 again).
        """
        changes: Counter[float] = Counter()
        for call in self.dials:
            if not call.cancelled and call.end_at > call.dial_at:
                changes[call.dial_at] += 1
                changes[call.end_at] -= 1
        timeline: list[tuple[float, int]] = []
        live = 0
        for at in sorted(changes):
            if changes[at]:
                live += changes[at]
                timeline.append((at, live))
        return timeline

    def max_live_calls(self) -> int:
        """The most calls live at any one moment."""
        return max((live for _, live in self.live_calls_timeline()), default=0)

    def mean_live_calls(self, start: float, end: float) -> float:
        """The time-weighted mean of the calls live over [start, end]."""
        return time_weighted_mean(self.live_calls_timeline(), start, end)

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
            "max_live_calls": self.max_live_calls(),
            "request_rate_refusals": self.refusals("request_rate"),
            "concurrency_refusals": self.refusals("concurrent_calls"),
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
                    "ended_at": call.end_at,
                    "queued": call.queued,
                    "request_sequence": call.request_sequence,
                    "outcome": call.outcome,
                    "heard": [dict(entry) for entry in call.heard],
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
                    "refusal": r.refusal,
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
            # [time, live calls] pairs: `time_weighted_mean` takes them as they come over HTTP.
            "live_calls_timeline": [[at, live] for at, live in self.live_calls_timeline()],
        }


def time_weighted_mean(timeline: Sequence[Sequence[float]], start: float, end: float) -> float:
    """The time-weighted mean over [start, end] of a step function given by its change points.

    `timeline` is (time, value) pairs in time order, as `Ledger.live_calls_timeline` returns
    (or its JSON, `[time, value]` lists); the value is 0 before the first point and holds until
    the next. Over an empty span (start == end) it is the value at that moment.
    """
    if end < start:
        raise ValueError(f"the span ends ({end}) before it starts ({start})")
    value = 0.0
    area = 0.0
    at = start
    for point_at, point_value in timeline:
        if point_at > start:
            if point_at >= end:
                break
            area += value * (point_at - at)
            at = point_at
        value = point_value
    if end == start:
        return value
    area += value * (end - at)
    return area / (end - start)
