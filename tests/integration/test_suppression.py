"""campaign.suppression against a real PostgreSQL: large files checked in chunks (and in worker
processes) all or nothing, the phone column as `load` finds it, values `load` would refuse,
and what an add leaves of a number already on the list."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from campaign import queries
from campaign.destinations import LoadError
from campaign.importer import CHUNK_ROWS
from campaign.suppression import (
    BAD_SHOWN,
    RefusedValues,
    add_to_list,
    remove_from_list,
)


async def listed(pool: asyncpg.Pool, name: str) -> list[tuple[str, str | None]]:
    """(destination, reason) of every number on the list, read through the cursor."""
    found: list[tuple[str, str | None]] = []
    async with pool.acquire() as connection, connection.transaction():
        async for chunk in queries.suppressed_number_chunks(connection, name, 1000):
            found.extend((number.destination, number.reason) for number in chunk)
    return found


def numbers_file(path: Path, count: int, *, bad_at: int | None = None) -> Path:
    """A CSV with a header and `count` distinct US numbers; row `bad_at` (0-based) not one."""
    with path.open("w") as out:
        out.write("id,phone number,note\n")
        for index in range(count):
            phone = "not-a-number" if index == bad_at else f"+1415{2000000 + index:07d}"
            out.write(f"{index},{phone},n\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
async def test_a_file_of_several_chunks_goes_in_whole_or_not_at_all(
    pool: asyncpg.Pool, tmp_path: Path, jobs: int
) -> None:
    """A file longer than a chunk, in one thread or in worker processes: one bad row near its
    end (after earlier chunks were staged) refuses all of it, naming its line; without it, every
    number is added once, and adding the file again adds none."""
    count = CHUNK_ROWS * 2 + 500
    bad = numbers_file(tmp_path / "bad.csv", count, bad_at=count - 10)
    with pytest.raises(RefusedValues) as refused:
        await add_to_list(pool, [str(bad)], "default", jobs=jobs)
    assert refused.value.count == 1
    assert [str(value) for value in refused.value.shown] == [
        f"{bad} line {count - 10 + 2}: 'not-a-number': not a phone number"
    ]
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0

    good = numbers_file(tmp_path / "good.csv", count)
    summary = await add_to_list(pool, [str(good)], "default", "file", jobs=jobs)
    assert (summary.read, summary.added, summary.already, summary.repeated) == (count, count, 0, 0)
    assert await pool.fetchval("SELECT count(DISTINCT destination) FROM suppressions") == count
    again = await add_to_list(pool, [str(good), "+14152000000"], "default", jobs=jobs)
    assert (again.read, again.added, again.already, again.repeated) == (count + 1, 0, count, 1)


async def test_values_load_would_refuse_are_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Empty phone cells, a NUL byte, digits that could be two numbers, an invalid SIP URI:
    every one is listed (the first BAD_SHOWN of them), all are counted, nothing is added."""
    path = tmp_path / "mixed.csv"
    path.write_text(
        "name,phone\nA,\nB,+1415555\x000100\nC,sip:nohost\n"
        + "".join(f"D{index},x{index}\n" for index in range(BAD_SHOWN))
    )
    with pytest.raises(RefusedValues) as refused:
        await add_to_list(pool, [str(path), "14155550100", "81312345678"], "default")
    error = refused.value
    assert error.count == BAD_SHOWN + 4
    assert [value.reason for value in error.shown[:3]] == [
        "empty phone number",
        "holds a NUL byte (\\0), which the database cannot store",
        "not a SIP URI of the form sip:user@host",
    ]
    assert len(error.shown) == BAD_SHOWN
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0
    # Without a caller ID, 81312345678 is Japan in Plivo's format or an Indonesian mobile.
    with pytest.raises(RefusedValues) as ambiguous:
        await add_to_list(pool, ["81312345678"], "default")
    (value,) = ambiguous.value.shown
    assert (value.where, value.value) == ("argument 1", "81312345678")
    assert "could be" in value.reason
    assert "--default-region" in value.reason


async def test_the_phone_column_is_found_as_load_finds_it(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A header names the phone column (or --column does); a one-column file without a header
    is numbers from its first line; a file with no rows, or no column, adds nothing."""
    two = tmp_path / "two.csv"
    two.write_text("home,work\n+14155550100,+14155550101\n")
    with pytest.raises(LoadError, match="no phone column found"):
        await add_to_list(pool, [str(two)], "default")
    summary = await add_to_list(pool, [str(two)], "default", column="Work")
    assert summary.added == 1
    bare = tmp_path / "bare.csv"
    bare.write_text("(415) 555-0102\n415 555 0103\n")
    await add_to_list(pool, [str(bare)], "default", default_region="US")
    assert [d for d, _ in await listed(pool, "default")] == [
        "+14155550101",
        "+14155550102",
        "+14155550103",
    ]
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(LoadError, match="the file has no rows; nothing was added"):
        await add_to_list(pool, ["+14155550109", str(empty)], "default")
    header_only = tmp_path / "header.csv"
    header_only.write_text("phone\n")
    with pytest.raises(LoadError, match="no numbers under its header; nothing was added"):
        await add_to_list(pool, [str(header_only)], "default")
    assert len(await listed(pool, "default")) == 3


async def test_a_number_on_the_list_keeps_its_first_reason_and_date(pool: asyncpg.Pool) -> None:
    """Adding a number again (to the same list) changes nothing of it; on another list it is a
    row of its own; remove takes it off one list only."""
    await add_to_list(pool, ["+14155550100"], "default", "first")
    before = await pool.fetchrow("SELECT reason, created_at FROM suppressions")
    summary = await add_to_list(pool, ["+1 415 555 0100"], "default", "second")
    assert (summary.added, summary.already) == (0, 1)
    assert await pool.fetchrow("SELECT reason, created_at FROM suppressions") == before
    await add_to_list(pool, ["+14155550100"], "vip", None)
    assert [(entry.name, entry.numbers) for entry in await queries.suppression_lists(pool)] == [
        ("default", 1),
        ("vip", 1),
    ]
    removed = await remove_from_list(pool, ["+14155550100", "+14155550100"], "vip")
    assert (removed.removed, removed.not_on_list) == (["+14155550100"], [])
    assert await listed(pool, "default") == [("+14155550100", "first")]
    assert await listed(pool, "vip") == []
