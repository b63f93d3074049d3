"""Benchmark `campaign load`: rows/s and peak memory, beside validation alone and psql \\copy.

    python bench/import.py --rows 100000 --rows 1000000
    python bench/import.py --rows 1000000 --format plivo           # no --default-region
    python bench/import.py --rows 1000000 --format plivo-foreign   # no --default-region
    python bench/import.py --rows 1000000 --loads 3    # then campaigns 2 and 3 in the same database

Generates a CSV of N rows, then for each N:
  1. `campaign load` as a subprocess into a fresh database: wall time, rows/s, peak RSS of the
     process tree (the loader and its validating processes);
  2. the same rows validated as the loader validates them, in one process (no CSV, no
     database): with the compiled reader where it agrees when it is installed (campaign/
     fast_numbers.py), else phonenumbers alone;
  3. `psql \\copy` of the already-normalised rows into contacts (the database's own floor).
Each load keeps `campaign load`'s default calling hours, so every number's time zones are
computed (issue 11), and checks the suppression list `default` (empty here; bench/suppression.py
fills it).
Formats: `mixed` (the default: five US formats, 1 % invalid, 1 % duplicates, loaded with
--default-region US); `plivo` (US numbers as country code + number, `14155552671`, loaded
without a region from a US caller ID: the common case of campaign/bare_digits.py's rule 1);
`plivo-foreign` (numbers of seven other countries in that format, from the same US caller ID,
so that every row is searched for another reading).
Needs a PostgreSQL server (--server-url, default the local one) and psql on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import phonenumbers
import psutil

from campaign import db
from campaign.destinations import InvalidDestination, loader_reader, normalise_destination

AREA_CODES = (201, 212, 213, 305, 312, 415, 503, 617, 646, 702, 713, 818, 917, 972)


FOREIGN_PLIVO = ((44, "7", 9), (91, "9", 9), (33, "6", 8), (52, "55", 8), (61, "4", 8),
                 (55, "119", 8), (234, "80", 8))  # fmt: skip


def generate_plivo(path: Path, rows: int, foreign: bool, seed: int = 1) -> None:
    """N rows: name, phone, note; numbers as country code + number without `+`, all valid."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "phone", "note"])
        written = 0
        while written < rows:
            if foreign:
                country_code, leading, length = rng.choice(FOREIGN_PLIVO)
                digits = "".join(rng.choice("0123456789") for _ in range(length))
                phone = f"{country_code}{leading}{digits}"
            else:
                area = rng.choice(AREA_CODES)
                phone = f"1{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
            try:
                normalise_destination(phone, None, "US")
            except InvalidDestination:
                continue  # not assigned, or another reading: the bench measures loads that pass
            writer.writerow([f"person {written}", phone, "appointment at 10:00"])
            written += 1


def generate(path: Path, rows: int, seed: int = 1) -> None:
    """N rows: name, phone, note; numbers in five formats, 1 % invalid, 1 % repeated."""
    rng = random.Random(seed)
    previous: list[str] = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "phone", "note"])
        for index in range(rows):
            roll = rng.random()
            if roll < 0.01:
                phone = rng.choice(("555-01", "n/a", "+999 12", "12345678901234567"))
            elif roll < 0.02 and previous:
                phone = rng.choice(previous)
            else:
                area = rng.choice(AREA_CODES)
                exchange = rng.randint(200, 999)
                line = rng.randint(0, 9999)
                phone = rng.choice(
                    (
                        f"+1{area}{exchange}{line:04d}",
                        f"({area}) {exchange}-{line:04d}",
                        f"{area}.{exchange}.{line:04d}",
                        f"1-{area}-{exchange}-{line:04d}",
                        f"+1 {area} {exchange} {line:04d}",
                    )
                )
                if len(previous) < 1000:
                    previous.append(phone)
            writer.writerow([f"person {index}", phone, "appointment at 10:00"])


def validate_alone(path: Path, region: str | None) -> tuple[float, list[tuple[int, str, str]]]:
    """Seconds to validate every phone cell with phonenumbers in this process, and the results."""
    with path.open(newline="") as handle:
        values = [row[1] for row in csv.reader(handle)][1:]
    reader = loader_reader()
    started = time.perf_counter()
    normalised = []
    for line, value in enumerate(values, start=2):
        with contextlib.suppress(InvalidDestination):
            normalised.append((line, value, normalise_destination(value, region, "US", reader)))
    return time.perf_counter() - started, normalised


def run_load(
    path: Path, database_url: str, jobs: int | None, region: str | None
) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS of the loader process, peak RSS of its tree, and its summary.

    The campaign keeps the default calling hours (08:00-21:00 in each callee's local time), so
    the load computes every contact's time zones and checks the (empty) suppression list `default`.
    """
    env = dict(os.environ, CAMPAIGN_DATABASE_URL=database_url)
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
    if region is not None:
        command += ["--default-region", region]
    if jobs is not None:
        command += ["--jobs", str(jobs)]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    watched = psutil.Process(process.pid)
    peak_main = peak_tree = 0
    while process.poll() is None:
        try:
            main_rss = watched.memory_info().rss
            tree_rss = main_rss + sum(
                child.memory_info().rss for child in watched.children(recursive=True)
            )
        except psutil.Error:
            break
        peak_main = max(peak_main, main_rss)
        peak_tree = max(peak_tree, tree_rss)
        time.sleep(0.02)
    output = process.communicate()[0]
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"campaign load failed with exit code {process.returncode}")
    # After its first line (the campaign): the counts, then the calling hours.
    return elapsed, peak_main, peak_tree, "; ".join(output.strip().splitlines()[1:])


def psql_copy(rows: list[tuple[int, str, str]], database_url: str, campaign_id: int) -> float:
    """Seconds for psql \\copy of the normalised rows into contacts (duplicates removed first)."""
    seen: set[str] = set()
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as handle:
        writer = csv.writer(handle)
        for line, raw, destination in rows:
            if destination in seen:
                continue
            seen.add(destination)
            writer.writerow([campaign_id, destination, raw, line, '{"note": "x"}'])
    started = time.perf_counter()
    subprocess.run(
        [
            "psql",
            database_url,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f"\\copy contacts (campaign_id, destination, raw_destination, line_number, fields) "
            f"FROM '{handle.name}' WITH (FORMAT csv)",
        ],
        check=True,
    )
    elapsed = time.perf_counter() - started
    os.unlink(handle.name)
    return elapsed


async def fresh_database(server_url: str) -> str:
    name = f"campaign_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = db.with_database(server_url, name)
    connection = await asyncpg.connect(url)
    await db.migrate(connection)
    await connection.close()
    return url


async def drop_database(server_url: str, url: str) -> None:
    admin = await asyncpg.connect(server_url)
    name = url.rsplit("/", 1)[1].split("?")[0]
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def bench(
    rows: int,
    server_url: str,
    jobs: int | None,
    folder: Path,
    number_format: str,
    loads: int = 1,
) -> None:
    path = folder / f"contacts-{rows}-{number_format}.csv"
    if number_format == "mixed":
        generate(path, rows)
    else:
        generate_plivo(path, rows, foreign=number_format == "plivo-foreign")
    region = "US" if number_format == "mixed" else None
    size_mb = path.stat().st_size / 1e6
    validation_s, normalised = validate_alone(path, region)
    url = await fresh_database(server_url)
    try:
        load_s, peak_main, peak_tree, summary = run_load(path, url, jobs, region)
        # More campaigns of the same file in the same database: each load plans on statistics
        # made after the one before (ANALYZE), when its campaign did not exist.
        later = [run_load(path, url, jobs, region)[0] for _ in range(loads - 1)]
        connection = await asyncpg.connect(url)
        campaign_id = await connection.fetchval(
            "INSERT INTO campaigns (name, \"from\", answer_url) VALUES ('copy', '+14155550100', "
            "'https://e.com') RETURNING id"
        )
        await connection.close()
        copy_s = psql_copy(normalised, url, campaign_id)
    finally:
        await drop_database(server_url, url)
    print(f"\nN = {rows:,} rows, {number_format} ({size_mb:.1f} MB)   [{summary}]")
    print(
        f"  campaign load           {load_s:7.2f} s  {rows / load_s:10,.0f} rows/s   "
        f"peak RSS {peak_main / 2**20:.0f} MiB (loader), "
        f"{peak_tree / 2**20:.0f} MiB (with validators)"
    )
    for number, seconds in enumerate(later, start=2):
        print(
            f"  campaign load #{number:<8d} {seconds:7.2f} s  {rows / seconds:10,.0f} rows/s   "
            f"(campaign {number} in the same database)"
        )
    print(
        f"  validation alone        {validation_s:7.2f} s  {rows / validation_s:10,.0f} rows/s   "
        f"(one process; compiled reader {'on' if loader_reader().enabled else 'off'})"
    )
    print(f"  psql \\copy (normalised) {copy_s:7.2f} s  {rows / copy_s:10,.0f} rows/s")
    print(f"  load / validation alone {load_s / validation_s:7.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, action="append", help="rows per run (repeatable)")
    parser.add_argument(
        "--server-url",
        default=os.environ.get(
            "CAMPAIGN_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--jobs", type=int, help="validating processes (default: the loader's choice)"
    )
    parser.add_argument(
        "--format",
        choices=("mixed", "plivo", "plivo-foreign"),
        default="mixed",
        help="how the numbers are written (see above)",
    )
    parser.add_argument(
        "--loads",
        type=int,
        default=1,
        help="load the file into this many campaigns of one database, one after the other",
    )
    arguments = parser.parse_args()
    if shutil.which("psql") is None:
        raise SystemExit("psql is not on PATH; install the PostgreSQL client")
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"phonenumbers {phonenumbers.__version__}; python {sys.version.split()[0]}"
    )
    import asyncio

    with tempfile.TemporaryDirectory() as folder:
        for rows in arguments.rows or [100_000, 1_000_000]:
            asyncio.run(
                bench(
                    rows,
                    arguments.server_url,
                    arguments.jobs,
                    Path(folder),
                    arguments.format,
                    arguments.loads,
                )
            )


if __name__ == "__main__":
    main()
