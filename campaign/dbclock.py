"""The database's clock, as a worker far from Postgres can tell it without asking.

The rate limiters hand out slots on the database's clock (schema.sql section 4), and a batch
must reach Plivo within the clock second of its slot. A worker reads that clock in every claim,
but the reading is half a round trip old when it arrives, and the round trip to a database in
another zone or region is 2-160 ms. So the worker estimates the offset between its own monotonic
clock and the database's the way NTP does (RFC 5905), from four times per statement:

- t0, t3: when the statement left this process and when its answer came back (monotonic);
- T1, T2: when the server received the statement and when it answered (database clock; the
  statement returns T2 and how long it ran, T2 - T1).

Each statement gives an offset sample ((T1 - t0) + (T2 - t3)) / 2, right to within half the
difference between the two directions' delays, and a network delay (t3 - t0) - (T2 - T1). As
NTP's clock filter does, the estimate is the sample of least delay among the recent ones: it is
the one least bent by a queue on either side. A sample that cannot agree with it (the true
offset is within half its delay of each) means the clock was stepped, and the estimate starts
over from it; samples also age out after a minute.

The same module keeps the durations a worker must plan around (`Durations`: how long writing a
request ahead takes from here, smoothed as TCP smooths round trips, RFC 6298), so that a request
is ready before its slot comes and sent at it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Samples kept, and for how long (seconds): the least delayed of them gives the offset.
CLOCK_SAMPLES = 32
CLOCK_SAMPLE_MAX_AGE_S = 60.0
# Two samples whose offsets disagree by more than their error bounds and this much more: the
# database's clock was stepped between them.
STEP_TOLERANCE_S = 0.005


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One statement's four times: t0 and t3 on this process' monotonic clock, T2 on the
    database's (seconds since the epoch), and T2 - T1 (how long the server worked on it)."""

    sent_at: float
    received_at: float
    db_replied_at_s: float
    served_s: float

    @property
    def offset_s(self) -> float:
        """The database's clock minus the monotonic clock, by this sample (NTP's theta)."""
        db_received_at_s = self.db_replied_at_s - self.served_s
        return ((db_received_at_s - self.sent_at) + (self.db_replied_at_s - self.received_at)) / 2

    @property
    def delay_s(self) -> float:
        """The network's share of the round trip (NTP's delta): the two one-way delays."""
        return max((self.received_at - self.sent_at) - self.served_s, 0.0)

    @property
    def read_at(self) -> float:
        """When, on the monotonic clock, the server read its clock for this answer: half the
        network's delay before the answer came back."""
        return self.received_at - self.delay_s / 2


class DatabaseClock:
    """The database's clock now, from recent statements' samples, without asking it."""

    def __init__(
        self,
        *,
        samples: int = CLOCK_SAMPLES,
        max_age_s: float = CLOCK_SAMPLE_MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._samples: deque[ClockSample] = deque(maxlen=samples)
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._best: ClockSample | None = None

    def monotonic(self) -> float:
        """This process' monotonic clock, as the samples are read on."""
        return self._monotonic()

    def observe(self, sample: ClockSample) -> None:
        """Take one statement's four times into account.

        The true offset lies within delay / 2 of each sample's; a sample whose range does not
        meet the chosen one's means the database's clock was stepped (or, in the tests, moved
        by hand): the samples from before are dropped, and the estimate follows at once. Unless
        that sample is the older reading: a statement whose answer left the server (half its
        delay before it came back) before the latest kept one's read the clock before the step,
        a straggler, though it came back after; taken for a step back, it would put the
        estimate hours behind and a batch written ahead would wait for them. (Which was sent
        first says nothing: a claim sent before a short statement may read the clock after it.)
        """
        if sample.received_at < sample.sent_at:
            return
        chosen = self._chosen()
        if chosen is not None and abs(sample.offset_s - chosen.offset_s) > (
            (sample.delay_s + chosen.delay_s) / 2 + STEP_TOLERANCE_S
        ):
            if sample.read_at < max(kept.read_at for kept in self._samples):
                return
            self._samples.clear()
        self._samples.append(sample)
        self._best = None

    def _chosen(self) -> ClockSample | None:
        horizon = self._monotonic() - self._max_age_s
        while len(self._samples) > 1 and self._samples[0].received_at < horizon:
            self._samples.popleft()
            self._best = None
        if self._best is None and self._samples:
            self._best = min(self._samples, key=lambda sample: sample.delay_s)
        return self._best

    @property
    def synchronised(self) -> bool:
        """Whether any statement told the clock yet."""
        return bool(self._samples)

    @property
    def offset_s(self) -> float:
        """The database's clock minus this process' monotonic clock (0 before any sample)."""
        chosen = self._chosen()
        return chosen.offset_s if chosen is not None else 0.0

    @property
    def round_trip_s(self) -> float:
        """The network's round trip to the database, as the least delayed recent statement saw
        it (0 before any sample)."""
        chosen = self._chosen()
        return chosen.delay_s if chosen is not None else 0.0

    def now_s(self) -> float:
        """The database's clock now (seconds since the epoch)."""
        return self._monotonic() + self.offset_s

    def seconds_until(self, db_at_s: float) -> float:
        """How long until `db_at_s` on the database's clock (negative once it has passed)."""
        return db_at_s - self.now_s()

    def monotonic_at(self, db_at_s: float) -> float:
        """This process' monotonic time when the database's clock reads `db_at_s`."""
        return db_at_s - self.offset_s


class Durations:
    """How long a step usually takes, and how long to allow for it, as TCP tells a round trip's
    time-out (RFC 6298): a smoothed mean and variation, allowance mean + 4 x variation."""

    def __init__(self, initial_s: float = 0.0, *, ceiling_s: float = math.inf) -> None:
        self._mean: float | None = None
        self._variation = 0.0
        self._initial_s = initial_s
        self._ceiling_s = ceiling_s

    def observe(self, seconds: float) -> None:
        if seconds < 0:
            return
        if self._mean is None:
            self._mean, self._variation = seconds, seconds / 2
            return
        self._variation = 0.75 * self._variation + 0.25 * abs(self._mean - seconds)
        self._mean = 0.875 * self._mean + 0.125 * seconds

    @property
    def mean_s(self) -> float:
        return self._initial_s if self._mean is None else self._mean

    @property
    def allowance_s(self) -> float:
        """Time to allow so that the step is almost always done (mean + 4 x variation)."""
        if self._mean is None:
            return min(self._initial_s, self._ceiling_s)
        return min(self._mean + 4 * self._variation, self._ceiling_s)
