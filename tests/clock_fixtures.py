"""The database's clock, injected: it stands still until a test moves it.

Every time the engine reads lives in SQL: `now()` (leases, redials, calling hours, completion)
and `clock_timestamp()` (the rate limiters, reconcile's ages). The functions below shadow both
for every connection to the test's database (a schema ahead of pg_catalog in the search_path;
the views, which bound `now()` when they were made, are made again under it) with one time
that moves by exactly what the test says, so rules about hours and days are tested in seconds,
at any hour of any day, while nothing else is faked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pytest

from campaign import db
from campaign.config import Settings

CLOCK_SQL = """
CREATE SCHEMA injected_clock;
CREATE TABLE injected_clock.frozen (started timestamptz NOT NULL, at timestamptz NOT NULL);
INSERT INTO injected_clock.frozen VALUES (pg_catalog.now(), pg_catalog.now());
CREATE FUNCTION injected_clock.now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT at FROM injected_clock.frozen $$;
CREATE FUNCTION injected_clock.clock_timestamp() RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT at FROM injected_clock.frozen $$;
"""


@dataclass
class Clock:
    """The database's clock as the engine sees it: it stands still until the test moves it."""

    pool: asyncpg.Pool

    async def advance(self, seconds: float) -> None:
        await self.pool.execute(
            "UPDATE injected_clock.frozen SET at = at + make_interval(secs => $1)", seconds
        )

    async def set(self, at: datetime) -> None:
        """Jump to `at` (timezone-aware), forwards or backwards."""
        await self.pool.execute("UPDATE injected_clock.frozen SET at = $1", at)

    async def now(self) -> datetime:
        value: datetime = await self.pool.fetchval("SELECT at FROM injected_clock.frozen")
        return value

    async def elapsed_s(self) -> float:
        value: float = await self.pool.fetchval(
            "SELECT extract(epoch FROM at - started)::float8 FROM injected_clock.frozen"
        )
        return value


INJECTED_PATH = 'injected_clock, "$user", public, pg_catalog'


async def inject_clock(database_url: str) -> None:
    """Make every later connection to the database read the injected clock.

    Functions find `now()` by the search_path when they run; a view bound it when it was made,
    so the views are made again under the injected path (same definitions, same columns).
    """
    connection = await asyncpg.connect(database_url)
    try:
        views = await connection.fetch(
            "SELECT c.relname, pg_get_viewdef(c.oid) AS definition FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'v' AND n.nspname = 'public' ORDER BY c.oid"
        )
        await connection.execute(CLOCK_SQL)
        name = await connection.fetchval("SELECT current_database()")
        await connection.execute(f'ALTER DATABASE "{name}" SET search_path = {INJECTED_PATH}')
        async with connection.transaction():
            await connection.execute(f"SET LOCAL search_path = {INJECTED_PATH}")
            for view in views:
                await connection.execute(
                    f'CREATE OR REPLACE VIEW public."{view["relname"]}" AS {view["definition"]}'
                )
    finally:
        await connection.close()


@pytest.fixture
async def clocked_pool(settings: Settings, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose every connection reads `now()` and `clock_timestamp()` from the injected
    clock."""
    await inject_clock(database_url)
    async with db.open_pool(settings) as opened:
        yield opened


@pytest.fixture
def clock(clocked_pool: asyncpg.Pool) -> Clock:
    """The injected clock of `clocked_pool`'s database."""
    return Clock(clocked_pool)
