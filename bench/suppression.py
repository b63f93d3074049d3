"""Benchmark suppression lists at scale (issue 11): a load and the claim, with the list empty and
with 10,000,000 numbers in it.

    .venv/bin/python bench/suppression.py                    # 1,000,000 contacts, 10M suppressed
    .venv/bin/python bench/suppression.py --contacts 200000 --claim 100000

Two scratch databases on the local server, alike but for `suppressions`: empty in one; in the
other, --suppressed rows of the list `default` (every campaign's), random +1 numbers written with
`INSERT … SELECT generate_series` (in key order, one random number in each run of 799), then
--in-file numbers of the CSV, then `VACUUM ANALYZE`, then the list's Bloom filter built and
saved (campaign/suppression_filter.py; as `campaign suppress add` of that many numbers leaves
it). The CSV: --contacts distinct US numbers in E.164, in no order. Then --rounds times, in turn
in each database, each after a `CHECKPOINT`:
  (a) `campaign load` of the CSV as a subprocess (as bench/import.py runs it; the default calling
      hours, so every number's time zones are computed; each COPY of 10,000 rows into contacts
      first looks up in `suppressions` the numbers the list's filter may hold): wall time,
      start-up of the process included;
  (b) the claim: the campaign set running with calling hours 00:00-24:00 (open at any hour, the
      zones still read), then --claim of its contacts claimed with the SQL function claim_batch
      (one round trip each, batches of --batch-size, no rate limit, contacts left `claimed`), each
      batch's numbers looked up in `suppressions`: contacts per second (before it, untimed, the
      contacts stored `suppressed` are checked to be exactly those on the list, by a join);
then the round's contacts are truncated, so that every load starts from an empty table. Printed:
each run, the medians, and the cost with 10M over the cost with none (goal: at most 1.10); and
the load's ratio round by round (its two loads run one after the other), with its median.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psutil
from windows import claim_all, scratch_database

from campaign.destinations import normalise_destination
from campaign.suppression_filter import refresh_filters

# Numbers of the CSV: +1, one of these area codes, an exchange 200-999, a line 0000-9999.
AREA_CODES = (201, 212, 213, 305, 312, 415, 503, 617, 646, 702, 713, 818, 917, 972)
NUMBERS_PER_AREA = 800 * 10_000
# The random suppressed numbers: one in each run of this many, from +12000000000 up.
SUPPRESSED_SPACING = 799
EMPTY, FULL = "empty", "filled"


def generate(path: Path, contacts: int, in_file: int, seed: int = 1) -> list[str]:
    """A CSV of `contacts` distinct US numbers in E.164 (header: name, phone, note), in no order;
    returns `in_file` of them (valid ones) for the suppression list."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(AREA_CODES) * NUMBERS_PER_AREA), contacts)
    numbers = [
        f"+1{AREA_CODES[pick // NUMBERS_PER_AREA]}{200 + pick // 10_000 % 800}{pick % 10_000:04d}"
        for pick in picks
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "phone", "note"])
        writer.writerows(
            [f"person {index}", number, "appointment at 10:00"]
            for index, number in enumerate(numbers)
        )
    chosen: list[str] = []
    for number in rng.sample(numbers, min(len(numbers), in_file * 2)):
        if len(chosen) == in_file:
            break
        try:
            chosen.append(normalise_destination(number, None, "US"))
        except ValueError:
            continue  # not an assigned range: the load rejects it anyway
    return chosen


async def fill_suppressions(url: str, rows: int, from_file: list[str]) -> int:
    """`rows` numbers in the list `default` (those of the file among them); how many there are."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO suppressions (list, destination) "
            "SELECT 'default', '+1' || (2000000000 + g * $2::bigint"
            "                           + floor(random() * $2)::bigint)::text "
            "FROM generate_series(0, $1::bigint - 1) AS g",
            rows - len(from_file),
            SUPPRESSED_SPACING,
        )
        await connection.execute(
            "INSERT INTO suppressions (list, destination) "
            "SELECT 'default', d FROM unnest($1::text[]) AS d ON CONFLICT DO NOTHING",
            from_file,
        )
        await connection.execute("VACUUM ANALYZE suppressions")
        count: int = await connection.fetchval("SELECT count(*) FROM suppressions")
        # The list's filter, as `campaign suppress add` of that many numbers leaves it (else the
        # first load would build it: read the 10M numbers, several seconds).
        started = time.perf_counter()
        await refresh_filters(connection, ["default"])
        print(f"its filter built and saved in {time.perf_counter() - started:.1f} s")
        return count
    finally:
        await connection.close()


def run_load(path: Path, url: str) -> tuple[float, str]:
    """Wall seconds of `campaign load` into a new campaign, and its counts."""
    command = [
        sys.executable,
        "-m",
        "campaign",
        "load",
        str(path),
        "--name",
        f"bench-{uuid.uuid4().hex[:8]}",
        "--from",
        "+14155550100",
        "--answer-url",
        "https://example.com/a.xml",
    ]
    env = dict(os.environ, CAMPAIGN_DATABASE_URL=url)
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=3600
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"campaign load failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stdout.strip().splitlines()[1]


async def checkpoint(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def claim_round(url: str, wanted: int, batch_size: int) -> tuple[int, float, int]:
    """Claim `wanted` contacts of the campaign just loaded; (contacts, seconds, suppressed at load).
    Then empty the contacts for the next load. Exits if the contacts stored `suppressed` are not
    exactly those on the list (a SQL join, not timed)."""
    connection = await asyncpg.connect(url)
    try:
        campaign_id: int = await connection.fetchval(
            "UPDATE campaigns SET status = 'running', calling_hours = '{[00:00,24:00)}' "
            "WHERE id = (SELECT max(id) FROM campaigns) RETURNING id"
        )
        suppressed: int = await connection.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND status = 'suppressed'",
            campaign_id,
        )
        wrong: int = await connection.fetchval(
            "SELECT count(*) FROM contacts c WHERE c.campaign_id = $1 AND (c.status = 'suppressed')"
            " <> EXISTS (SELECT 1 FROM suppressions s"
            "            WHERE s.list = 'default' AND s.destination = c.destination)",
            campaign_id,
        )
        if wrong:
            raise SystemExit(f"{wrong} contacts suppressed and not listed, or the other way")
        async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
            _, contacts, seconds = await claim_all(pool, campaign_id, wanted, batch_size)
        await connection.execute("TRUNCATE contacts")
        await connection.execute("DELETE FROM campaigns")
        return contacts, seconds, suppressed
    finally:
        await connection.close()


def verdict(empty_cost: float, full_cost: float) -> str:
    """The cost with the list filled over the cost with it empty, against the goal."""
    ratio = full_cost / empty_cost
    met = "met" if ratio <= 1.10 else "MISSED"
    return f"cost ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f} %; goal <= 1.10: {met})"


async def main_async(arguments: argparse.Namespace) -> None:
    print(
        f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB "
        f"RAM; {platform.platform()}; python {platform.python_version()}"
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "contacts.csv"
        from_file = generate(path, arguments.contacts, arguments.in_file)
        print(
            f"\n{arguments.contacts:,} contacts in the CSV; {arguments.suppressed:,} suppressed "
            f"numbers ({len(from_file):,} of them in the CSV) vs none; {arguments.claim:,} "
            f"contacts claimed per run in batches of {arguments.batch_size}\n"
        )
        async with (
            scratch_database(arguments.server_url) as empty_url,
            scratch_database(arguments.server_url) as full_url,
        ):
            started = time.perf_counter()
            count = await fill_suppressions(full_url, arguments.suppressed, from_file)
            print(f"{count:,} suppressions written in {time.perf_counter() - started:.0f} s")
            load_s: dict[str, list[float]] = {EMPTY: [], FULL: []}
            claim_rate: dict[str, list[float]] = {EMPTY: [], FULL: []}
            for round_number in range(1, arguments.rounds + 1):
                # Each round starts with the other database, so neither is always first.
                order = [(EMPTY, empty_url), (FULL, full_url)]
                if round_number % 2 == 0:
                    order.reverse()
                for name, url in order:
                    await checkpoint(url)
                    seconds, counts = run_load(path, url)
                    await checkpoint(url)
                    contacts, claim_s, suppressed = await claim_round(
                        url, arguments.claim, arguments.batch_size
                    )
                    load_s[name].append(seconds)
                    claim_rate[name].append(contacts / claim_s)
                    print(
                        f"round {round_number} {name:<10} load {seconds:6.2f} s "
                        f"({arguments.contacts / seconds:7,.0f} rows/s; {counts}; stored "
                        f"suppressed {suppressed:,}); claim {contacts:,} in {claim_s:5.2f} s "
                        f"({contacts / claim_s:7,.0f} contacts/s)"
                    )
    empty_s, full_s = statistics.median(load_s[EMPTY]), statistics.median(load_s[FULL])
    print(
        f"\nmedian load: empty {empty_s:.2f} s, filled {full_s:.2f} s; {verdict(empty_s, full_s)}"
    )
    # Each round's two loads run one after the other, in the same phase of a machine whose speed
    # drifts by tens of percent over minutes: their ratio is the steadier figure.
    ratios = [full / empty for empty, full in zip(load_s[EMPTY], load_s[FULL], strict=True)]
    print(
        "load, filled over empty round by round: "
        + " · ".join(f"{ratio:.3f}" for ratio in ratios)
        + f"; median {statistics.median(ratios):.3f}"
    )
    # The claim's cost per contact is 1 / its rate.
    empty_rate = statistics.median(claim_rate[EMPTY])
    full_rate = statistics.median(claim_rate[FULL])
    print(
        f"median claim: empty {empty_rate:,.0f} contacts/s, filled {full_rate:,.0f} contacts/s; "
        f"{verdict(1 / empty_rate, 1 / full_rate)}"
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
    parser.add_argument("--contacts", type=int, default=1_000_000, help="rows of the CSV")
    parser.add_argument("--suppressed", type=int, default=10_000_000, help="rows of the list")
    parser.add_argument(
        "--in-file", type=int, default=5_000, help="suppressed numbers that are in the CSV"
    )
    parser.add_argument("--claim", type=int, default=200_000, help="contacts claimed per run")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    if arguments.suppressed > 8_000_000_000 // SUPPRESSED_SPACING:
        raise SystemExit("--suppressed: at most 10,012,515 (the +1 numbers run out)")
    asyncio.run(main_async(arguments))


if __name__ == "__main__":
    main()
