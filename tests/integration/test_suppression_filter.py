"""A load looks up only the numbers its campaign's lists may hold, by their Bloom filters
(campaign/suppression_filter.py, migration 0021), and still stores every listed number
`suppressed`: filters saved by `suppress add` or a load, brought up to date with numbers a
script added since, built again larger when too full; a number listed during the load is left to
the claim, which settles it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from test_importer import SPEC, load
from worker_fixtures import claimed, numbers

from campaign import importer, queries, suppression, suppression_filter
from campaign.queries import Connection
from campaign.suppression_filter import DestinationFilter


def asked_for(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The destinations the load looks up in the lists, as it asks (recorded)."""
    asked: list[str] = []
    real = queries.look_up_suppressions

    async def look_up(connection: Connection, destinations: list[str], *args: Any) -> Any:
        asked.extend(destinations)
        return await real(connection, destinations, *args)

    monkeypatch.setattr(queries, "look_up_suppressions", look_up)
    return asked


async def list_by_sql(pool: asyncpg.Pool, list_name: str, first: int, count: int) -> None:
    """`count` numbers from +`first` on `list_name`, as a script would write them."""
    await pool.execute(
        "INSERT INTO suppressions (list, destination) "
        "SELECT $1, '+' || (g::bigint) FROM generate_series($2::bigint, $3::bigint) g",
        list_name,
        first,
        first + count - 1,
    )


async def saved_filter(pool: asyncpg.Pool, list_name: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT version, size_log2, destinations, scheme, bits FROM suppression_filters"
        " WHERE list = $1",
        list_name,
    )


async def test_a_load_looks_up_only_what_the_lists_may_hold_and_saves_their_filter(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 3,010 numbers and a SIP URI a script put on `default`, a load of 200 numbers (20
    listed) and two SIP URIs (one listed) asks the database about the listed ones and the
    filter's false positives only (exactly those the saved filter holds: a few, if any), stores
    every listed one `suppressed`, and saves the filter it built, at the lists' version then."""
    monkeypatch.setattr(importer, "ROWS_PER_COPY_IN_PROCESS", 50)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 50)
    monkeypatch.setattr(suppression_filter, "SAVE_AFTER", 1_000)
    await list_by_sql(pool, "default", 14155550000, 3_000)
    await pool.execute(
        "INSERT INTO suppressions (list, destination) VALUES ('default', 'sip:bob@example.com')"
    )
    await list_by_sql(pool, "default", 14155557000, 10)
    # 190 numbers, the first 10 listed; then 10 more, all listed.
    destinations = numbers(190, first=14155552990) + numbers(10, first=14155557000)
    listed = set(destinations[:10] + destinations[190:])
    sip = ["sip:alice@example.com", "sip:bob@example.com"]
    asked = asked_for(monkeypatch)
    content = "phone\n" + "\n".join(destinations + sip) + "\n"
    summary, _ = await load(pool, tmp_path / "a.csv", content, replace(SPEC, name="a"))
    assert (summary.loaded, summary.suppressed) == (202, 21)
    rows = await pool.fetch("SELECT destination FROM contacts WHERE status = 'suppressed'")
    assert {row["destination"] for row in rows} == listed | {"sip:bob@example.com"}

    saved = await saved_filter(pool, "default")
    assert saved is not None
    version = await pool.fetchval("SELECT version FROM suppression_version")
    assert (saved["version"], saved["destinations"], saved["scheme"]) == (version, 3_011, 1)
    list_filter = DestinationFilter(saved["size_log2"], saved["destinations"], saved["bits"])
    may_hold = [d for d in destinations + sip if list_filter.may_hold(d)]
    assert set(may_hold) >= listed | {"sip:bob@example.com"}
    assert len(may_hold) < 25
    assert sorted(asked) == sorted(may_hold)
    assert await pool.fetchval("SELECT DISTINCT suppressions_version FROM contacts") == version


async def test_a_saved_filter_is_brought_up_to_date_and_built_again_when_too_full(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`suppress add` of many numbers saves the list's filter; numbers a script adds later are
    found by the next load all the same (its filter is brought up to date with them); a number
    taken off is looked up, not found, and dialled; and once a script has put so many numbers on
    the list that the saved filter is too full, a load builds it again, larger."""
    monkeypatch.setattr(suppression_filter, "SAVE_AFTER", 20)
    monkeypatch.setattr(suppression, "SAVE_AFTER", 20)
    added = await suppression.add_to_list(pool, numbers(30, first=14155550000), "clinic")
    assert added.added == 30
    saved = await saved_filter(pool, "clinic")
    assert saved is not None
    assert (saved["destinations"], saved["size_log2"]) == (30, 16)
    assert saved["version"] == await pool.fetchval("SELECT version FROM suppression_version")

    await list_by_sql(pool, "clinic", 14155551000, 5)  # fewer than SAVE_AFTER_NUMBERS
    await suppression.remove_from_list(pool, ["+14155550000"], "clinic")
    spec = replace(SPEC, name="b", suppression_lists=("default", "clinic"))
    content = "phone\n+14155550000\n+14155550001\n+14155551004\n+14155559999\n"
    summary, _ = await load(pool, tmp_path / "b.csv", content, spec)
    assert (summary.loaded, summary.suppressed) == (4, 2)
    rows = await pool.fetch("SELECT destination, status FROM contacts ORDER BY line_number")
    assert [tuple(row.values()) for row in rows] == [
        ("+14155550000", "pending"),
        ("+14155550001", "suppressed"),
        ("+14155551004", "suppressed"),
        ("+14155559999", "pending"),
    ]
    # Not saved again for 5 numbers.
    assert (await saved_filter(pool, "clinic")) == saved

    # 2**16 bits hold 8,192 numbers at 8 bits each: more, and it is built again.
    await list_by_sql(pool, "clinic", 14155560000, 9_000)
    content = "phone\n+14155568999\n+14155569000\n"
    summary, _ = await load(pool, tmp_path / "c.csv", content, replace(spec, name="c"))
    assert (summary.loaded, summary.suppressed) == (2, 1)
    rebuilt = await saved_filter(pool, "clinic")
    assert rebuilt is not None
    # Built from the list as it is: 29 + 5 + 9,000 numbers, 16 to 32 bits each.
    assert (rebuilt["destinations"], rebuilt["size_log2"]) == (9_034, 18)


async def test_a_number_listed_while_the_load_runs_is_settled_by_the_claim(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A number put on a list after the load read its filters (so the load does not look it
    up) is stored pending with the version the filters reached, which is before the number's:
    the claim looks it up, settles it `suppressed` and never takes it."""
    real_read = suppression_filter.read_filters

    async def read_then_list(connection: Connection, lists: Any) -> Any:
        filters = await real_read(connection, lists)
        await pool.execute(
            "INSERT INTO suppressions (list, destination) VALUES ('default', '+14155551001')"
        )
        return filters

    monkeypatch.setattr(importer, "read_filters", read_then_list)
    content = "phone\n" + "\n".join(numbers(3)) + "\n"
    summary, _ = await load(pool, tmp_path / "d.csv", content, replace(SPEC, name="d"))
    assert (summary.loaded, summary.suppressed) == (3, 0)
    stamped = await pool.fetchval("SELECT DISTINCT suppressions_version FROM contacts")
    assert stamped < await pool.fetchval("SELECT added_version FROM suppressions")
    await pool.execute("UPDATE campaigns SET status = 'running'")
    assert await claimed(pool, summary.campaign.id) == ["+14155551000", "+14155551002"]
    status = await pool.fetchval("SELECT status FROM contacts WHERE destination = '+14155551001'")
    assert status == "suppressed"


async def test_a_filter_that_cannot_be_saved_does_not_fail_the_load(
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The filter is a cache: when saving it fails (here a lock timeout), the load goes on,
    stores every listed number `suppressed`, and says so in a warning; the next load builds
    the filter again."""
    monkeypatch.setattr(suppression_filter, "SAVE_AFTER", 10)
    await list_by_sql(pool, "default", 14155551000, 20)

    async def refuse(*args: Any) -> None:
        raise asyncpg.LockNotAvailableError("canceling statement due to lock timeout")

    monkeypatch.setattr(queries, "save_suppression_filter", refuse)
    content = "phone\n" + "\n".join(numbers(30)) + "\n"
    summary, _ = await load(pool, tmp_path / "e.csv", content, replace(SPEC, name="e"))
    assert (summary.loaded, summary.suppressed) == (30, 20)
    assert await saved_filter(pool, "default") is None
    assert "filter was not saved: canceling statement due to lock timeout" in caplog.text
