"""The simulator ledger's live-call arithmetic on a known set of calls: the timeline of live
calls, the most live at once, and the time-weighted mean over a span."""

from __future__ import annotations

import pytest

from campaign.simulator import Ledger, SimulatedCall, time_weighted_mean


def answered_call(
    index: int, dial_at: float, talk_s: float, cancelled: bool = False
) -> SimulatedCall:
    """A call answered the moment it is dialled and live for `talk_s`."""
    return SimulatedCall(
        request_uuid=f"request-{index}",
        call_uuid=f"call-{index}",
        destination=f"1415555{index:04d}",
        from_number="14155550100",
        request_sequence=index,
        accepted_at=dial_at,
        dial_at=dial_at,
        outcome="completed",
        queued=False,
        parameters={},
        talk_s=talk_s,
        cancelled=cancelled,
    )


@pytest.fixture
def ledger() -> Ledger:
    """A [0, 10), B [2, 4), C [4, 6) (dialled as B ends), D rings for no time at 5, E cancelled."""
    return Ledger(
        dials=[
            answered_call(1, 0.0, 10.0),
            answered_call(2, 2.0, 2.0),
            answered_call(3, 4.0, 2.0),
            answered_call(4, 5.0, 0.0),
            answered_call(5, 1.0, 8.0, cancelled=True),
        ]
    )


def test_the_timeline_counts_each_call_from_its_dial_to_its_end(ledger: Ledger) -> None:
    """The change points are A's dial, B's dial, C's end and A's end: B ending as C is dialled
    is no change, a call of no time is never live, a cancelled call never counts; at most 2."""
    assert ledger.live_calls_timeline() == [(0.0, 1), (2.0, 2), (6.0, 1), (10.0, 0)]
    assert ledger.max_live_calls() == 2
    assert ledger.summary()["max_live_calls"] == 2


@pytest.mark.parametrize(
    ("start", "end", "mean"),
    [
        (0.0, 10.0, 1.4),  # 1 for 2 s, 2 for 4 s, 1 for 4 s: 14 call-seconds over 10 s
        (3.0, 8.0, 1.6),  # 2 for 3 s, 1 for 2 s
        (-5.0, 0.0, 0.0),  # before any call
        (10.0, 20.0, 0.0),  # after the last
        (-10.0, 20.0, 14.0 / 30.0),  # the whole run and idle time either side
        (3.0, 3.0, 2.0),  # a moment: what is live then
    ],
)
def test_the_mean_weighs_each_count_by_how_long_it_held(
    ledger: Ledger, start: float, end: float, mean: float
) -> None:
    """mean_live_calls(start, end) is the area under the live-call count over the span divided
    by its length, whether the span starts before, inside or after the calls."""
    assert ledger.mean_live_calls(start, end) == pytest.approx(mean)


def test_the_mean_reads_the_served_json_and_refuses_a_backward_span(ledger: Ledger) -> None:
    """time_weighted_mean takes the ledger endpoint's [time, count] lists as well; a span that
    ends before it starts is an error, not a negative mean."""
    served = ledger.to_json()["live_calls_timeline"]
    assert served == [[0.0, 1], [2.0, 2], [6.0, 1], [10.0, 0]]
    assert time_weighted_mean(served, 0.0, 10.0) == pytest.approx(1.4)
    with pytest.raises(ValueError, match="before it starts"):
        ledger.mean_live_calls(5.0, 4.0)


def test_an_empty_ledger_has_no_live_calls() -> None:
    """No dials: an empty timeline, 0 live at most, a mean of 0."""
    ledger = Ledger()
    assert ledger.live_calls_timeline() == []
    assert ledger.max_live_calls() == 0
    assert ledger.mean_live_calls(0.0, 1.0) == 0.0


def test_what_a_destination_heard_is_read_across_its_calls() -> None:
    """heard/spoken_text/digits_pressed find a destination written with or without its `+`,
    take each of its calls' entries in dial order (a redial after the first), skip other
    destinations, count a key the menu refused as pressed, and the served JSON carries each
    call's entries."""
    first, other, redial = (
        answered_call(1, 0.0, 5.0),
        answered_call(2, 1.0, 5.0),
        answered_call(1, 9.0, 5.0),
    )
    first.heard.extend(
        [
            {
                "kind": "speak",
                "text": "Hello Ann",
                "voice": "WOMAN",
                "language": "en-US",
                "loop": 1,
            },
            {"kind": "digits", "digits": "7", "valid": False},
            {"kind": "no_digits"},
        ]
    )
    other.heard.append(
        {"kind": "speak", "text": "Hello Bob", "voice": "WOMAN", "language": "en-US", "loop": 1}
    )
    redial.heard.extend(
        [
            {
                "kind": "speak",
                "text": "Hello again",
                "voice": "MAN",
                "language": "en-GB",
                "loop": 1,
            },
            {"kind": "digits", "digits": "1", "valid": True},
        ]
    )
    ledger = Ledger(dials=[first, other, redial])
    destination = first.destination
    assert ledger.heard(destination) == first.heard + redial.heard
    assert ledger.spoken_text("+" + destination) == "Hello Ann Hello again"
    assert ledger.digits_pressed(destination) == ["7", "1"]
    assert ledger.heard("+14155559999") == []
    assert ledger.spoken_text("14155559999") == ""
    assert [dial["heard"] for dial in ledger.to_json()["dials"]] == [
        first.heard,
        other.heard,
        redial.heard,
    ]
