"""How the simulator behaves: the account's limits, the call outcomes and their shares, a call's
timing, callbacks, the keys callees press at a menu, and the faults it injects at configured rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
# The keys of a phone's keypad, in the order a keypress is drawn over `digit_shares`.
PHONE_KEYS = "0123456789*#"
FAULTS = ("unavailable", "rate_limited", "error_after_placing", "hang_after_placing")
FAULTS_ALL = (*FAULTS, "reset_after_placing")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the fake Plivo behaves. Rates are probabilities per Make-a-call request."""

    auth_id: str = "MASIMULATOR000000000"
    auth_token: str = field(default="simulator-auth-token", repr=False)
    calls_per_second: float = 2.0
    requests_per_window: int = 300
    request_window_s: float = 5.0
    # Calls live at once (Plivo's India accounts: 50 by default; elsewhere no limit). 0: no limit.
    # A Make-a-call request that would take the calls live or queued past it is refused whole
    # with 403 and Plivo's error code 5030.
    max_concurrent_calls: int = 0
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
    # When set, each completed call talks for a seeded uniform draw in [talk_s, talk_s_max].
    talk_s_max: float | None = None
    send_callbacks: bool = True
    # Of answered calls that asked for machine detection, the share a machine answers.
    machine_share: float = 0.2
    # The key a callee presses at each attempt of a <GetDigits> menu, with its share of attempts
    # (e.g. {"1": 0.6, "2": 0.2}); the rest of the attempts press nothing. Machines never press.
    digit_shares: Mapping[str, float] = field(default_factory=dict)
    # Callbacks go only to loopback hosts unless this is set.
    callbacks_to_any_host: bool = False
    callback_timeout_s: float = 5.0
    # Plivo retries a callback its URL did not accept (a 5xx, a time-out, a refused connection):
    # this many more tries, each after the answer's Retry-After or `callback_retry_s`.
    callback_retries: int = 3
    callback_retry_s: float = 1.0
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
    # Draw each call's fate (its outcome, machine, talk time and keys) from the seed, its
    # destination and how many calls to it came before, instead of from the request stream: a
    # seeded run then gives each callee the same fate however the requests split and
    # interleave (`campaign demo` relies on it to show every kind of answer at any hour).
    draws_by_destination: bool = False

    @property
    def fault_rates(self) -> tuple[tuple[str, float], ...]:
        """Each fault of FAULTS_ALL, in that order, with its rate."""
        return (
            ("unavailable", self.unavailable_rate),
            ("rate_limited", self.rate_limited_rate),
            ("error_after_placing", self.error_after_placing_rate),
            ("hang_after_placing", self.hang_after_placing_rate),
            ("reset_after_placing", self.reset_after_placing_rate),
        )

    def __post_init__(self) -> None:
        rates = {f"{fault}_rate": rate for fault, rate in self.fault_rates}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("the fault rates must add up to at most 1")
        if self.callback_retries < 0 or self.callback_retry_s < 0:
            raise ValueError("callback_retries and callback_retry_s must not be negative")
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
        if self.talk_s_max is not None and self.talk_s_max < self.talk_s:
            raise ValueError(
                f"talk_s_max ({self.talk_s_max:g}) must not be below talk_s ({self.talk_s:g})"
            )
        if self.max_concurrent_calls < 0:
            raise ValueError("max_concurrent_calls must not be negative (0: no limit)")
        _check_digit_shares(self.digit_shares)


def _check_digit_shares(shares: Mapping[str, float]) -> None:
    """Each key one of the keypad's (0-9, *, #), each share in [0, 1], all of them at most 1."""
    not_keys = sorted(key for key in shares if len(key) != 1 or key not in PHONE_KEYS)
    if not_keys:
        listed = ", ".join(map(repr, not_keys))
        raise ValueError(f"digit_shares: not a phone key (one of 0-9, * or #): {listed}")
    for key, share in shares.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"digit_shares: the share of {key!r} must be between 0 and 1")
    total = sum(shares.values())
    if total > 1.0 + 1e-9:
        raise ValueError(
            f"digit_shares must add up to at most 1 (the rest: no key pressed), got {total:g}"
        )
