"""A large CSV upload through POST /api/v1/campaigns is streamed: the client sends it as a
generator, and the server's memory stays far below the file's size while it loads."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from api_fixtures import NEW_CAMPAIGN, running_api

from campaign.config import Settings

ROWS = 200_000
ROWS_PER_CHUNK = 5_000


async def _rows() -> AsyncIterator[bytes]:
    """The CSV a chunk at a time (never whole, on this side either)."""
    yield b"phone,name,note\n"
    for start in range(0, ROWS, ROWS_PER_CHUNK):
        yield "".join(
            f"+1415{2000000 + index:07d},person {index},some text to make the row longer\n"
            for index in range(start, start + ROWS_PER_CHUNK)
        ).encode()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_large_upload_never_sits_whole_in_memory(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """200,000 rows (about 12 MB) loaded through the API while Python's allocations (client,
    server and loader together) peak at under half the file's size: the upload is spooled to
    disk and read back in chunks."""
    async with running_api(pool, status_pool, settings) as api:
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append_json({**NEW_CAMPAIGN, "name": "big", "calling-hours": "any"})
        part.set_content_disposition("form-data", name="settings")
        part = writer.append(_rows(), {"Content-Type": "text/csv"})
        part.set_content_disposition("form-data", name="file", filename="big.csv")
        size_bytes = 16 + sum(
            len(f"+1415{2000000 + i:07d},person {i},some text to make the row longer\n")
            for i in range(ROWS)
        )
        tracemalloc.start()
        try:
            status, body, _ = await api.call("POST", "/campaigns", data=writer)
            _current, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 201, body
    assert body["loaded"] == ROWS
    assert await pool.fetchval("SELECT count(*) FROM contacts") == ROWS
    assert peak_bytes < size_bytes / 2
