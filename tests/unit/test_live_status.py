"""The live `campaign status` view: the dialing rate and ETA, durations, and what it shows."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from rich.console import Console

from campaign.live import RateEstimate, Sample, estimate_rate, format_duration, render_status
from campaign.models import CONTACT_STATUSES, CampaignStatus, Progress


def samples(*points: tuple[float, int]) -> list[Sample]:
    return [Sample(at_s=at_s, pending=pending) for at_s, pending in points]


def test_rate_is_the_drop_in_pending_per_second() -> None:
    """1,000 pending dropping by 50 a second: 50 contacts/s and 19 s left for the 950 pending."""
    estimate = estimate_rate(samples((0.0, 1000), (0.5, 980), (1.0, 950)))
    assert estimate == RateEstimate(contacts_per_second=50.0, eta_s=19.0)


def test_rate_uses_only_the_last_window() -> None:
    """A burst older than the window does not count: only samples of the last 10 s do."""
    history = samples((0.0, 10_000), (1.0, 5_000), *((float(t), 5_000 - (t - 1) * 10)
                                                      for t in range(2, 16)))  # fmt: skip
    # Newest at 15 s (pending 4,860); the window starts at 5 s (pending 4,960).
    estimate = estimate_rate(history, window_s=10.0)
    assert estimate.contacts_per_second == pytest.approx(10.0)
    assert estimate.eta_s == pytest.approx(486.0)


def test_uneven_sampling_divides_by_the_time_spanned() -> None:
    """Samples late by a slow query still give the true rate (drop / seconds spanned)."""
    estimate = estimate_rate(samples((100.0, 600), (101.7, 583), (104.0, 560)))
    assert estimate.contacts_per_second == pytest.approx(10.0)
    assert estimate.eta_s == pytest.approx(56.0)


def test_one_sample_is_not_a_rate() -> None:
    """With one sample (or none) the rate is unknown, and so is the ETA unless nothing waits."""
    assert estimate_rate([]) == RateEstimate(contacts_per_second=None, eta_s=None)
    assert estimate_rate(samples((5.0, 40))) == RateEstimate(None, None)
    assert estimate_rate(samples((5.0, 0))) == RateEstimate(None, 0.0)


def test_no_progress_has_no_eta() -> None:
    """A paused or stuck campaign: rate 0 and no ETA (not an infinite or made-up one)."""
    assert estimate_rate(samples((0.0, 70), (5.0, 70), (10.0, 70))) == RateEstimate(0.0, None)


def test_growing_pending_is_a_zero_rate() -> None:
    """Redials or a load make pending grow: the rate is 0, never negative, and there is no ETA."""
    assert estimate_rate(samples((0.0, 100), (2.0, 140))) == RateEstimate(0.0, None)


def test_nothing_pending_is_done() -> None:
    """Once nothing is pending the ETA is 0 s, with the rate it took to get there."""
    assert estimate_rate(samples((0.0, 30), (3.0, 0))) == RateEstimate(10.0, 0.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42.4, "42s"),
        (59.6, "1m 00s"),
        (185, "3m 05s"),
        (7_620, "2h 07m"),
        (273_600, "3d 04h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Durations read as a person says them, with the two largest units."""
    assert format_duration(seconds) == text


def progress(status: CampaignStatus = CampaignStatus.RUNNING, **counts: int) -> Progress:
    by_status = dict.fromkeys(CONTACT_STATUSES, 0) | {
        key: value for key, value in counts.items() if key in CONTACT_STATUSES
    }
    return Progress(
        campaign_id=7,
        campaign="reminders",
        status=status,
        total=sum(by_status.values()),
        counts=by_status,
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        answered=counts.get("answered", 0),
        busy=counts.get("busy", 0),
        no_answer=counts.get("no_answer", 0),
        call_failed=counts.get("call_failed", 0),
        timeout=counts.get("timeout", 0),
        answer_rate=counts["answered"] / 1_000 if "answered" in counts else None,
    )


def rendered(progress: Progress, estimate: RateEstimate) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(render_status(progress, estimate))
    return console.export_text()


def test_view_shows_counts_outcomes_rate_and_eta() -> None:
    """The view names the campaign and shows every status count, every call outcome with the
    answer rate, the dialing rate and the ETA of the pending contacts."""
    running = progress(
        pending=12_000, sending=100, fired=900, queued=100, failed=3, unknown=1,
        answered=712, busy=101, no_answer=98, call_failed=40, timeout=49,
    )  # fmt: skip
    text = rendered(running, RateEstimate(contacts_per_second=42.5, eta_s=282.0))
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == "campaign reminders (id 7): running"
    assert lines[1] == "contacts"
    assert lines[2].split() == ["total", *CONTACT_STATUSES]
    assert lines[3].split() == [
        "13,104", "12,000", "0", "100", "900", "100", "3", "1", "0", "0", "0",
    ]  # fmt: skip
    assert lines[4] == "calls"
    assert lines[5].split() == [
        "answered", "busy", "no-answer", "failed", "timeout", "answer", "rate",
    ]  # fmt: skip
    assert lines[6].split() == ["712", "101", "98", "40", "49", "71.2%"]
    assert lines[7] == "dialing  42.5 contacts/s   ETA 4m 42s for 12,000 pending"


@pytest.mark.parametrize(
    ("status", "pending", "estimate", "line"),
    [
        (CampaignStatus.RUNNING, 50, RateEstimate(None, None), "measuring…   ETA unknown, 50"),
        (CampaignStatus.RUNNING, 50, RateEstimate(0.0, None), "0.0 contacts/s   ETA unknown"),
        (CampaignStatus.PAUSED, 50, RateEstimate(0.0, None), "ETA paused, 50 pending"),
        (CampaignStatus.RUNNING, 0, RateEstimate(3.0, 0.0), "ETA nothing pending"),
        (CampaignStatus.COMPLETED, 0, RateEstimate(3.0, 0.0), "ETA completed"),
        (CampaignStatus.CANCELLED, 0, RateEstimate(0.0, 0.0), "ETA cancelled"),
    ],
)
def test_dialing_line_says_why_there_is_no_eta(
    status: CampaignStatus, pending: int, estimate: RateEstimate, line: str
) -> None:
    """Without an ETA the view says why: still measuring, no progress, paused, or finished."""
    text = rendered(progress(status, pending=pending, fired=10), estimate)
    assert line in text.splitlines()[-1]


def test_view_without_ended_calls_has_no_answer_rate() -> None:
    """Before any call ended the answer rate is shown as "-", not 0%."""
    text = rendered(replace(progress(pending=5), answer_rate=None), RateEstimate(None, None))
    assert text.splitlines()[6].split() == ["0", "0", "0", "0", "0", "-"]


def test_view_shows_the_responses_by_meaning() -> None:
    """Keys pressed are counted by meaning, most first, under the dialing line; no line when
    nobody pressed a key."""
    pressed = dataclasses.replace(
        progress(fired=20), responses={"cancelled": 3, "confirmed": 12, "opt-out": 1}
    )
    lines = rendered(pressed, RateEstimate(None, None)).splitlines()
    assert lines[-1].rstrip() == "responses: confirmed 12, cancelled 3, opt-out 1"
    assert "responses" not in rendered(progress(fired=20), RateEstimate(None, None))
