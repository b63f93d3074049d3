"""The live `campaign status` loop against a real database: when it refreshes and when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
from rich.console import Console

from campaign.live import watch_status
from campaign.models import CampaignStatus


async def _campaign(pool: asyncpg.Pool, name: str, status: str, pending: int, fired: int) -> int:
    campaign_id: int = await pool.fetchval(
        """INSERT INTO campaigns (name, status, "from", answer_url)
           VALUES ($1, $2, '+14155550100', 'https://example.com/a.xml') RETURNING id""",
        name,
        status,
    )
    await pool.execute(
        """
        INSERT INTO contacts (campaign_id, destination, raw_destination, status, call_status)
        SELECT $1, '+1415' || lpad(n::text, 7, '0'), 'raw',
               CASE WHEN n <= $3::integer THEN 'fired' ELSE 'pending' END,
               CASE WHEN n <= $3::integer THEN 'completed' END
        FROM generate_series(1, $2::integer + $3::integer) AS n
        """,
        campaign_id,
        pending,
        fired,
    )
    return campaign_id


def _recording_console() -> Console:
    # Not a terminal: rich's Live then prints only the final view, once, which the test reads.
    return Console(record=True, width=120, color_system=None, force_terminal=False)


async def test_finished_campaign_is_shown_once_and_ends(pool: asyncpg.Pool) -> None:
    """A completed campaign: the view is printed once and the watch ends without being stopped."""
    await _campaign(pool, "done", "completed", pending=0, fired=3)
    console = _recording_console()

    final = await asyncio.wait_for(
        watch_status(pool, "done", console, asyncio.Event(), interval_s=0.01), timeout=10
    )

    assert final is not None
    assert final.status == CampaignStatus.COMPLETED
    text = console.export_text()
    assert text.count("campaign done (id 1): completed") == 1
    assert "100.0%" in text
    assert "ETA completed" in text


async def test_refreshes_until_stopped_with_the_rate_between_samples(pool: asyncpg.Pool) -> None:
    """A running campaign refreshes until Ctrl-C (the stop event); the rate is the drop in
    pending between samples per second of the clock: 60 left pending in 1 s."""
    campaign_id = await _campaign(pool, "live", "running", pending=100, fired=0)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[str]] = []

    async def dial_sixty() -> str:
        result: str = await pool.execute(
            """UPDATE contacts SET status = 'fired'
               WHERE id IN (SELECT id FROM contacts WHERE campaign_id = $1 ORDER BY id LIMIT 60)""",
            campaign_id,
        )
        return result

    def clock() -> Callable[[], float]:
        readings = iter([0.0, 1.0])

        def read() -> float:
            now = next(readings)
            if now == 0.0:
                # After the first sample, before the next refresh: 60 contacts are dialled.
                tasks.append(asyncio.get_running_loop().create_task(dial_sixty()))
            else:
                stop.set()
            return now

        return read

    console = _recording_console()
    final = await asyncio.wait_for(
        watch_status(pool, "live", console, stop, interval_s=0.5, clock=clock()), timeout=10
    )

    assert await tasks[0] == "UPDATE 60"
    assert final is not None
    assert final.counts["pending"] == 40
    text = console.export_text()
    assert "dialing  60.0 contacts/s   ETA 1s for 40 pending" in text


async def test_unknown_campaign_returns_none(pool: asyncpg.Pool) -> None:
    """A campaign that does not exist (or was deleted) ends the watch with None."""
    final = await watch_status(pool, "ghost", _recording_console(), asyncio.Event())
    assert final is None
