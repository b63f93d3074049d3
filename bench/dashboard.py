"""Benchmark the dashboard (issue 17) on a campaign of a million contacts.

    .venv/bin/python bench/dashboard.py
    .venv/bin/python bench/dashboard.py --contacts 1000000 --repeat 20 --clients 1 --clients 100

A fresh database on the local PostgreSQL server (--server-url), migrated; one running campaign
of --contacts contacts bulk-inserted with generate_series (a mix of statuses, outcomes, four
time zones and keypress responses, then VACUUM ANALYZE; not what is measured); an API key; then
`campaign serve` in its own process on a free loopback port, logged in like a browser. Measured:

1. the campaign page (GET /campaigns/NAME) and the campaign list (GET /): the first request,
   then the median, 90th percentile and worst of --repeat more (goal: < 300 ms);
2. a contacts page (GET /campaigns/NAME/contacts) at depth 0, 10,000, 500,000 and the last
   page, each reached by following the pages' own `a#next-page` links (keyset cursors), then
   requested --repeat times (goal: < 100 ms at any depth);
3. the database's transactions per second (pg_stat_database xact_commit + xact_rollback of the
   benchmark's database, read from another database) over --window-s seconds with 0, 1 and 100
   clients reading /events (SSE) of the campaign, nothing else running (goal: 100 clients cost
   what 1 costs). Each client counts the events it received.

Times are seen by an aiohttp client on the same machine over loopback with a kept-alive
connection: the server's time plus a loopback round trip. The database is dropped afterwards.
Talks to nothing but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import aiohttp
import asyncpg
import worker as worker_bench  # bench/worker.py (bench scripts run as `python bench/<name>.py`)

from campaign import queries
from campaign.api.keys import key_hash, new_key

NAME = "million"
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")


# --- the data ----------------------------------------------------------------------------------


async def build_campaign(url: str, contacts: int) -> float:
    """A running campaign of `contacts` contacts in a realistic mix; seconds it took."""
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SET synchronous_commit = off")  # this build session only
        campaign_id = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, batch_size) '
            "VALUES ($1, 'running', '+14155550100', 'http://127.0.0.1:9/answer.xml', 500) "
            "RETURNING id",
            NAME,
        )
        # 40 % pending (a quarter of them redials), the rest settled: answered, busy, no answer,
        # failed, queued, cancelled, suppressed, expired; a response for half the answered.
        await connection.execute(
            """
            INSERT INTO contacts (campaign_id, destination, raw_destination, line_number, fields,
                                  status, attempts, call_status, hangup_cause, duration_s,
                                  request_uuid, http_status, last_error, time_zones,
                                  next_attempt_at, ended_at)
            SELECT $1, d, d, g + 1, jsonb_build_object('name', 'person ' || g, 'note', 'x'),
                   s,
                   CASE WHEN s = 'pending' AND g % 4 <> 0 THEN 0 ELSE 1 + g % 2 END,
                   CASE WHEN m BETWEEN 40 AND 74 THEN 'completed'
                        WHEN m BETWEEN 75 AND 81 THEN 'busy'
                        WHEN m BETWEEN 82 AND 87 THEN 'no-answer' END,
                   CASE WHEN m BETWEEN 40 AND 74 THEN 'NORMAL_CLEARING'
                        WHEN m BETWEEN 75 AND 81 THEN 'USER_BUSY'
                        WHEN m BETWEEN 82 AND 87 THEN 'NO_ANSWER' END,
                   CASE WHEN m BETWEEN 40 AND 74 THEN 20 + g % 40 END,
                   CASE WHEN s <> 'pending' THEN md5(g::text)::uuid::text END,
                   CASE WHEN s IN ('fired', 'queued') THEN 201
                        WHEN s = 'failed' THEN 400 END,
                   CASE WHEN s = 'failed' THEN 'Plivo refused the number as invalid' END,
                   ARRAY[($2::text[])[1 + g % 4]],
                   now() + make_interval(secs => CASE WHEN g % 4 = 0 THEN 600 ELSE 0 END),
                   CASE WHEN s IN ('fired', 'queued') THEN now() - make_interval(secs => g % 3600)
                   END
            FROM (
                SELECT g, g % 100 AS m, '+1' || (2000000000 + g)::text AS d,
                       CASE WHEN g % 100 < 40 THEN 'pending'
                            WHEN g % 100 < 88 THEN 'fired'
                            WHEN g % 100 < 92 THEN 'failed'
                            WHEN g % 100 < 95 THEN 'queued'
                            WHEN g % 100 < 97 THEN 'cancelled'
                            WHEN g % 100 < 99 THEN 'suppressed'
                            ELSE 'expired' END AS s
                FROM generate_series(1, $3) AS g
            ) AS rows
            """,
            campaign_id,
            list(ZONES),
            contacts,
        )
        await connection.execute(
            """
            INSERT INTO responses (campaign_id, contact_id, attempt, digits, meaning, received_at)
            SELECT campaign_id, id, 1, (id % 3 + 1)::text,
                   (ARRAY['confirm', 'reschedule', 'opt-out'])[id % 3 + 1],
                   now() - make_interval(secs => id % 3600)
            FROM contacts WHERE campaign_id = $1 AND call_status = 'completed' AND id % 2 = 0
            """,
            campaign_id,
        )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def create_key(url: str) -> str:
    key = new_key()
    connection = await asyncpg.connect(url)
    try:
        await queries.create_api_key(connection, "bench", key_hash(key), read_only=False)
    finally:
        await connection.close()
    return key


# --- the server and a client like a browser ---------------------------------------------------


@contextlib.asynccontextmanager
async def running_serve(url: str) -> AsyncIterator[str]:
    """`campaign serve` on the benchmark's database, on a free loopback port."""
    port = worker_bench.free_port()
    environment = {
        **os.environ,
        "CAMPAIGN_DATABASE_URL": url,
        "CAMPAIGN_HTTP_PORT": str(port),
        "PLIVO_AUTH_TOKEN": "bench-auth-token",
        "CAMPAIGN_LOG_LEVEL": "warning",
    }
    output = tempfile.TemporaryFile()  # noqa: SIM115  # closed in the finally below
    process = await asyncio.create_subprocess_exec(
        str(worker_bench.CAMPAIGN_EXECUTABLE),
        "serve",
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            give_up = time.monotonic() + 30
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base_url + "/healthz") as reply:
                        if reply.status == 200:
                            break
                if process.returncode is not None or time.monotonic() > give_up:
                    output.seek(0)
                    raise SystemExit("campaign serve did not start:\n" + output.read().decode())
                await asyncio.sleep(0.1)
        yield base_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
        output.close()


class FormFields(HTMLParser):
    """The hidden inputs of a page's forms (the login form's `next`, a CSRF token)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.next_page: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.hidden[str(values["name"])] = values.get("value") or ""
        if tag == "a" and values.get("id") == "next-page" and values.get("href"):
            self.next_page = values["href"]


def parse(html: str) -> FormFields:
    fields = FormFields()
    fields.feed(html)
    return fields


async def logged_in_session(base_url: str, key: str) -> aiohttp.ClientSession:
    """A client session holding the dashboard's session cookie, as a browser would; as many
    connections as it is asked for (the SSE clients hold one each)."""
    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(limit=0)
    )
    async with session.get(base_url + "/login") as reply:
        form = parse(await reply.text())
    fields = {**form.hidden, "key": key, "next": "/"}
    async with session.post(base_url + "/login", data=fields, allow_redirects=False) as reply:
        if reply.status != 303:
            await session.close()
            raise SystemExit(f"login failed: {reply.status} {await reply.text()}")
    return session


@dataclass
class Timing:
    first_ms: float
    runs_ms: list[float]

    def describe(self) -> str:
        ordered = sorted(self.runs_ms)
        p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
        return (
            f"first {self.first_ms:7.1f} ms   median {statistics.median(ordered):7.1f} ms   "
            f"p90 {p90:7.1f} ms   worst {ordered[-1]:7.1f} ms   (n={len(ordered)})"
        )


async def get(session: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    """One GET: milliseconds to the last byte, and the body (a non-200 ends the benchmark)."""
    started = time.perf_counter()
    async with session.get(url, allow_redirects=False) as reply:
        body = await reply.text()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if reply.status != 200:
            raise SystemExit(f"GET {url}: {reply.status}\n{body[:2000]}")
    return elapsed_ms, body


async def time_page(session: aiohttp.ClientSession, url: str, repeat: int) -> Timing:
    first_ms, _body = await get(session, url)
    runs = [(await get(session, url))[0] for _ in range(repeat)]
    return Timing(first_ms, runs)


ROW = re.compile(r"<tr[^>]*\bdata-contact-id=")


async def contacts_at_depths(
    session: aiohttp.ClientSession, base_url: str, depths: Sequence[int], repeat: int
) -> list[tuple[str, int, Timing]]:
    """Follow the contacts pages' next links from the first page; time the page at each depth
    (the page holding the contact of that rank) and the last one."""
    wanted = sorted(depths)
    found: list[tuple[str, int, Timing]] = []
    url = f"{base_url}/campaigns/{NAME}/contacts"
    seen = 0
    walk_started = time.perf_counter()
    walk_ms: list[float] = []
    while True:
        elapsed_ms, body = await get(session, url)
        walk_ms.append(elapsed_ms)
        rows = len(ROW.findall(body))
        while wanted and seen + rows > wanted[0]:
            depth = wanted.pop(0)
            found.append((f"depth {depth:,}", seen, await time_page(session, url, repeat)))
        seen += rows
        next_page = parse(body).next_page
        if next_page is None or rows == 0:
            found.append(("last page", seen - rows, await time_page(session, url, repeat)))
            break
        url = urljoin(url, next_page)
        if len(walk_ms) % 2000 == 0:
            print(f"    walked {seen:,} contacts ({time.perf_counter() - walk_started:.0f} s)")
    print(
        f"    walked all {seen:,} contacts in {len(walk_ms):,} pages, "
        f"{time.perf_counter() - walk_started:.0f} s: page median "
        f"{statistics.median(walk_ms):.1f} ms, worst {max(walk_ms):.1f} ms"
    )
    return found


# --- SSE clients and the database's transactions ----------------------------------------------


async def transactions(server_url: str, database: str) -> int:
    """Transactions of `database` so far, read over a connection to another database."""
    connection = await asyncpg.connect(server_url)
    try:
        count: int = await connection.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            database,
        )
    finally:
        await connection.close()
    return count


async def read_events(session: aiohttp.ClientSession, url: str, counter: list[int]) -> None:
    """Read an SSE stream until cancelled, counting its events (blank-line separated)."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as reply:
        if reply.status != 200:
            raise SystemExit(f"GET {url}: {reply.status}")
        async for line in reply.content:
            if line in (b"\n", b"\r\n"):
                counter[0] += 1


async def database_load(
    session: aiohttp.ClientSession,
    base_url: str,
    server_url: str,
    database: str,
    clients: int,
    window_s: float,
) -> tuple[float, float]:
    """Transactions/s over the window with `clients` SSE readers; events/s per client."""
    counters = [[0] for _ in range(clients)]
    url = f"{base_url}/events?campaign={NAME}"
    readers = [
        asyncio.create_task(read_events(session, url, counters[index])) for index in range(clients)
    ]
    try:
        # Connected and first snapshots sent; then long enough for every backend to have
        # flushed its statistics (an idle backend may hold them 10 s: PGSTAT_IDLE_INTERVAL).
        await asyncio.sleep(12.0)
        before = await transactions(server_url, database)
        events_before = sum(counter[0] for counter in counters)
        await asyncio.sleep(window_s)
        after = await transactions(server_url, database)
        events = sum(counter[0] for counter in counters) - events_before
        for reader in readers:
            if reader.done():
                reader.result()  # raises what ended it
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    per_client = events / window_s / clients if clients else 0.0
    return (after - before) / window_s, per_client


# --- main --------------------------------------------------------------------------------------


async def main_async(arguments: argparse.Namespace) -> None:
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )
    async with worker_bench.scratch_database(arguments.server_url) as url:
        database = urlsplit(url).path.lstrip("/")
        print(f"building a campaign of {arguments.contacts:,} contacts …", flush=True)
        built_s = await build_campaign(url, arguments.contacts)
        print(f"    built in {built_s:.0f} s")
        key = await create_key(url)
        async with running_serve(url) as base_url:
            session = await logged_in_session(base_url, key)
            try:
                if "pages" in arguments.only:
                    await bench_pages(session, base_url, arguments)
                if "contacts" in arguments.only:
                    await bench_contacts(session, base_url, arguments)
                if "events" in arguments.only:
                    await bench_events(session, base_url, database, arguments)
            finally:
                await session.close()


async def bench_pages(
    session: aiohttp.ClientSession, base_url: str, arguments: argparse.Namespace
) -> None:
    print("\n1. pages (server time seen over loopback)")
    for label, path in (("campaign page", f"/campaigns/{NAME}"), ("list /", "/")):
        timing = await time_page(session, base_url + path, arguments.repeat)
        print(f"    {label:<16} {timing.describe()}")


async def bench_contacts(
    session: aiohttp.ClientSession, base_url: str, arguments: argparse.Namespace
) -> None:
    print("\n2. contacts pages, reached by their next links")
    depths = [d for d in (0, 10_000, 500_000) if d < arguments.contacts]
    for label, rank, timing in await contacts_at_depths(
        session, base_url, depths, arguments.repeat
    ):
        print(f"    {label:<16} (from rank {rank:>9,}) {timing.describe()}")


async def bench_events(
    session: aiohttp.ClientSession, base_url: str, database: str, arguments: argparse.Namespace
) -> None:
    print(f"\n3. database transactions/s over {arguments.window_s:g} s, SSE clients")
    for clients in sorted({0, *arguments.clients}):
        tps, events = await database_load(
            session, base_url, arguments.server_url, database, clients, arguments.window_s
        )
        print(
            f"    {clients:>4} clients: {tps:7.1f} transactions/s"
            + (f", {events:.2f} events/s per client" if clients else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per page")
    parser.add_argument(
        "--clients", type=int, action="append", help="SSE clients (default: 1 and 100)"
    )
    # Long beside the 10 s an idle backend may hold its counts before pg_stat_database sees them.
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument(
        "--only",
        choices=("pages", "contacts", "events"),
        action="append",
        help="run only these parts (default: all three)",
    )
    arguments = parser.parse_args()
    arguments.clients = arguments.clients or [1, 100]
    arguments.only = set(arguments.only or ("pages", "contacts", "events"))
    try:
        asyncio.run(main_async(arguments))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
