"""The fake account's state: its limits (calls per second, API requests per window, concurrent
calls), its queue, the calls it placed, and the seeded draws (uuids, outcomes, faults, talk times).

No HTTP here: the API decides what a request may do and asks the account to do it. Every random
draw made when a request arrives comes from one generator seeded by `SimulatorConfig.seed`, in
the order requests arrive, so a seeded run hands out the same uuids, outcomes and faults every
time. The keys callees press are drawn later, while calls play, in an order that timing decides:
each call draws them from a generator of its own, seeded by the seed and the call's uuid, so a
seeded run presses the same keys on the same calls however the calls interleave, and pressing
keys leaves the request draws as they were. With `draws_by_destination`, a call's outcome,
machine, talk time and keys come instead from a generator seeded by the seed, the destination
and the number of calls to it before, so each callee's fate is the same whatever the requests.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from campaign.destinations import bare_number, destination_of
from campaign.simulator.config import OUTCOMES, PHONE_KEYS, SimulatorConfig
from campaign.simulator.ledger import Ledger, SimulatedCall


class SimulatedAccount:
    """One Plivo account as the simulator keeps it; placed calls enter the ledger when dialled."""

    def __init__(self, config: SimulatorConfig, ledger: Ledger, clock: Callable[[], float]) -> None:
        self._ledger = ledger
        self._clock = clock
        self._random = random.Random(config.seed)
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
        # The calls that hold a concurrent-call place (live, or queued and so live later): their
        # call_uuids, and their end times in a heap to let the ended ones go (lazily cleaned).
        self._holding_place: set[str] = set()
        self._holding_heap: list[tuple[float, str]] = []
        self._outcome_names: list[str] = []
        self._outcome_cumulative: list[float] = []
        self.reconfigure(config)

    def reconfigure(self, config: SimulatorConfig) -> None:
        """Take new limits, shares and fault rates; the queue, calls and draws go on."""
        self._config = config
        names = [name for name in OUTCOMES if config.outcome_shares.get(name, 0) > 0]
        total = sum(config.outcome_shares[name] for name in names)
        self._outcome_names = names
        self._outcome_cumulative = list(
            itertools.accumulate(config.outcome_shares[name] / total for name in names)
        )

    # --- the seeded draws ---

    def new_uuid(self) -> str:
        # From the seeded generator, so a seeded run hands out the same uuids every time.
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _draw_outcome(self, draws: random.Random) -> str:
        index = bisect.bisect_left(self._outcome_cumulative, draws.random())
        return self._outcome_names[min(index, len(self._outcome_names) - 1)]

    def _draw_talk_s(self, outcome: str, draws: random.Random) -> float:
        """A completed call's talk time: `talk_s`, or a uniform draw up to `talk_s_max`."""
        config = self._config
        if config.talk_s_max is None or outcome != "completed":
            return config.talk_s
        return draws.uniform(config.talk_s, config.talk_s_max)

    def _fate_draws(self, destination: str) -> random.Random:
        """Where the fate of the next call to `destination` is drawn from: the request stream,
        or with `draws_by_destination` a generator of its own (the seed, the destination, and
        which call to it this is)."""
        if not self._config.draws_by_destination:
            return self._random
        nth = len(self._calls_by_destination.get(destination, ())) + 1
        return random.Random(f"{self._config.seed}/{destination}/{nth}")

    def draw_fault(self) -> str | None:
        """The fault to inject into this request (at most one), or None."""
        config = self._config
        rates = config.fault_rates
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

    def keypad(self, call: SimulatedCall) -> Callable[[], str | None]:
        """The callee of `call` at a menu: each call of the result is one attempt, the key
        pressed (drawn over `digit_shares` as configured then) or None. A machine never presses.
        """
        if call.machine:
            return lambda: None
        if self._config.draws_by_destination:
            nth = self._calls_by_destination[call.destination].index(call) + 1
            generator = random.Random(f"{self._config.seed}/{call.destination}/{nth}/keys")
        else:
            generator = random.Random(f"{self._config.seed}/{call.call_uuid}")
        return lambda: draw_key(generator.random(), self._config.digit_shares)

    # --- the limits ---

    def admit_request(self, now: float) -> float | None:
        """Count an API request against the rate; None when within it.

        Over the rate, the request is not counted and the answer is the seconds until one is
        allowed again.
        """
        window = self._recent_requests
        while window and window[0] <= now - self._config.request_window_s:
            window.popleft()
        if len(window) >= self._config.requests_per_window:
            return window[0] + self._config.request_window_s - now
        window.append(now)
        return None

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

    def calls_in_progress(self, now: float) -> int:
        """The calls live now plus those queued (they go live when dialled), not cancelled.

        What the concurrent-call limit is checked against: counting the queued calls too keeps
        the calls live at any moment within the limit whenever the queue dials them.
        """
        self._let_ended_calls_go(now)
        return len(self._holding_place)

    def _let_ended_calls_go(self, now: float) -> None:
        heap = self._holding_heap
        while heap and heap[0][0] <= now:
            _, call_uuid = heapq.heappop(heap)
            self._holding_place.discard(call_uuid)

    # --- calls and the queue ---

    def place_calls(
        self,
        sequence: int,
        now: float,
        from_number: str,
        destinations: Sequence[str],
        parameters: Mapping[str, object],
    ) -> list[SimulatedCall]:
        """Accept one call per destination: dialled now, or queued for the first free slot."""
        config = self._config
        calls = []
        # Also without a limit, so the places held stay few (and are right if one is set later).
        self._let_ended_calls_go(now)
        for destination in destinations:
            dial_at = self._dial_slot(now)
            queued = dial_at > now
            # The draws in this order (uuids, outcome, machine, talk time), as seeded runs expect.
            request_uuid, call_uuid = self.new_uuid(), self.new_uuid()
            draws = self._fate_draws(destination)
            outcome = self._draw_outcome(draws)
            machine = (
                bool(parameters.get("machine_detection")) and draws.random() < config.machine_share
            )
            call = SimulatedCall(
                request_uuid=request_uuid,
                call_uuid=call_uuid,
                destination=destination,
                from_number=from_number,
                request_sequence=sequence,
                accepted_at=now,
                dial_at=dial_at,
                outcome=outcome,
                machine=machine,
                queued=queued,
                parameters=parameters,
                ring_after_s=config.ring_after_s,
                answer_after_s=config.answer_after_s,
                talk_s=self._draw_talk_s(outcome, draws),
            )
            calls.append(call)
            self._calls_by_call_uuid[call.call_uuid] = call
            self._calls_by_destination.setdefault(destination, []).append(call)
            if call.end_at > now:
                self._holding_place.add(call.call_uuid)
                heapq.heappush(self._holding_heap, (call.end_at, call.call_uuid))
            if queued:
                self._queue[call.request_uuid] = call
                heapq.heappush(self._queue_heap, (dial_at, sequence, call.request_uuid))
            else:
                self._ledger.dials.append(call)
        return calls

    def promote_due_calls(self) -> None:
        """Dial the queued calls whose slot has come (they enter the ledger then)."""
        now = self._clock()
        heap = self._queue_heap
        while heap and heap[0][0] <= now:
            _, _, request_uuid = heapq.heappop(heap)
            call = self._queue.pop(request_uuid, None)
            if call is not None:
                self._ledger.dials.append(call)

    def queued_request_uuids(self) -> list[str]:
        """The request_uuids waiting for a CPS slot (as of the last `promote_due_calls`)."""
        return list(self._queue)

    def queued_call(self, request_uuid: str) -> SimulatedCall | None:
        return self._queue.get(request_uuid)

    def cancel_queued_call(self, request_uuid: str) -> bool:
        """Cancel a call still in the queue; False when it is not (dialled, or never was)."""
        call = self._queue.pop(request_uuid, None)
        if call is None:
            return False
        call.cancelled = True
        self._holding_place.discard(call.call_uuid)
        self._ledger.cancelled.append(request_uuid)
        return True

    def call(self, call_uuid: str) -> SimulatedCall | None:
        """A placed call by its call_uuid (queued, live or ended)."""
        return self._calls_by_call_uuid.get(call_uuid)

    def unqueued_calls(self, to_number: str | None = None) -> list[SimulatedCall]:
        """Placed calls out of the queue (dialled or cancelled), optionally only to `to_number`.

        `to_number` matches a call's destination written with or without its `+`.
        """
        if to_number is None:
            calls = self._calls_by_call_uuid.values()
            return [c for c in calls if c.request_uuid not in self._queue]
        found: list[SimulatedCall] = []
        for key in {to_number, bare_number(to_number), destination_of(to_number)}:
            found.extend(self._calls_by_destination.get(key, ()))
        return [c for c in found if c.request_uuid not in self._queue]


def draw_key(draw: float, shares: Mapping[str, float]) -> str | None:
    """The key a uniform draw in [0, 1) lands on, the keys' shares laid end to end in
    PHONE_KEYS order; None when it lands past them (no key pressed)."""
    for key in PHONE_KEYS:
        share = shares.get(key, 0.0)
        if draw < share:
            return key
        draw -= share
    return None
