"""The simulator's ledger: every call it placed, request it answered and callback it sent, in
order. Tests read it in-process; `GET /__simulator__/ledger` serves it as JSON.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
