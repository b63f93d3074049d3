"""Dashboard benchmark: server time of its pages on a campaign of 1M contacts, and what live
pages cost the database (snapshots computed and transactions committed per second with 1 and
with 100 SSE clients).

    python bench/dashboard.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

It makes a fresh database (dropped at the end), fills one campaign with --contacts contacts of
mixed statuses and time zones by INSERT … generate_series, serves the engine's app with the
dashboard on loopback and times the requests over loopback (the figures include the HTTP
round trip on the same machine, so they bound the server time from above).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import aiohttp
import asyncpg
from aiohttp import web

from campaign import db, queries
from campaign.api.answers import encode_cursor
from campaign.api.keys import key_hash, new_key
from campaign.config import Settings
from campaign.dashboard.app import installer
from campaign.dashboard.views import DASHBOARD_KEY
from campaign.metrics import Metrics
from campaign.web import WebConfig, create_app


async def fill(url: str, contacts: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        campaign_id = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url) VALUES '
            "('big', 'running', '+14155550100', 'https://example.com/a.xml') RETURNING id"
        )
        await connection.execute(
            """
            INSERT INTO contacts (campaign_id, destination, raw_destination, line_number, status,
                                  attempts, call_status, time_zones)
            SELECT $1, '+1' || (2000000000 + g), '+1' || (2000000000 + g), g + 1,
                   (ARRAY['pending', 'fired', 'fired', 'fired', 'failed', 'queued',
                          'cancelled'])[1 + g % 7],
                   CASE WHEN g % 7 = 0 THEN 0 ELSE 1 END,
                   CASE WHEN g % 7 IN (1, 2, 3) THEN
                       (ARRAY['completed','busy','no-answer'])[1 + g % 3] END,
                   ARRAY[(ARRAY['America/New_York','America/Chicago','America/Los_Angeles',
                                'Europe/London'])[1 + g % 4]]
            FROM generate_series(1, $2) AS g
            """,
            campaign_id,
            contacts,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def timed(session: aiohttp.ClientSession, url: str, runs: int) -> tuple[float, float]:
    """(median, max) milliseconds of `runs` GETs of `url`."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        async with session.get(url, allow_redirects=False) as response:
            await response.read()
            assert response.status == 200, (url, response.status)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


async def commits(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        value: int = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return value
    finally:
        await connection.close()


async def sse_cost(
    app: web.Application, base: str, cookie: str, url: str, clients: int, seconds: float
) -> tuple[float, float]:
    """(snapshots computed per second, transactions per second) with `clients` streams open."""
    hub = app[DASHBOARD_KEY].hub
    sessions = [aiohttp.ClientSession(cookies={"campaign_session": cookie}) for _ in range(clients)]
    received = [0] * clients

    async def listen(index: int) -> None:
        async with sessions[index].get(base + "/events?campaign=big") as response:
            async for line in response.content:
                if line.startswith(b"event: snapshot"):
                    received[index] += 1

    tasks = [asyncio.create_task(listen(i)) for i in range(clients)]
    await asyncio.sleep(2.0)  # all connected, first snapshot out
    computed, committed = hub.computations, await commits(url)
    await asyncio.sleep(seconds)
    computed, committed = hub.computations - computed, await commits(url) - committed
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for session in sessions:
        await session.close()
    assert min(received) > 0
    return computed / seconds, committed / seconds


async def main(server_url: str, contacts: int, runs: int) -> None:
    name = f"bench_dashboard_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = db.with_database(server_url, name)
    try:
        settings = Settings(database_url=url)
        async with db.open_pool(settings) as pool:
            await fill(url, contacts)
            key = new_key()
            await queries.create_api_key(pool, "bench", key_hash(key), read_only=False)
            async with (
                db.open_status_pool(settings) as status_pool,
                db.open_dashboard_pool(settings) as dashboard_pool,
            ):
                app = create_app(
                    pool,
                    Metrics(),
                    WebConfig(public_url=None, auth_tokens=("x",)),
                    status_pool=status_pool,
                    dashboard=installer(dashboard_pool, settings),
                )
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                base = f"http://{host}:{port}"
                try:
                    jar = aiohttp.CookieJar(unsafe=True)
                    async with aiohttp.ClientSession(cookie_jar=jar) as session:
                        async with session.post(
                            base + "/login", data={"key": key}, allow_redirects=False
                        ) as response:
                            assert response.status == 303
                        cookie = next(c.value for c in jar if c.key == "campaign_session")
                        last = await pool.fetchval("SELECT max(id) FROM contacts")
                        deep = encode_cursor(last - 100)
                        middle = encode_cursor(last // 2)
                        print(f"campaign of {contacts:,} contacts; {runs} runs each; ms median/max")
                        for label, path in (
                            ("campaigns list  /", "/"),
                            ("campaign page   /campaigns/big", "/campaigns/big"),
                            ("contacts first page", "/campaigns/big/contacts"),
                            ("contacts page, middle", f"/campaigns/big/contacts?cursor={middle}"),
                            ("contacts page, last", f"/campaigns/big/contacts?cursor={deep}"),
                            (
                                "contacts status=failed, middle",
                                f"/campaigns/big/contacts?status=failed&cursor={middle}",
                            ),
                            (
                                "contacts time zone, middle",
                                f"/campaigns/big/contacts?time_zone=Europe/London&cursor={middle}",
                            ),
                        ):
                            median, worst = await timed(session, base + path, runs)
                            print(f"  {label:34} {median:8.1f} {worst:8.1f}")
                    for clients in (1, 100):
                        per_s, tps = await sse_cost(app, base, cookie, url, clients, 10.0)
                        print(
                            f"  SSE, {clients:3} clients: {per_s:.2f} snapshots/s computed, "
                            f"{tps:.1f} transactions/s in the database"
                        )
                finally:
                    await runner.cleanup()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a server to make a database on")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.database_url, arguments.contacts, arguments.runs))
