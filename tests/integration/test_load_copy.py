"""A load COPYs its contacts straight into `contacts` (issue 11, "Loading stays fast"): the text
its validating processes make is stored exactly, numbers are looked up only when they may be
there already, loads into one campaign run one after the other, and contacts.campaign_id is
checked per statement as its foreign key checked it per row (migration 0019)."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from test_importer import SPEC, Recorder, load
from worker_fixtures import make_campaign, numbers

from campaign import db, importer, queries
from campaign.destinations import LoadError, e164_number
from campaign.importer import CsvSource, LoadOptions, NumbersSeen, load_csv
from campaign.queries import Connection
from campaign.queries.base import sql

STRICT = LoadOptions(default_region="US", strict=True)


async def test_cells_with_copy_s_special_characters_are_stored_as_written(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Tabs, backslashes, newlines, returns, quotes, `\\N` and non-ASCII text in a row's cells
    (COPY's text format escapes the first four and reads `\\N` as NULL) reach `contacts` as
    they were written, in the phone column's raw value and in the fields."""
    hostile = ["a\tb", "back\\slash \\N", "line one\nline two", "cr\rhere", 'say "hi"', "Zoë 😀"]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["name", "phone", "note"])
    for index, value in enumerate(hostile):
        writer.writerow([value, f"+1 415 555 02{index:02d}", value + "x"])
    content = text.getvalue()
    summary, recorder = await load(pool, tmp_path / "hostile.csv", content)
    assert recorder.rejects == []
    assert summary.loaded == len(hostile)
    rows = await pool.fetch("SELECT raw_destination, fields FROM contacts ORDER BY line_number")
    assert [row["fields"] for row in rows] == [
        {"name": value, "note": value + "x"} for value in hostile
    ]
    assert [row["raw_destination"] for row in rows] == [
        f"+1 415 555 02{index:02d}" for index in range(len(hostile))
    ]


async def test_duplicates_far_apart_are_found_across_copies(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a campaign the load creates (numbers looked up only when its filter of numbers seen
    says they may be there), a number repeated many COPYs later is a duplicate: the first line
    wins, every repeat is counted, and no number is stored twice."""
    monkeypatch.setattr(importer, "ROWS_PER_COPY", 7)
    monkeypatch.setattr(importer, "ROWS_PER_COPY_IN_PROCESS", 7)
    destinations = numbers(300)
    lines = [f"p{index},{number}" for index, number in enumerate(destinations)]
    # Every tenth number again, 150 to 290 rows after its first line.
    lines += [f"again{index},{destinations[index]}" for index in range(0, 150, 10)]
    summary, _ = await load(pool, tmp_path / "dups.csv", "name,phone\n" + "\n".join(lines))
    assert (summary.loaded, summary.duplicates, summary.rejected) == (300, 15, 0)
    rows = await pool.fetch("SELECT destination, fields FROM contacts ORDER BY destination")
    assert [row["destination"] for row in rows] == destinations
    assert all(not row["fields"]["name"].startswith("again") for row in rows)


async def test_into_an_existing_campaign_every_number_is_looked_up(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A load into a campaign that has contacts already (no filter: it did not store them)
    counts the numbers it has as duplicates and stores the others."""
    await make_campaign(pool, numbers(3), name="reminders")
    content = "phone\n" + "\n".join(numbers(5))
    summary, _ = await load(pool, tmp_path / "more.csv", content, target="reminders")
    assert (summary.loaded, summary.duplicates) == (2, 3)
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 5


async def test_loads_into_one_campaign_run_one_after_the_other(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Two loads at once into one campaign, their files sharing 1,000 numbers: the second waits
    for the first to commit (its COPY could not skip a number the other holds, and each takes
    the campaign's row as it ends), then counts the shared numbers as duplicates; both succeed
    and every number is stored once (before: one of them failed on a deadlock)."""
    await make_campaign(pool, numbers(1, first=14155559000), name="reminders")
    first, second = numbers(3000), numbers(3000, first=14155553000)
    paths = []
    for name, rows in (("first", first), ("second", second)):
        path = tmp_path / f"{name}.csv"
        path.write_text("phone\n" + "\n".join(rows))  # a small test file
        paths.append(path)
    sources = [CsvSource(path) for path in paths]
    try:
        summaries = await asyncio.gather(
            *(
                load_csv(pool, source, "reminders", LoadOptions(default_region="US"), Recorder())
                for source in sources
            )
        )
    finally:
        for source in sources:
            source.close()
    assert sum(summary.loaded for summary in summaries) == 5000
    assert sorted(summary.duplicates for summary in summaries) == [0, 1000]
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 5001


async def test_a_number_inserted_by_hand_meanwhile_is_a_duplicate(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A number another session inserts into the campaign (not a load) while a load into it
    runs: the load's insertion (by the unique key, as every number of a load into an existing
    campaign) waits for it, then skips it as a duplicate; the others are stored."""
    campaign_id = await make_campaign(pool, numbers(1, first=14155559000), name="reminders")
    mine = numbers(4)
    async with pool.acquire() as other:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination) VALUES ($1, $2, $2)",
            campaign_id,
            mine[2],
        )
        path = tmp_path / "concurrent.csv"
        path.write_text("phone\n" + "\n".join(mine))  # a small test file
        source = CsvSource(path)
        loading = asyncio.create_task(
            load_csv(pool, source, "reminders", LoadOptions(default_region="US"), Recorder())
        )
        try:
            waiting = 0
            for _ in range(200):
                waiting = await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE '%FROM load_staging%'"
                )
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting == 1
            assert not loading.done()
            await transaction.commit()
            summary = await asyncio.wait_for(loading, 10)
        finally:
            if not loading.done():
                loading.cancel()
            source.close()
    assert (summary.loaded, summary.duplicates) == (3, 1)
    stored = await pool.fetch("SELECT destination FROM contacts WHERE destination = ANY ($1)", mine)
    assert sorted(row["destination"] for row in stored) == mine


async def test_a_second_campaign_s_load_looks_nothing_up_by_stale_statistics(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the table's statistics made when another campaign had every contact (on which a plan
    of the look-up took the new campaign for a rare one), a load into a new campaign still finds
    its duplicates across batches: none is stored twice, each is counted. (Its speed in that
    case: `bench/import.py --loads 3`.)"""
    monkeypatch.setattr(importer, "ROWS_PER_COPY_IN_PROCESS", 50)
    await make_campaign(pool, numbers(2000, first=14155570000), name="first")
    await pool.execute("ANALYZE contacts")
    destinations = numbers(400)
    lines = [*destinations, *destinations[::4]]
    spec = replace(SPEC, name="second")
    summary, _ = await load(pool, tmp_path / "second.csv", "phone\n" + "\n".join(lines), spec)
    assert (summary.loaded, summary.duplicates) == (400, 100)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM contacts c JOIN campaigns k ON k.id = c.campaign_id "
            "WHERE k.name = 'second'"
        )
        == 400
    )


def test_the_filter_of_numbers_seen_never_misses_one() -> None:
    """NumbersSeen answers "maybe seen" for every number seen before (a number it missed would
    be stored twice, or fail the load), and for few others: under 3 % of 1M numbers in the size
    a 40 MB file gets (about 2 % expected)."""
    seen = NumbersSeen(40_000_000 // 40)
    first = [f"+1415{index:07d}" for index in range(1_000_000)]
    false_positives = len(seen.maybe_seen(first))
    assert false_positives < 0.03 * len(first)
    again = first[::997]
    assert seen.maybe_seen(again) == again


async def test_contacts_campaign_is_checked_as_a_foreign_key(pool: asyncpg.Pool) -> None:
    """contacts.campaign_id has no per-row foreign key since migration 0019, but the same
    guarantees: a contact of no campaign is refused with the foreign key's error, whether
    inserted or moved; deleting a campaign deletes its contacts; truncating campaigns (with
    CASCADE) truncates them."""
    campaign_id = await make_campaign(pool, numbers(2))
    with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
        await pool.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination) "
            "VALUES ($1, '+14155550199', 'x')",
            campaign_id + 1000,
        )
    assert refused.value.constraint_name == "contacts_campaign_id_fkey"
    assert f"Key (campaign_id)=({campaign_id + 1000})" in (refused.value.detail or "")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pool.execute("UPDATE contacts SET campaign_id = campaign_id + 1000")
    await pool.execute("DELETE FROM campaigns WHERE id = $1", campaign_id)
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0
    await make_campaign(pool, numbers(2), name="second")
    await pool.execute("TRUNCATE campaigns CASCADE")
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0


async def test_new_contacts_hold_their_campaign_until_they_commit(pool: asyncpg.Pool) -> None:
    """As a foreign key does, inserting contacts holds their campaign (FOR KEY SHARE) until the
    transaction ends: a DELETE of the campaign meanwhile waits, so it cannot leave them
    without one."""
    campaign_id = await make_campaign(pool, numbers(1))
    async with pool.acquire() as inserting, pool.acquire() as deleting, inserting.transaction():
        await inserting.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, time_zones) "
            "VALUES ($1, '+14155550199', 'x', '{America/Los_Angeles}')",
            campaign_id,
        )
        await deleting.execute("SET lock_timeout = '200ms'")
        with pytest.raises(asyncpg.LockNotAvailableError):
            await deleting.execute("DELETE FROM campaigns WHERE id = $1", campaign_id)
        await deleting.execute("RESET lock_timeout")
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 2


def test_large_files_leave_postgresql_a_core() -> None:
    """By default a large file is validated by one process per core but one (at least one
    process), a small one in a thread; --jobs 1 is a thread, --jobs N N processes."""
    large = importer.PARALLEL_MIN_BYTES
    with importer.validation_executor(large, None) as executor:
        assert type(executor).__name__ == "ProcessPoolExecutor"
        assert executor._max_workers == max(1, (importer.multiprocessing.cpu_count() or 1) - 1)  # type: ignore[attr-defined]
    with importer.validation_executor(large - 1, None) as executor:
        assert type(executor).__name__ == "ThreadPoolExecutor"
    with importer.validation_executor(large, 1) as executor:
        assert type(executor).__name__ == "ThreadPoolExecutor"
    with importer.validation_executor(large, 3) as executor:
        assert executor._max_workers == 3  # type: ignore[attr-defined]


# Texts on both sides of every rule of e164_number (a '+', 1 to 15 ASCII digits, no leading 0).
E164_EDGES = [
    "+1",
    "+14155550123",
    "+123456789012345",
    "+1234567890123456",
    "+0123",
    "+",
    "",
    "14155550123",
    "++14155550123",
    "+1415555012a",
    "+1 415 555 0123",
    "+14155550123\n",
    " +14155550123",
    "+١٤١٥٥٥٥٠١٢٣",  # Arabic-Indic digits: digits to str.isdigit, not to [0-9]
    "+1²",
    "+\uff19\uff11",  # fullwidth digits
    "sip:alice@example.com",
    "sip:+14155550123@example.com",
    "+999999999999999",
]


async def test_e164_number_is_the_same_in_python_and_in_sql(pool: asyncpg.Pool) -> None:
    """The loader turns its numbers into integers in Python (destinations.e164_number) and looks
    them up in the SQL function's index: on every edge of the rule the two agree (an integer
    Python gave and SQL did not would miss a suppressed number)."""
    in_sql = await pool.fetch(
        "SELECT d, e164_number(d) AS n FROM unnest($1::text[]) WITH ORDINALITY AS t(d, i) "
        "ORDER BY i",
        E164_EDGES,
    )
    assert [(row["d"], row["n"]) for row in in_sql] == [
        (value, e164_number(value)) for value in E164_EDGES
    ]
    assert e164_number("+14155550123") == 14155550123
    assert e164_number("+0123") is None


async def test_numbers_and_sip_uris_on_a_list_are_stored_suppressed(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load finds its E.164 numbers on the lists by their integers and its SIP URIs by their
    text, across batches: each listed one is stored `suppressed` naming its list (the first by
    name when on two), an unlisted one pending, a number on a list the campaign does not honour
    pending; and the look-up of numbers goes through the index `suppressions_number`."""
    monkeypatch.setattr(importer, "ROWS_PER_COPY_IN_PROCESS", 3)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 3)
    await pool.executemany(
        "INSERT INTO suppressions (list, destination) VALUES ($1, $2)",
        [
            ("default", "+14155550001"),
            ("clinic", "+14155550001"),
            ("clinic", "sip:bob@example.com"),
            ("default", "+442079460002"),
            ("other", "+14155550003"),
            ("default", "sip:carol@example.com"),
        ],
    )
    spec = replace(SPEC, suppression_lists=("default", "clinic"), default_time_zone="UTC")
    content = (
        "phone\n+14155550001\nsip:alice@example.com\nsip:bob@example.com\n+442079460002\n"
        "+14155550003\n+14155550004\nsip:carol@example.com\n"
    )
    summary, recorder = await load(pool, tmp_path / "lists.csv", content, target=spec)
    assert recorder.rejects == []
    assert (summary.loaded, summary.suppressed) == (7, 4)
    rows = await pool.fetch("SELECT destination, status, last_error FROM contacts")
    assert sorted(tuple(row.values()) for row in rows) == [
        ("+14155550001", "suppressed", "suppressed: on list clinic"),
        ("+14155550003", "pending", None),
        ("+14155550004", "pending", None),
        ("+442079460002", "suppressed", "suppressed: on list default"),
        ("sip:alice@example.com", "pending", None),
        ("sip:bob@example.com", "suppressed", "suppressed: on list clinic"),
        ("sip:carol@example.com", "suppressed", "suppressed: on list default"),
    ]
    # With many numbers listed, the planner takes the integers' index for the look-up.
    await pool.execute(
        "INSERT INTO suppressions (list, destination) "
        "SELECT 'default', '+1212' || lpad(g::text, 7, '0') FROM generate_series(1, 20000) g"
    )
    await pool.execute("ANALYZE suppressions")
    plan = await pool.fetch(
        "EXPLAIN " + sql("look_up_suppressions"),
        ["default", "clinic"],
        [14155550001, 14155550004],
        ["sip:bob@example.com"],
    )
    assert "suppressions_number" in "\n".join(row[0] for row in plan)


async def test_suppressions_are_looked_up_on_a_spare_connection_when_the_pool_has_one(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load looks its batches' numbers up in the lists on a second connection of its pool,
    never on the one it COPYs on; with a pool of one connection, which the load holds, on that
    one. Either way every listed number is stored `suppressed`, the others pending."""
    monkeypatch.setattr(importer, "ROWS_PER_COPY_IN_PROCESS", 10)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 10)
    destinations = numbers(60)
    listed = destinations[3::7]
    await pool.executemany(
        "INSERT INTO suppressions (list, destination) VALUES ('default', $1)",
        [(number,) for number in listed],
    )
    look_up_pids: list[int] = []
    copy_pids: list[int] = []
    real_look_up, real_copy = queries.look_up_suppressions, queries.copy_contacts

    async def look_up(connection: Connection, *args: Any) -> Any:
        look_up_pids.append(connection.get_server_pid())
        return await real_look_up(connection, *args)

    async def copy(connection: Connection, *args: Any, **kwargs: Any) -> None:
        copy_pids.append(connection.get_server_pid())
        await real_copy(connection, *args, **kwargs)

    monkeypatch.setattr(queries, "look_up_suppressions", look_up)
    monkeypatch.setattr(queries, "copy_contacts", copy)
    content = "phone\n" + "\n".join(destinations)
    summary, _ = await load(pool, tmp_path / "a.csv", content, replace(SPEC, name="spare"))
    assert (summary.loaded, summary.suppressed) == (60, len(listed))
    assert len(look_up_pids) == 6
    assert set(look_up_pids).isdisjoint(copy_pids)

    look_up_pids.clear()
    copy_pids.clear()
    async with asyncpg.create_pool(
        database_url, min_size=1, max_size=1, init=db._init_connection
    ) as single:
        summary, _ = await load(single, tmp_path / "b.csv", content, replace(SPEC, name="alone"))
    assert (summary.loaded, summary.suppressed) == (60, len(listed))
    assert set(look_up_pids) == set(copy_pids)
    rows = await pool.fetch(
        "SELECT k.name, c.destination FROM contacts c JOIN campaigns k ON k.id = c.campaign_id "
        "WHERE c.status = 'suppressed' ORDER BY 1, 2"
    )
    assert [tuple(row.values()) for row in rows] == [
        (name, number) for name in ("alone", "spare") for number in sorted(listed)
    ]


async def test_a_load_that_fails_mid_way_gives_its_spare_connection_back(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load that fails (a bad row with --strict) while the look-up of its last batch is still
    running on the spare connection (held there by a pg_sleep) cancels that query, stores
    nothing, and gives both its connections back to the pool idle, no query left running."""
    monkeypatch.setattr(importer, "ROWS_PER_COPY_IN_PROCESS", 5)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 5)
    destinations = numbers(40)
    # (Listed, so that the lists' filter sends its batch to the look-up.)
    await pool.execute(
        "INSERT INTO suppressions (list, destination) VALUES ('default', $1)", destinations[-1]
    )
    real_look_up = queries.look_up_suppressions
    cancelled: list[str] = []

    async def look_up(connection: Connection, batch: list[str], *args: Any) -> Any:
        if destinations[-1] in batch:
            try:
                await connection.execute("SELECT pg_sleep(60)")
            except asyncio.CancelledError:
                cancelled.append(batch[-1])
                raise
        return await real_look_up(connection, batch, *args)

    monkeypatch.setattr(queries, "look_up_suppressions", look_up)
    content = "phone\n" + "\n".join(destinations) + "\nnot a number\n"
    with pytest.raises(LoadError, match="line 42"):
        await asyncio.wait_for(load(pool, tmp_path / "bad.csv", content, options=STRICT), 30)
    assert cancelled == [destinations[-1]]
    assert pool.get_idle_size() == pool.get_size()
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0
    running = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert running == 0
