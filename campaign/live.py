"""`campaign status NAME` on a terminal: a view of one campaign, refreshed once a second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from campaign import queries
from campaign.models import CONTACT_STATUSES, CallingWindow, CampaignStatus, Pacing, Progress

# The dialing rate is measured over the samples of this many seconds.
RATE_WINDOW_S = 10.0
REFRESH_INTERVAL_S = 1.0
# More than a window's worth at one sample a second; older ones are never looked at.
SAMPLES_KEPT = 64
# Statuses after which nothing changes any more: the view is printed a last time and ends.
FINISHED_STATUSES = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class Sample:
    """How many contacts were pending at a moment (seconds on a monotonic clock)."""

    at_s: float
    pending: int


@dataclass(frozen=True, slots=True)
class RateEstimate:
    """Contacts leaving `pending` per second, and the time left to dial the pending ones.

    `contacts_per_second` is None until two samples span some time; `eta_s` is None when the
    rate is unknown or zero while contacts are still pending (they may never leave: paused).
    """

    contacts_per_second: float | None
    eta_s: float | None


def estimate_rate(samples: Sequence[Sample], window_s: float = RATE_WINDOW_S) -> RateEstimate:
    """The dialing rate over the samples of the last `window_s` seconds, and the pending's ETA.

    `samples` are oldest first. The rate is the net drop of `pending` over the window divided by
    the time it spans, never below zero (redials and loads can make `pending` grow).
    """
    if not samples:
        return RateEstimate(contacts_per_second=None, eta_s=None)
    newest = samples[-1]
    oldest = next(sample for sample in samples if sample.at_s >= newest.at_s - window_s)
    elapsed_s = newest.at_s - oldest.at_s
    done = newest.pending == 0
    if elapsed_s <= 0:
        return RateEstimate(contacts_per_second=None, eta_s=0.0 if done else None)
    rate = max(0.0, (oldest.pending - newest.pending) / elapsed_s)
    if done:
        return RateEstimate(contacts_per_second=rate, eta_s=0.0)
    return RateEstimate(contacts_per_second=rate, eta_s=newest.pending / rate if rate > 0 else None)


def format_duration(seconds: float) -> str:
    """A duration for people: 42s, 3m 05s, 2h 07m, 3d 04h."""
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _dialing_line(progress: Progress, estimate: RateEstimate) -> str:
    pending = progress.counts["pending"]
    if estimate.contacts_per_second is None:
        rate = "measuring…"
    else:
        rate = f"{estimate.contacts_per_second:,.1f} contacts/s"
    if progress.status in FINISHED_STATUSES:
        eta = f"{progress.status.value}"
    elif pending == 0:
        eta = "nothing pending"
    elif progress.status == CampaignStatus.PAUSED:
        eta = f"paused, {pending:,} pending"
    elif estimate.eta_s is None:
        eta = f"unknown, {pending:,} pending"
    else:
        eta = f"{format_duration(estimate.eta_s)} for {pending:,} pending"
    return f"dialing  {rate}   ETA {eta}"


def _counts_table(names: Sequence[str], values: Sequence[str]) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for name in names:
        table.add_column(name, justify="right")
    table.add_row(*values)
    return table


def render_status(
    progress: Progress,
    estimate: RateEstimate,
    window: CallingWindow | None = None,
    pacing: Pacing | None = None,
) -> RenderableType:
    """The view of one campaign: counts by status, call outcomes, dialing rate and ETA, its
    calling hours with the contacts that wait for their window, and its pacing."""
    title = Text(f"campaign {progress.campaign} (id {progress.campaign_id}): ", style="bold")
    title.append(progress.status.value)
    contacts = _counts_table(
        ("total", *CONTACT_STATUSES),
        (f"{progress.total:,}", *(f"{progress.counts[status]:,}" for status in CONTACT_STATUSES)),
    )
    answer_rate = "-" if progress.answer_rate is None else f"{progress.answer_rate:.1%}"
    calls = _counts_table(
        ("answered", "busy", "no-answer", "failed", "timeout", "answer rate"),
        (
            f"{progress.answered:,}",
            f"{progress.busy:,}",
            f"{progress.no_answer:,}",
            f"{progress.call_failed:,}",
            f"{progress.timeout:,}",
            answer_rate,
        ),
    )
    return Group(
        title,
        Text("contacts", style="bold"),
        contacts,
        Text("calls", style="bold"),
        calls,
        Text(_dialing_line(progress, estimate)),
        *([Text(window.line(progress.waiting_for_window))] if window is not None else []),
        *([Text(pacing.line())] if pacing is not None else []),
        *([Text(line)] if (line := progress.responses_line()) is not None else []),
    )


async def watch_status(
    pool: asyncpg.Pool,
    name: str,
    console: Console,
    stop: asyncio.Event,
    *,
    interval_s: float = REFRESH_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    account_max_concurrent_calls: int | None = None,
) -> Progress | None:
    """Show campaign `name` live on `console` until it is completed or cancelled, or `stop` is set.

    The last view stays on screen. Returns the campaign's last progress, or None when there is
    no campaign of that name (any more).
    """
    samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)
    progress: Progress | None = None
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            progress = await queries.progress(pool, name)
            if progress is None:
                return None
            samples.append(Sample(at_s=clock(), pending=progress.counts["pending"]))
            window = await queries.calling_window(pool, name)
            pacing = await queries.pacing(
                pool, name, account_max_concurrent_calls=account_max_concurrent_calls
            )
            live.update(
                render_status(progress, estimate_rate(samples), window, pacing), refresh=True
            )
            if progress.status in FINISHED_STATUSES:
                return progress
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if stop.is_set():
                return progress
