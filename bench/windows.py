"""Benchmark the claim when most contacts are outside their calling window (issue 11).

    .venv/bin/python bench/windows.py                    # 1,000,000 contacts, 1 % open
    .venv/bin/python bench/windows.py --contacts 200000 --rounds 3

Two campaigns in a fresh database on the local server, each with --contacts pending contacts
and calling hours 08:00-21:00 in the callee's local time: in `mostly-closed`, 99 % of the
contacts are in a time zone where it is night now and 1 % in one where it is day; in `all-open`,
every contact is in the daytime zone. The claim (the SQL function `claim_batch`, one round trip
each, no rate limit, batches of --batch-size, contacts left `claimed`) then takes the open
contacts: as many as the open 1 % of `mostly-closed` from each campaign, in turn, --rounds
times. Printed: claims per second and contacts per second for each, and the ratio (goal: the
claim rate of the open 1 % within 20 % of the campaign where all are open). The closed contacts
are never read: the claim walks only the sets of zones whose window is open.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
import psutil

from campaign import db, queries
from campaign.importer import ROWS_PER_COPY, ROWS_PER_COPY_IN_PROCESS
from campaign.ratelimit import SHARED_SLOT_SLACK_S

# Prime, above any contact count: g * PERMUTATION_MULTIPLIER % it is a permutation. The multiplier
# is large, so that neighbouring g (the contacts one claim takes) get numbers far apart, as in a
# real file: with a small one (7919), g * 7919 did not wrap below g = 12,627, so the all-open
# campaign's claimed contacts had ascending numbers and each claim's new entries in the
# (campaign_id, destination) index fell on a few leaf pages, while the open 1 % (every 100th g)
# fell on one page each: the claim of the open 1 % measured 0.77 of all-open for that alone.
PERMUTATION_MODULUS = 99_999_989
PERMUTATION_MULTIPLIER = 2_654_435_761
# Zones tried for "day" and "night" now, whatever the hour the benchmark runs at.
CANDIDATE_ZONES = (
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)


def day_and_night_zones() -> tuple[str, str]:
    """A zone where it is 10:00-18:00 now, and one where it is 00:00-06:00."""
    now = datetime.now(UTC)
    day = next(z for z in CANDIDATE_ZONES if 10 <= now.astimezone(ZoneInfo(z)).hour < 18)
    night = next(z for z in CANDIDATE_ZONES if now.astimezone(ZoneInfo(z)).hour < 6)
    return day, night


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    name = f"campaign_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = db.with_database(server_url, name)
    try:
        connection = await asyncpg.connect(url)
        try:
            await db.migrate(connection)
        finally:
            await connection.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def make_campaign(
    connection: asyncpg.Connection,
    name: str,
    contacts: int,
    open_share: float,
    zones: tuple[str, str],
    load_rows: int,
) -> int:
    day, night = zones
    campaign_id: int = await connection.fetchval(
        'INSERT INTO campaigns (name, status, "from", answer_url, calling_hours) '
        "VALUES ($1, 'running', '+14155550100', 'https://example.com/a',"
        " '{[08:00,21:00)}') RETURNING id",
        name,
    )
    open_every = round(1 / open_share)
    # As `campaign load` writes them: `load_rows` rows at a time, each COPY's rows grouped by
    # their set of zones (so a set's contacts share heap pages, as the claim reads).
    for first in range(1, contacts + 1, load_rows):
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, time_zones) "
            # Numbers in no order (a multiplicative permutation), as in a real file: the
            # (campaign, destination) key is written at scattered places in both campaigns.
            "SELECT $1::bigint,"
            "       '+1' || (2000000000 + $1::bigint * 100000000 + (g * $8) % $7)::text, 'x', "
            "       CASE WHEN g % $4 = 0 THEN ARRAY[$5] ELSE ARRAY[$6] END AS zones "
            "FROM generate_series($2::bigint, $3::bigint) AS g ORDER BY zones, g",
            campaign_id,
            first,
            min(first + load_rows - 1, contacts),
            open_every,
            day,
            night,
            PERMUTATION_MODULUS,
            PERMUTATION_MULTIPLIER,
        )
    return campaign_id


async def claim_all(
    pool: asyncpg.Pool, campaign_id: int, wanted: int, batch_size: int
) -> tuple[int, int, float]:
    """Claim `wanted` contacts in batches; (claims, contacts, seconds)."""
    claims = contacts = 0
    started = time.perf_counter()
    while contacts < wanted:
        claim = await queries.claim_batch(
            pool,
            campaign_id=campaign_id,
            worker_id="bench",
            wanted=min(batch_size, wanted - contacts),
            lease_s=600,
            pace_window_s=1.0,
            call_limiters=(),
            request_limiters=(),
            own_limiters=(),
            shared_slot_slack_s=SHARED_SLOT_SLACK_S,
            write_ahead_within_s=-1.0,
        )
        claims += 1
        if not claim.contact_ids:
            break
        contacts += len(claim.contact_ids)
    return claims, contacts, time.perf_counter() - started


async def main_async(arguments: argparse.Namespace) -> None:
    print(
        f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB "
        f"RAM; {platform.platform()}; python {platform.python_version()}"
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    zones = day_and_night_zones()
    open_contacts = int(arguments.contacts * arguments.open_share)
    print(
        f"\n{arguments.contacts:,} contacts per campaign; calling hours 08:00-21:00; now it is day"
        f" in {zones[0]} and night in {zones[1]}; the open {arguments.open_share:.0%} is "
        f"{open_contacts:,} contacts; batches of {arguments.batch_size}\n"
    )
    async with scratch_database(arguments.server_url) as url:
        connection = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            mostly_closed = await make_campaign(
                connection,
                "mostly-closed",
                arguments.contacts,
                arguments.open_share,
                zones,
                arguments.load_rows,
            )
            all_open = await make_campaign(
                connection,
                "all-open",
                arguments.contacts,
                1.0,
                (zones[0], zones[0]),
                arguments.load_rows,
            )
            await connection.execute("ANALYZE contacts")
            # The build's dirty pages written now, not by the first claims that evict them.
            await connection.execute("CHECKPOINT")
            print(f"built in {time.perf_counter() - started:.0f} s")
        finally:
            await connection.close()
        rates: dict[str, list[float]] = {"mostly-closed": [], "all-open": []}
        async with asyncpg.create_pool(url, min_size=1, max_size=2) as pool:
            per_round = open_contacts // arguments.rounds
            for round_number in range(1, arguments.rounds + 1):
                for name, campaign_id in (("mostly-closed", mostly_closed), ("all-open", all_open)):
                    claims, contacts, seconds = await claim_all(
                        pool, campaign_id, per_round, arguments.batch_size
                    )
                    rate = contacts / seconds
                    rates[name].append(rate)
                    print(
                        f"round {round_number} {name:<14} {claims:>5} claims, {contacts:>7,}"
                        f" contacts in {seconds:6.2f} s: {claims / seconds:7.0f} claims/s,"
                        f" {rate:9,.0f} contacts/s"
                    )
    closed_rate = statistics.median(rates["mostly-closed"])
    open_rate = statistics.median(rates["all-open"])
    ratio = closed_rate / open_rate
    verdict = "met" if ratio >= 0.8 else "MISSED"
    print(
        f"\nmedian contacts claimed per second: 99 % closed {closed_rate:,.0f}, all open "
        f"{open_rate:,.0f}; ratio {ratio:.2f} (goal >= 0.80: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get(
            "CAMPAIGN_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--open-share", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--load-rows",
        type=int,
        default=ROWS_PER_COPY,
        help=f"rows per COPY of the load that built the campaigns (default {ROWS_PER_COPY}, "
        f"as `campaign load` with validating processes; {ROWS_PER_COPY_IN_PROCESS} with a "
        "validating thread: small files and the API)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
