"""Calling hours in each callee's local time, schedules, suppression and per-number caps, as the
claim applies them, on the injected database clock: the rules hold at any hour of any day,
across daylight saving time, in zones ahead of and behind UTC."""

from __future__ import annotations

import asyncio
import time as time_module
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

import aiohttp
import asyncpg
import pytest
from clock_fixtures import Clock
from plivo_fixtures import FakeClock, client_config, simulator_config
from worker_fixtures import claim_now, claimed, wait_for, worker_config

from campaign import queries
from campaign.models import CampaignSpec, Schedule
from campaign.plivo import PlivoClient
from campaign.ratelimit import SHARED_SLOT_SLACK_S
from campaign.simulator import running_simulator
from campaign.worker import Worker

DAY_HOURS = ((time(8), time(21)),)


async def campaign_with(
    pool: asyncpg.Pool,
    zones: Sequence[Sequence[str]],
    *,
    schedule: Schedule | None = None,
    name: str = "hours",
    first: int = 14155551000,
    **spec: object,
) -> int:
    """A running campaign with one contact per entry of `zones` (its time zones), due now."""
    campaign = CampaignSpec(
        name=name,
        from_number="+14155550100",
        answer_url="https://example.com/answer",
        schedule=schedule or Schedule(calling_hours=DAY_HOURS),
        **spec,  # type: ignore[arg-type]  # the few CampaignSpec fields a test sets
    )
    async with pool.acquire() as connection:
        created = await queries.create_campaign(connection, campaign)
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, time_zones,"
            " next_attempt_at) VALUES ($1, $2, $2, $3, '-infinity')",
            [(created.id, f"+{first + index}", list(z)) for index, z in enumerate(zones)],
        )
    return created.id


async def release(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE contacts SET status = 'pending' WHERE status = 'claimed'")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("instant", "open_"),
    [
        # New York, 08:00-21:00: the first Sunday of March 2026 is still EST (UTC-5) at 12:30
        # UTC (07:30 local: closed); a week later DST has begun (UTC-4): 08:30, open.
        ("2026-03-01T12:30:00+00:00", False),
        ("2026-03-08T12:30:00+00:00", True),
        # November's change back: 00:59 UTC on Nov 2 is 20:59 EDT (open), 01:30 UTC on Nov 1
        # 21:30 EDT (closed); 01:30 UTC on Nov 2 is 20:30 EST (open again).
        ("2026-11-02T00:59:00+00:00", True),
        ("2026-11-01T01:30:00+00:00", False),
        ("2026-11-02T01:30:00+00:00", True),
    ],
)
async def test_the_window_follows_daylight_saving_time(
    clocked_pool: asyncpg.Pool, clock: Clock, instant: str, open_: bool
) -> None:
    """A New York callee's 08:00-21:00 is read by the zone's rules, so the same UTC hour is in
    or out of the window depending on the season."""
    await clock.set(at(instant))
    campaign_id = await campaign_with(clocked_pool, [["America/New_York"]])
    assert bool(await claimed(clocked_pool, campaign_id)) is open_


@pytest.mark.parametrize(
    ("instant", "zone", "open_"),
    [
        # Kolkata is UTC+05:30: 02:29 UTC is 07:59 (closed), 02:30 UTC is 08:00 (open: the
        # window's start is in it).
        ("2026-12-02T02:29:00+00:00", "Asia/Kolkata", False),
        ("2026-12-02T02:30:00+00:00", "Asia/Kolkata", True),
        # Los Angeles is UTC-8 in December: 04:59 UTC is 20:59 (open), 05:00 UTC is 21:00
        # (closed: the window's end is not in it).
        ("2026-12-03T04:59:00+00:00", "America/Los_Angeles", True),
        ("2026-12-03T05:00:00+00:00", "America/Los_Angeles", False),
    ],
)
async def test_zones_ahead_of_and_behind_utc(
    clocked_pool: asyncpg.Pool, clock: Clock, instant: str, zone: str, open_: bool
) -> None:
    """The window opens at the start of the hours and closes at their end, in the callee's own
    time, whichever side of UTC it is."""
    await clock.set(at(instant))
    campaign_id = await campaign_with(clocked_pool, [[zone]])
    assert bool(await claimed(clocked_pool, campaign_id)) is open_


async def test_a_number_of_several_zones_waits_for_all_of_them(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A number whose prefix spans New York and Los Angeles is dialled only while both are in
    the window: not at 09:00 in New York (06:00 in Los Angeles), yes at noon in New York; a
    New York-only number is dialled at 09:00 already."""
    await clock.set(at("2026-12-02T14:00:00+00:00"))  # 09:00 EST, 06:00 PST
    campaign_id = await campaign_with(
        clocked_pool, [["America/Los_Angeles", "America/New_York"], ["America/New_York"]]
    )
    assert await claimed(clocked_pool, campaign_id) == ["+14155551001"]
    await release(clocked_pool)
    await clock.set(at("2026-12-02T17:00:00+00:00"))  # 12:00 EST, 09:00 PST
    assert await claimed(clocked_pool, campaign_id) == ["+14155551000", "+14155551001"]


async def test_a_skipped_date_is_the_callees_date(clocked_pool: asyncpg.Pool, clock: Clock) -> None:
    """Christmas skipped: in Auckland (UTC+13 in December) it starts at 11:00 UTC on the 24th,
    so 20:00 UTC on the 24th (09:00 on the 25th there) is closed, and 20:00 UTC on the 25th
    (09:00 on the 26th) open again."""
    schedule = Schedule(calling_hours=DAY_HOURS, skip_dates=(date(2026, 12, 25),))
    await clock.set(at("2026-12-24T20:00:00+00:00"))
    campaign_id = await campaign_with(clocked_pool, [["Pacific/Auckland"]], schedule=schedule)
    assert await claimed(clocked_pool, campaign_id) == []
    await clock.set(at("2026-12-25T20:00:00+00:00"))
    assert await claimed(clocked_pool, campaign_id) == ["+14155551000"]


async def test_the_weekday_is_the_callees(clocked_pool: asyncpg.Pool, clock: Clock) -> None:
    """Monday to Friday: 23:30 UTC on Friday 4 December is 08:30 on Saturday in Tokyo (closed);
    23:30 UTC on Thursday is 08:30 on Friday there (open)."""
    weekdays = Schedule(calling_hours=DAY_HOURS, calling_days=("mon", "tue", "wed", "thu", "fri"))
    await clock.set(at("2026-12-04T23:30:00+00:00"))
    campaign_id = await campaign_with(clocked_pool, [["Asia/Tokyo"]], schedule=weekdays)
    assert await claimed(clocked_pool, campaign_id) == []
    await clock.set(at("2026-12-03T23:30:00+00:00"))
    assert await claimed(clocked_pool, campaign_id) == ["+14155551000"]


async def test_nothing_before_the_start_and_expired_at_the_end(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """Before start_at nothing is claimed (the claim says when to come back); from end_at nothing
    is, and the contacts not dialled become `expired` while those dialled keep their outcome."""
    start, end = at("2026-12-03T15:00:00+00:00"), at("2026-12-03T18:00:00+00:00")
    schedule = Schedule(calling_hours=None, start_at=start, end_at=end)
    await clock.set(at("2026-12-03T14:00:00+00:00"))
    campaign_id = await campaign_with(
        clocked_pool, [["America/New_York"], ["America/Chicago"]], schedule=schedule
    )
    claim = await queries.claim_batch(
        clocked_pool,
        campaign_id=campaign_id,
        worker_id="w",
        wanted=1,
        lease_s=60,
        pace_window_s=1.0,
        call_limiters=(),
        request_limiters=(),
        own_limiters=(),
        shared_slot_slack_s=SHARED_SLOT_SLACK_S,
        write_ahead_within_s=-1.0,
    )
    assert claim.contact_ids == []
    assert claim.retry_at_s == start.timestamp()
    await clock.set(start)
    assert len(await claimed(clocked_pool, campaign_id)) == 2
    await clocked_pool.execute(
        "UPDATE contacts SET status = CASE WHEN destination = '+14155551000' THEN 'fired'"
        " ELSE 'pending' END"
    )
    await clock.set(end)
    assert await claimed(clocked_pool, campaign_id) == []
    assert await queries.expire_ended_campaigns(clocked_pool) == {campaign_id: 1}
    rows = await clocked_pool.fetch("SELECT destination, status FROM contacts ORDER BY id")
    assert [(r["destination"], r["status"]) for r in rows] == [
        ("+14155551000", "fired"),
        ("+14155551001", "expired"),
    ]


async def test_a_paused_campaign_completes_at_its_end(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A campaign paused when its end_at comes: its contacts not dialled expire, and the
    campaign completes (it stayed paused for ever before); a paused one before its end stays."""
    await clock.set(at("2026-12-02T17:00:00+00:00"))
    schedule = Schedule(calling_hours=None, end_at=at("2026-12-02T18:00:00+00:00"))
    campaign_id = await campaign_with(clocked_pool, [["America/New_York"]], schedule=schedule)
    await clocked_pool.execute("UPDATE campaigns SET status = 'paused' WHERE id = $1", campaign_id)

    async def complete() -> list[str]:
        async with clocked_pool.acquire() as connection, connection.transaction():
            locked = await queries.lock_finished_campaigns(connection, None, callback_wait_s=60)
            return await queries.complete_finished(connection, locked, callback_wait_s=60)

    assert await complete() == []
    await clock.set(at("2026-12-02T18:00:00+00:00"))
    assert await queries.expire_ended_campaigns(clocked_pool) == {campaign_id: 1}
    assert await complete() == ["hours"]
    status = await clocked_pool.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id)
    assert status == "completed"


async def _contacts_due_reads(connection: queries.Connection) -> int:
    """Index entries read from contacts_due so far (this backend's statistics flushed first)."""
    await connection.execute("SELECT pg_stat_force_next_flush()")
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    reads: int = await connection.fetchval(
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'contacts_due'"
    )
    return reads


async def test_the_claim_reads_only_open_sets_of_zones_from_its_index(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """With 2,000 contacts due in Tokyo, where it is night, and 20 in New York, where it is day,
    a claim takes the 20 and reads a few dozen entries of contacts_due, not the 2,000: the index
    is keyed by each set's hash of zones (hash_array), and the claim finds an open set by it."""
    pool = clocked_pool
    await clock.set(at("2026-12-02T17:00:00+00:00"))  # 12:00 in New York, 02:00 in Tokyo
    zones = [["Asia/Tokyo"]] * 2_000 + [["America/New_York"]] * 20
    campaign_id = await campaign_with(pool, zones, batch_size=100)
    await pool.execute("ANALYZE contacts")
    async with pool.acquire() as connection:
        before = await _contacts_due_reads(connection)
        claim = await claim_now(connection, campaign_id)
        read = await _contacts_due_reads(connection) - before
    assert len(claim.destinations) == 20
    assert all(int(d[1:]) >= 14155551000 + 2_000 for d in claim.destinations)
    assert read < 100


async def test_a_number_suppressed_after_the_load_is_never_dialled(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A number put on the `default` list after the load (or on a list the campaign honours)
    is settled `suppressed` by the claim, never dialled; one on a list the campaign does not
    honour is dialled."""
    await clock.set(at("2026-12-02T17:00:00+00:00"))
    campaign_id = await campaign_with(
        clocked_pool,
        [["America/New_York"]] * 3,
        schedule=Schedule(),
        suppression_lists=("default", "vip-opt-outs"),
    )
    await clocked_pool.executemany(
        "INSERT INTO suppressions (list, destination, reason) VALUES ($1, $2, 'asked')",
        [("default", "+14155551000"), ("vip-opt-outs", "+14155551001"), ("other", "+14155551002")],
    )
    assert await claimed(clocked_pool, campaign_id) == ["+14155551002"]
    rows = await clocked_pool.fetch("SELECT status, last_error FROM contacts ORDER BY id")
    assert [(r["status"], r["last_error"]) for r in rows] == [
        ("suppressed", "suppressed: on list default"),
        ("suppressed", "suppressed: on list vip-opt-outs"),
        ("claimed", None),
    ]


async def test_a_redial_never_overrides_a_suppression(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A busy call's redial puts its contact back to pending; the number was suppressed since:
    the claim settles it `suppressed` instead of dialling it again."""
    await clock.set(at("2026-12-02T17:00:00+00:00"))
    campaign_id = await campaign_with(clocked_pool, [["America/New_York"]], schedule=Schedule())
    await clocked_pool.execute(
        "UPDATE contacts SET attempts = 1, call_status = 'busy' WHERE campaign_id = $1",
        campaign_id,
    )
    await clocked_pool.execute(
        "INSERT INTO suppressions (list, destination) VALUES ('default', '+14155551000')"
    )
    assert await claimed(clocked_pool, campaign_id) == []
    assert await clocked_pool.fetchval("SELECT status FROM contacts") == "suppressed"


async def test_a_number_at_its_cap_waits_until_its_oldest_call_is_a_day_old(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """With at most 2 calls per number per day across every campaign, a number called twice in
    the last 24 h (by two other campaigns) is not dialled; it waits, pending, until the older of
    those calls is a day old, and is dialled then. The campaign's own cap counts its own calls
    only."""
    now = at("2026-12-02T17:00:00+00:00")
    await clock.set(now)
    campaign_id = await campaign_with(clocked_pool, [["America/New_York"]], schedule=Schedule())
    await clocked_pool.executemany(
        "INSERT INTO number_calls (destination, campaign_id, placed_at) VALUES ($1, $2, $3)",
        [
            ("+14155551000", 900, at("2026-12-01T20:00:00+00:00")),
            ("+14155551000", 901, at("2026-12-02T09:00:00+00:00")),
        ],
    )
    # The campaign's own cap of 1 is not reached: those calls were other campaigns'.
    await clocked_pool.execute(
        "UPDATE campaigns SET max_calls_per_number_per_day = 1 WHERE id = $1", campaign_id
    )
    assert await claimed(clocked_pool, campaign_id, cap=2) == []
    row = await clocked_pool.fetchrow("SELECT status, next_attempt_at, last_error FROM contacts")
    assert row is not None
    assert row["status"] == "pending"
    assert row["next_attempt_at"] == at("2026-12-02T20:00:00+00:00")
    await clock.set(at("2026-12-02T20:00:00+00:00"))
    assert await claimed(clocked_pool, campaign_id, cap=2) == ["+14155551000"]


async def test_the_campaigns_own_cap_counts_its_own_calls(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A campaign capped at 1 call per number per day, whose own call to a number was 23 h ago,
    does not dial it again until that call is a day old, however few others called it."""
    await clock.set(at("2026-12-02T17:00:00+00:00"))
    campaign_id = await campaign_with(
        clocked_pool, [["America/New_York"]], schedule=Schedule(), max_calls_per_number_per_day=1
    )
    await clocked_pool.execute(
        "INSERT INTO number_calls (destination, campaign_id, placed_at)"
        " VALUES ('+14155551000', $1, $2)",
        campaign_id,
        at("2026-12-01T18:00:00+00:00"),
    )
    assert await claimed(clocked_pool, campaign_id) == []
    await clock.set(at("2026-12-02T18:00:00+00:00"))
    assert await claimed(clocked_pool, campaign_id) == ["+14155551000"]


async def test_the_global_cap_counts_another_campaigns_call_in_flight(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """With at most 1 call per number per day, campaign A's call to a number, claimed but not
    yet recorded, keeps campaign B from claiming the same number; B's contact is looked at again
    a minute later, and once A's request is given back unsent, B dials it."""
    await clock.set(at("2026-12-02T17:00:00+00:00"))
    a = await campaign_with(clocked_pool, [["America/New_York"]], schedule=Schedule(), name="a")
    b = await campaign_with(clocked_pool, [["America/New_York"]], schedule=Schedule(), name="b")
    assert await claimed(clocked_pool, a, cap=1) == ["+14155551000"]
    assert await claimed(clocked_pool, b, cap=1) == []
    waiting = await clocked_pool.fetchrow(
        "SELECT status, next_attempt_at FROM contacts WHERE campaign_id = $1", b
    )
    assert waiting is not None
    assert (waiting["status"], waiting["next_attempt_at"]) == (
        "pending",
        at("2026-12-02T17:01:00+00:00"),
    )
    await release(clocked_pool)
    await clock.advance(60)
    assert await claimed(clocked_pool, b, cap=1) == ["+14155551000"]


async def test_a_retry_is_fenced_by_the_window_and_by_suppressions(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A request written ahead at 20:59:50 New York time and refused by Plivo is not sent again
    at 21:00:30 (the window closed meanwhile); nor, inside the window, to a number suppressed
    since: the fence names why, and the request is given back."""
    await clock.set(at("2026-12-03T01:59:50+00:00"))  # 20:59:50 in New York
    campaign_id = await campaign_with(clocked_pool, [["America/New_York"]])
    contact_id = await clocked_pool.fetchval("SELECT id FROM contacts")

    async def fence() -> str | None:
        reason: str | None = await clocked_pool.fetchval(
            "SELECT fence_dial_request(max(id), 'w', $1, 60) FROM dial_requests", [contact_id]
        )
        return reason

    await clocked_pool.execute(
        "SELECT start_dial_attempts($1, 'w', $2, $3, 180)",
        campaign_id,
        [contact_id],
        ["+14155551000"],
    )
    assert await fence() is None
    await clock.set(at("2026-12-03T02:00:30+00:00"))  # 21:00:30: closed
    assert await fence() == "a callee's calling window closed meanwhile"
    await clock.set(at("2026-12-03T01:59:55+00:00"))
    await clocked_pool.execute(
        "INSERT INTO suppressions (list, destination) VALUES ('default', '+14155551000')"
    )
    assert await fence() == "a number was put on a suppression list meanwhile"


async def test_a_zone_the_database_does_not_know_fails_the_insert_not_the_claims(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A script that inserts a contact with a misspelt zone, or with no zone into a campaign
    with calling hours, is refused at once; the campaign's claims and everyone's status keep
    working (before, one such row made both fail)."""
    await clock.set(at("2026-12-02T17:00:00+00:00"))
    campaign_id = await campaign_with(clocked_pool, [["America/New_York"]])
    for zones, message in (
        (["America/NewYork"], 'time zone "America/NewYork" not recognized'),
        ([], "contacts.time_zones is empty"),
    ):
        with pytest.raises(asyncpg.PostgresError, match=message):
            await clocked_pool.execute(
                "INSERT INTO contacts (campaign_id, destination, raw_destination, time_zones)"
                " VALUES ($1, '+14155559999', 'x', $2)",
                campaign_id,
                zones,
            )
    with pytest.raises(asyncpg.PostgresError, match="not recognized"):
        await clocked_pool.execute(
            "UPDATE contacts SET time_zones = '{Mars/Olympus}' WHERE campaign_id = $1",
            campaign_id,
        )
    await queries.progress_all(clocked_pool)
    assert await claimed(clocked_pool, campaign_id) == ["+14155551000"]


async def test_a_queued_call_cancelled_at_its_windows_close_is_not_counted_in_the_cap(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A queued call is listed for cancelling ten seconds before its window closes; cancelled,
    the contact waits, its attempt and its call in the per-number cap both given back."""
    await clock.set(at("2026-12-03T01:59:00+00:00"))  # 20:59 in New York
    campaign_id = await campaign_with(
        clocked_pool, [["America/New_York"]], max_calls_per_number_per_day=1
    )
    await clocked_pool.execute(
        "UPDATE contacts SET status = 'queued', attempts = 1, request_uuid = 'r-1'"
    )
    await clocked_pool.execute(
        "INSERT INTO number_calls (destination, campaign_id) VALUES ('+14155551000', $1)",
        campaign_id,
    )
    assert await queries.queued_outside_window(clocked_pool, None) == []
    await clock.set(at("2026-12-03T01:59:51+00:00"))  # 9 s before the close
    queued = await queries.queued_outside_window(clocked_pool, None)
    assert [row.destination for row in queued] == ["+14155551000"]
    await queries.requeue_cancelled_calls(clocked_pool, [queued[0].contact_id])
    row = await clocked_pool.fetchrow("SELECT status, attempts FROM contacts")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert await clocked_pool.fetchval("SELECT count(*) FROM number_calls") == 0


async def test_the_next_window_opening_is_found_per_set_of_zones(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """At 03:00 UTC on a Wednesday in December, the window of a New York and Los Angeles number
    opens when Los Angeles reaches 08:00 (16:00 UTC); with Mondays to Fridays only, on a Friday
    night it opens on Monday."""
    await clock.set(at("2026-12-02T03:00:00+00:00"))
    campaign_id = await campaign_with(clocked_pool, [["America/New_York", "America/Los_Angeles"]])
    opens = await clocked_pool.fetchval(
        "SELECT next_window_opening(k, ARRAY['America/New_York', 'America/Los_Angeles'], now())"
        " FROM campaigns k WHERE k.id = $1",
        campaign_id,
    )
    assert opens == at("2026-12-02T16:00:00+00:00")
    await clocked_pool.execute(
        "UPDATE campaigns SET calling_days = '{mon,tue,wed,thu,fri}' WHERE id = $1", campaign_id
    )
    await clock.set(at("2026-12-05T03:00:00+00:00"))  # Saturday in UTC, Friday evening in LA
    opens = await clocked_pool.fetchval(
        "SELECT next_window_opening(k, ARRAY['America/New_York', 'America/Los_Angeles'], now())"
        " FROM campaigns k WHERE k.id = $1",
        campaign_id,
    )
    assert opens == at("2026-12-07T16:00:00+00:00")


async def test_status_shows_the_first_opening_among_the_waiting_sets(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """`campaign status`'s next opening is the earliest of the windows of the sets of zones
    closed now that hold pending contacts: at 03:00 UTC, New York+Los Angeles opens at 16:00
    UTC, London at 08:00 UTC (the earlier), Tokyo is open now (not waiting); the views say so
    too. With London's contact dialled, the next is 16:00 UTC."""
    await clock.set(at("2026-12-02T03:00:00+00:00"))
    await campaign_with(
        clocked_pool,
        [["America/New_York", "America/Los_Angeles"], ["Europe/London"], ["Asia/Tokyo"]],
    )
    window = await queries.calling_window(clocked_pool, "hours")
    assert window is not None
    assert window.next_opening == at("2026-12-02T08:00:00+00:00")
    progress = await queries.progress(clocked_pool, "hours")
    assert progress is not None
    assert progress.waiting_for_window == 2
    outcomes = await clocked_pool.fetch(
        "SELECT time_zones[1] AS zone, outcome FROM contact_outcomes ORDER BY contact_id"
    )
    assert [tuple(row.values()) for row in outcomes] == [
        ("America/New_York", "waiting for calling hours"),
        ("Europe/London", "waiting for calling hours"),
        ("Asia/Tokyo", "pending"),
    ]
    assert window.line(progress.waiting_for_window) == (
        "calls placed 08:00-21:00 in each callee's local time; 2 pending wait for their "
        "calling window, the next opens 2026-12-02T08:00+00:00"
    )
    await clocked_pool.execute(
        "UPDATE contacts SET status = 'fired' WHERE time_zones = '{Europe/London}'"
    )
    window = await queries.calling_window(clocked_pool, "hours")
    assert window is not None
    assert window.next_opening == at("2026-12-02T16:00:00+00:00")


async def test_a_worker_dials_only_inside_the_window_and_cancels_queued_calls_at_its_close(
    clocked_pool: asyncpg.Pool, clock: Clock
) -> None:
    """A real worker and the simulator, the database clock moved by the test: before 08:00 in
    New York nothing is sent; at 08:00 the five contacts go out (Plivo, at 1 call per second,
    places one and queues four); at 21:00 the four calls still queued are cancelled at Plivo
    and their contacts wait, attempt not counted (the one placed is taken for fired); the next
    morning they are dialled again, and nothing was sent at night."""
    pool = clocked_pool
    await clock.set(at("2026-12-02T12:50:00+00:00"))  # 07:50 in New York
    await campaign_with(pool, [["America/New_York"]] * 5, batch_size=5)
    sim_clock = FakeClock(time_module.time())  # frozen: queued calls stay queued
    config = simulator_config(calls_per_second=1.0)
    async with (
        running_simulator(config, clock=sim_clock) as plivo,
        aiohttp.ClientSession() as session,
    ):
        stop = asyncio.Event()
        client = PlivoClient(session, client_config(plivo.base_url))
        worker = asyncio.create_task(Worker(pool, client, worker_config()).run(stop=stop))
        try:
            await asyncio.sleep(0.5)  # ten polls before 08:00
            assert plivo.ledger.make_call_requests() == []
            await clock.set(at("2026-12-02T13:00:00+00:00"))  # 08:00
            await wait_for(lambda: _statuses_are(pool, {"queued": 5}))
            assert len(plivo.ledger.make_call_requests()) == 1
            await clock.set(at("2026-12-03T02:00:00+00:00"))  # 21:00
            await wait_for(lambda: _statuses_are(pool, {"pending": 4, "fired": 1}))
            assert len(plivo.ledger.cancelled) == 4
            rows = await pool.fetch("SELECT attempts FROM contacts WHERE status = 'pending'")
            assert [row["attempts"] for row in rows] == [0] * 4
            await asyncio.sleep(0.5)  # ten polls at night
            assert len(plivo.ledger.make_call_requests()) == 1
            await clock.set(at("2026-12-03T13:00:00+00:00"))  # 08:00 the next day
            await wait_for(lambda: _statuses_are(pool, {"queued": 4, "fired": 1}))
        finally:
            stop.set()
            await asyncio.wait_for(worker, 15)
        requests = plivo.ledger.make_call_requests()
    # The morning's four in one request, or in two when a claim skipped one another statement
    # held locked for a moment (FOR UPDATE SKIP LOCKED): four calls either way.
    assert requests[0].destinations == 5
    assert sum(request.destinations for request in requests[1:]) == 4


async def _statuses_are(pool: asyncpg.Pool, expected: dict[str, int]) -> bool:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM contacts GROUP BY status")
    return {row["status"]: row["n"] for row in rows} == expected
