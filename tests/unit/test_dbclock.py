"""The database's clock as a far worker estimates it (campaign/dbclock.py), with a fake clock
whose skew and round trips are known."""

from __future__ import annotations

import random

import pytest

from campaign.dbclock import ClockSample, DatabaseClock, Durations
from campaign.ratelimit import SlotTiming

# The database's clock runs this far ahead of the worker's monotonic clock.
SKEW_S = 1_764_000_000.123


class FakeLink:
    """A worker's monotonic clock and a database at a known skew, joined by a link whose two
    directions each take a known delay."""

    def __init__(self) -> None:
        self.monotonic = 1000.0

    def statement(self, out_s: float, served_s: float, back_s: float) -> ClockSample:
        """One statement: sent now, received by the server `out_s` later, answered after
        `served_s` of work, back `back_s` later."""
        sent_at = self.monotonic
        db_replied_at_s = sent_at + out_s + served_s + SKEW_S
        self.monotonic += out_s + served_s + back_s
        return ClockSample(sent_at, self.monotonic, db_replied_at_s, served_s)


def test_a_symmetric_round_trip_gives_the_skew_exactly() -> None:
    """Equal delays each way: the offset is the skew, whatever the round trip (the reading the
    claim returns is half a round trip old when it arrives; the estimate is not)."""
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic)
    sample = link.statement(out_s=0.05, served_s=0.003, back_s=0.05)
    clock.observe(sample)
    assert clock.offset_s == pytest.approx(SKEW_S, abs=1e-6)
    assert clock.round_trip_s == pytest.approx(0.1, abs=1e-6)
    assert clock.now_s() == pytest.approx(link.monotonic + SKEW_S, abs=1e-6)
    # What the worker did before: the database's reading taken as "now" on arrival, 50 ms old.
    assert (link.monotonic + SKEW_S) - sample.db_replied_at_s == pytest.approx(0.05, abs=1e-6)


def test_the_server_time_of_a_statement_is_not_taken_for_network() -> None:
    """A claim that waited 80 ms for a lock on the server: its delay and offset are still right
    (T2 - T1 is taken out), so a slow statement does not bend the clock."""
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic)
    clock.observe(link.statement(out_s=0.01, served_s=0.08, back_s=0.01))
    assert clock.round_trip_s == pytest.approx(0.02, abs=1e-6)
    assert clock.offset_s == pytest.approx(SKEW_S, abs=1e-6)


def test_jittered_delays_are_filtered_to_the_least_delayed_sample() -> None:
    """One-way 50 ms +- 20 % drawn independently each way (the benchmark's link): a single
    sample can be 10 ms off; over 32 samples the least delayed is within 3 ms of the skew, and
    no jittered sample is taken for a step of the clock."""
    rng = random.Random(15)
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic)
    for _ in range(32):
        clock.observe(
            link.statement(
                out_s=0.05 * rng.uniform(0.8, 1.2),
                served_s=rng.uniform(0.0005, 0.02),
                back_s=0.05 * rng.uniform(0.8, 1.2),
            )
        )
        link.monotonic += 0.1
    assert abs(clock.offset_s - SKEW_S) < 0.003
    assert 0.08 <= clock.round_trip_s <= 0.1


def test_old_samples_age_out_so_a_stepped_clock_is_followed() -> None:
    """The database host's clock stepped by 2 s: once the samples from before are a minute old,
    the estimate follows the new clock."""
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic, max_age_s=60.0)
    clock.observe(link.statement(out_s=0.001, served_s=0.0, back_s=0.001))
    link.monotonic += 61
    stepped = link.statement(out_s=0.02, served_s=0.0, back_s=0.02)
    clock.observe(
        ClockSample(
            stepped.sent_at, stepped.received_at, stepped.db_replied_at_s + 2.0, stepped.served_s
        )
    )
    assert clock.offset_s == pytest.approx(SKEW_S + 2.0, abs=1e-6)


def test_a_stepped_clock_is_followed_at_once() -> None:
    """The database's clock jumps an hour ahead (as the tests' injected clock does, or a host
    whose time is set): the next sample cannot agree with the estimate within both error
    bounds, so the estimate starts over from it, though it is more delayed than the old one."""
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic)
    for _ in range(5):
        clock.observe(link.statement(out_s=0.001, served_s=0.0, back_s=0.001))
    stepped = link.statement(out_s=0.03, served_s=0.0, back_s=0.03)
    clock.observe(
        ClockSample(
            stepped.sent_at, stepped.received_at, stepped.db_replied_at_s + 3600, stepped.served_s
        )
    )
    assert clock.offset_s == pytest.approx(SKEW_S + 3600, abs=1e-6)


def test_a_reading_from_before_a_step_that_comes_back_after_it_is_not_a_step_back() -> None:
    """The clock jumps 11 hours ahead while two statements are in flight: the one sent last
    reads the new time and comes back first; the one sent before it read the old time (its
    answer left the server earlier) and comes back just after. The estimate keeps the new time
    (it went back 11 hours, and a batch written ahead at the new time waited for them:
    test_calling_hours' worker test, 1 run in 10); a statement sent after both that reads the
    old time again is a step back, followed."""
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic)
    for _ in range(5):
        clock.observe(link.statement(out_s=0.001, served_s=0.0, back_s=0.001))
    straggler_sent_at = link.monotonic
    link.monotonic += 0.003
    stepped = link.statement(out_s=0.001, served_s=0.0, back_s=0.001)
    clock.observe(
        ClockSample(stepped.sent_at, stepped.received_at, stepped.db_replied_at_s + 39_600, 0.0)
    )
    assert clock.offset_s == pytest.approx(SKEW_S + 39_600, abs=0.01)
    straggler = ClockSample(
        straggler_sent_at, link.monotonic, straggler_sent_at + 0.001 + SKEW_S, 0.0
    )
    clock.observe(straggler)
    assert clock.offset_s == pytest.approx(SKEW_S + 39_600, abs=0.01)
    clock.observe(link.statement(out_s=0.001, served_s=0.0, back_s=0.001))
    assert clock.offset_s == pytest.approx(SKEW_S, abs=0.01)


def test_a_long_statement_sent_first_that_reads_the_stepped_clock_last_is_followed() -> None:
    """A claim is sent, works 50 ms on the server and reads the clock as it answers, after the
    clock jumped 10 minutes ahead; a short statement sent after it read the old time and came
    back first. The claim's reading is the newer one, though it was sent first: the estimate
    follows it (its batch is timed on it)."""
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic)
    for _ in range(5):
        clock.observe(link.statement(out_s=0.001, served_s=0.0, back_s=0.001))
    claim_sent_at = link.monotonic
    link.monotonic += 0.002
    clock.observe(link.statement(out_s=0.001, served_s=0.0, back_s=0.001))  # old time
    link.monotonic = claim_sent_at + 0.052
    claim = ClockSample(claim_sent_at, link.monotonic, claim_sent_at + 0.051 + SKEW_S + 600, 0.05)
    clock.observe(claim)
    assert clock.offset_s == pytest.approx(SKEW_S + 600, abs=0.01)


def test_before_any_sample_the_clock_says_so() -> None:
    """No statement yet: not synchronised, no offset, no round trip."""
    clock = DatabaseClock(monotonic=lambda: 5.0)
    assert not clock.synchronised
    assert clock.offset_s == 0.0
    assert clock.round_trip_s == 0.0
    assert clock.seconds_until(7.5) == pytest.approx(2.5)


def test_durations_allow_for_their_variation() -> None:
    """RFC 6298's estimator: the allowance starts at the initial value, follows what is seen,
    and grows with the variation (so a request is prepared early enough), under its ceiling."""
    durations = Durations(0.01, ceiling_s=1.0)
    assert durations.allowance_s == 0.01
    for _ in range(50):
        durations.observe(0.1)
    assert durations.mean_s == pytest.approx(0.1, abs=1e-3)
    steady = durations.allowance_s
    assert 0.1 <= steady < 0.11
    for seconds in (0.05, 0.15) * 10:
        durations.observe(seconds)
    assert durations.allowance_s > steady + 0.1
    for _ in range(5):
        durations.observe(30.0)
    assert durations.allowance_s == 1.0


def test_a_batch_is_never_sent_on_the_very_turn_of_its_second() -> None:
    """A grant that starts on the turn of a second (the one before was full) is sent as much
    later as the clock may be off (half the round trip, 1-30 ms), so that an estimate a little
    fast cannot put its calls into the full second before; a grant later in its second is sent
    at its slot."""
    link = FakeLink()
    clock = DatabaseClock(monotonic=lambda: link.monotonic)
    clock.observe(link.statement(out_s=0.01, served_s=0.0, back_s=0.01))
    assert SlotTiming(1_800_000_000.0, clock).fire_at_s == pytest.approx(1_800_000_000.01)
    assert SlotTiming(1_800_000_000.5, clock).fire_at_s == 1_800_000_000.5
    far = DatabaseClock(  # 200 ms each way: capped at 30 ms
        monotonic=lambda: link.monotonic
    )
    far.observe(link.statement(out_s=0.2, served_s=0.0, back_s=0.2))
    assert SlotTiming(1_800_000_000.0, far).fire_at_s == pytest.approx(1_800_000_000.03)
