"""The look-ups behind the answers the engine serves: many per statement, each answered with
its own contact; campaigns kept, and read again once kept long enough; a database that fails
fails the requests instead of hanging them; a busy reader gives its connection back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
from worker_fixtures import wait_for

from campaign import db, queries
from campaign.config import Settings
from campaign.models import CampaignSpec
from campaign.voice import VoiceContent
from campaign.web import AnswerLookup

CONTACTS_PER_CAMPAIGN = 150


async def add_campaign(pool: asyncpg.Pool, name: str, message: str, first_number: int) -> int:
    """A campaign that says `message`, with CONTACTS_PER_CAMPAIGN contacts whose first_name
    names their campaign and number."""
    async with pool.acquire() as connection:
        campaign = await queries.create_campaign(
            connection,
            CampaignSpec(
                name=name,
                from_number="+14155550100",
                answer_url="https://engine.example/plivo/answer",
                content=VoiceContent(message=message),
            ),
        )
        await connection.executemany(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, fields)"
            " VALUES ($1, $2, $2, $3)",
            [
                (campaign.id, f"+1{first_number + index}", {"first_name": f"{name} {index}"})
                for index in range(CONTACTS_PER_CAMPAIGN)
            ],
        )
    return campaign.id


async def test_lookups_arriving_together_each_get_their_own_contact(pool: asyncpg.Pool) -> None:
    """450 look-ups at once (more than one statement's worth), across two campaigns and numbers
    no contact has, with room for one campaign only: each gets its own contact's fields and
    campaign, and an unknown number (or an unknown campaign) gets None."""
    first = await add_campaign(pool, "first", "Hello {first_name}.", 4_155_551_000)
    second = await add_campaign(pool, "second", "Hi {first_name}!", 4_155_552_000)
    lookup = AnswerLookup(pool, size=1)
    calls: list[tuple[int, str, tuple[str, int] | None]] = []
    for index in range(CONTACTS_PER_CAMPAIGN):
        calls.append((first, f"+1{4_155_551_000 + index}", ("first", index)))
        calls.append((second, f"+1{4_155_552_000 + index}", ("second", index)))
        # A number of the other campaign, and one of none.
        calls.append((first if index % 2 else 999_999, f"+1{4_155_552_000 + index}", None))
    results = await asyncio.gather(
        *(lookup.context(campaign_id, destination) for campaign_id, destination, _ in calls)
    )
    for (campaign_id, destination, expected), context in zip(calls, results, strict=True):
        if expected is None:
            assert context is None, destination
            continue
        name, index = expected
        assert context is not None, destination
        assert context.fields == {"first_name": f"{name} {index}"}
        assert context.campaign.id == campaign_id
        assert context.campaign.name == name
        assert context.campaign.content.message == (
            "Hello {first_name}." if name == "first" else "Hi {first_name}!"
        )


async def test_a_campaign_is_kept_and_read_again_once_kept_long_enough(pool: asyncpg.Pool) -> None:
    """A lookup keeps a campaign's row: a message changed in SQL afterwards is not seen by one
    that keeps campaigns an hour, and is by one that keeps them no time at all."""
    campaign_id = await add_campaign(pool, "kept", "Hello {first_name}.", 4_155_553_000)
    keeping = AnswerLookup(pool, kept_s=3600.0)
    rereading = AnswerLookup(pool, kept_s=0.0)
    for lookup in (keeping, rereading):
        context = await lookup.context(campaign_id, "+14155553000")
        assert context is not None
        assert context.campaign.content.message == "Hello {first_name}."
    await pool.execute(
        "UPDATE campaigns SET message = 'Changed {first_name}.' WHERE id = $1", campaign_id
    )
    kept = await keeping.context(campaign_id, "+14155553001")
    reread = await rereading.context(campaign_id, "+14155553001")
    assert kept is not None
    assert kept.campaign.content.message == "Hello {first_name}."
    assert reread is not None
    assert reread.campaign.content.message == "Changed {first_name}."
    # The contact's own fields are read every time.
    await pool.execute(
        'UPDATE contacts SET fields = \'{"first_name": "Renamed"}\' '
        "WHERE campaign_id = $1 AND destination = '+14155553001'",
        campaign_id,
    )
    renamed = await keeping.context(campaign_id, "+14155553001")
    assert renamed is not None
    assert renamed.fields == {"first_name": "Renamed"}


async def test_lookups_without_a_database_fail_instead_of_hanging(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """When no connection can be had (the pool closed), every waiting look-up raises the error
    at once: none is left waiting for an answer that will never come."""
    campaign_id = await add_campaign(pool, "closed", "Hello {first_name}.", 4_155_554_000)
    async with db.open_pool(settings) as closing:
        lookup = AnswerLookup(closing)
    async with asyncio.timeout(10):
        results = await asyncio.gather(
            *(lookup.context(campaign_id, f"+1{4_155_554_000 + i}") for i in range(20)),
            return_exceptions=True,
        )
    assert all(isinstance(result, asyncpg.InterfaceError) for result in results), results


@contextlib.asynccontextmanager
async def steady_lookups(lookup: AnswerLookup, campaign_id: int) -> AsyncIterator[list[int]]:
    """Look-ups that keep coming whatever the replies do, as Plivo's requests, up to 200 waiting
    at once (more than a statement takes, so that some always wait while one runs); yields the
    count of answers."""
    answered = [0]
    waiting: set[asyncio.Task[object]] = set()

    def done(task: asyncio.Task[object]) -> None:
        waiting.discard(task)
        answered[0] += 1

    async def arrive() -> None:
        index = 0
        while True:
            if len(waiting) < 200:
                task = asyncio.create_task(
                    lookup.context(campaign_id, f"+1{4_155_555_000 + index % 100}")
                )
                waiting.add(task)
                task.add_done_callback(done)
                index += 1
            await asyncio.sleep(0)

    arrivals = asyncio.create_task(arrive())
    try:
        yield answered
    finally:
        arrivals.cancel()
        for task in waiting:
            task.cancel()
        await asyncio.gather(arrivals, *waiting, return_exceptions=True)


async def test_a_busy_reader_gives_its_connection_back(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """While look-ups keep coming, the reader holding the pool's last free connection still
    gives it back after hold_s, so that another user of the pool (the dialer) gets it."""
    campaign_id = await add_campaign(pool, "busy", "Hello {first_name}.", 4_155_555_000)
    two_connections = settings.model_copy(update={"database_pool_size": 2})
    async with db.open_pool(two_connections) as small, small.acquire():
        # One connection is taken (by a batch being dialled, say); the reader has the other.
        lookup = AnswerLookup(small, readers=1, max_batch=50, hold_s=0.05)
        async with steady_lookups(lookup, campaign_id) as answered:

            async def busy() -> bool:
                return answered[0] >= 500

            await wait_for(busy, timeout_s=10)
            async with asyncio.timeout(5), small.acquire() as connection:
                assert await connection.fetchval("SELECT 1") == 1
            # And the reader gets a connection again: the look-ups go on.
            before = answered[0]

            async def more() -> bool:
                return answered[0] > before

            await wait_for(more, timeout_s=10)
