"""Benchmark pacing by concurrent calls and by priority, against the simulator.

    .venv/bin/python bench/pacing.py                              # both
    .venv/bin/python bench/pacing.py --only concurrency --contacts 300
    .venv/bin/python bench/pacing.py --only priorities

Each run is self-contained, as in bench/worker.py (whose helpers it uses): a fresh migrated
database on the local server, `campaign simulator` in its own process, `campaign worker --drain`
processes, then the simulator's ledger. Talks to nothing but 127.0.0.1.

1. concurrency  `--max-concurrent-calls 20` on a campaign that tracks its calls, calls lasting
                2-10 s (uniform), two worker processes, account CPS 10; `campaign serve`
                records the simulator's signed callbacks, whose hangups wake the workers. From
                the simulator's ledger: the most calls live at any moment (goal: never above
                20) and the mean of live calls while contacts were left to dial, as a share of
                the cap (goal: >= 95 %).
2. priorities   account CPS 10, three campaigns, two worker processes: `urgent` (priority 5)
                and `a`, `b` (priority 0), once with `urgent` capped at 4 calls per second and
                once uncapped. Calls per second of each while all of them had work, and after
                `urgent` finished (goal: capped, urgent 4 and a, b share the other 6; uncapped,
                a and b get nothing until urgent is done, then 5 each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psutil
import worker as worker_bench

from campaign.simulator import time_weighted_mean

BENCHMARKS = ("concurrency", "priorities")
CAP = 20


@contextlib.asynccontextmanager
async def serving_callbacks(url: str) -> AsyncIterator[str]:
    """`campaign serve` on a free loopback port, checking the simulator's signatures; yields the
    public URL the campaign's callbacks go to."""
    port = worker_bench.free_port()
    public_url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "CAMPAIGN_DATABASE_URL": url,
        "PLIVO_AUTH_ID": worker_bench.AUTH_ID,
        "PLIVO_AUTH_TOKEN": worker_bench.AUTH_TOKEN,
        "CAMPAIGN_PUBLIC_URL": public_url,
        "CAMPAIGN_LOG_LEVEL": "warning",
    }
    process = await asyncio.create_subprocess_exec(
        str(worker_bench.CAMPAIGN_EXECUTABLE),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        else:
            raise SystemExit("campaign serve did not start")
        yield public_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()


async def create_tracked_campaign(
    url: str, public_url: str, contacts: int, max_concurrent_calls: int
) -> None:
    """A running campaign whose ring and hangup callbacks come to `public_url`."""
    connection = await asyncpg.connect(url)
    try:
        campaign_id: int = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, batch_size, track_calls,'
            " max_concurrent_calls) VALUES ('concurrency', 'running', '+14155550100',"
            " 'http://127.0.0.1:9/answer.xml', 10, true, $1) RETURNING id",
            max_concurrent_calls,
        )
        await connection.execute(
            "UPDATE campaigns SET ring_url = $2 || '/plivo/ring?campaign=' || id,"
            " hangup_url = $2 || '/plivo/hangup?campaign=' || id WHERE id = $1",
            campaign_id,
            public_url,
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination)"
            " SELECT $1, '+1' || (2000000000 + g)::text, 'x' FROM generate_series(1, $2) AS g",
            campaign_id,
            contacts,
        )
    finally:
        await connection.close()


async def bench_concurrency(arguments: argparse.Namespace) -> None:
    contacts = arguments.contacts
    print(
        f"\n== 1. concurrency: --max-concurrent-calls {CAP}, {contacts} contacts, calls of 2-10 s,"
        " account CPS 10, 2 worker processes ==",
        flush=True,
    )
    simulator_options = (
        "--callbacks", "--talk-s", "2", "--talk-s-max", "10", "--completed", "1", "--busy", "0",
        "--no-answer", "0", "--failed", "0", "--timeout", "0", "--seed", "7",
    )  # fmt: skip
    async with (
        worker_bench.scratch_database(arguments.server_url) as url,
        serving_callbacks(url) as public_url,
        worker_bench.running_simulator(10.0, 0.0, 300, simulator_options) as base,
    ):
        await create_tracked_campaign(url, public_url, contacts, CAP)
        environment = worker_bench.worker_environment(
            url, base, account_cps=10.0, requests_per_window=300, concurrency=4
        )
        environment["CAMPAIGN_CALLBACK_WAIT_S"] = "30"
        elapsed_s, _ = await worker_bench.run_workers(environment, 2, contacts + 120)
        ledger = await worker_bench.read_ledger(base)
    dials = ledger["dials"]
    timeline = [(float(at), int(live)) for at, live in ledger["live_calls_timeline"]]
    first = min(float(dial["dialled_at"]) for dial in dials)
    last = max(float(dial["dialled_at"]) for dial in dials)
    full = next((at for at, live in timeline if live >= CAP), first)
    most = max((live for _at, live in timeline), default=0)
    whole = time_weighted_mean(timeline, first, last)
    steady = time_weighted_mean(timeline, full, last)
    destinations = Counter(dial["destination"] for dial in dials)
    print(f"  calls placed {len(dials)}, dialled twice {sum(c > 1 for c in destinations.values())}")
    print(f"  most calls live at one moment: {most} (cap {CAP})")
    print(
        f"  mean live calls while contacts were left to dial ({last - first:.1f} s): "
        f"{whole:.2f} = {whole / CAP:.1%} of the cap"
    )
    print(
        f"  from the first moment at the cap ({full - first:.1f} s after the first call): "
        f"{steady:.2f} = {steady / CAP:.1%}"
    )
    refused = ledger.get("concurrency_refusals", 0)
    print(f"  refused by the simulator for concurrency: {refused}")
    print(f"  drain took {elapsed_s:.0f} s")


async def share_run(
    arguments: argparse.Namespace, urgent_cap: float | None
) -> dict[str, Counter[int]]:
    """One run of the three campaigns; calls per clock second of each."""
    seconds = arguments.share_s
    counts = {"urgent": int((urgent_cap or 10.0) * seconds / 2), "a": 5 * seconds, "b": 5 * seconds}
    first_numbers = {"urgent": 2_000_000_000, "a": 3_000_000_000, "b": 4_000_000_000}
    async with worker_bench.scratch_database(arguments.server_url) as url:
        for name in ("a", "b", "urgent"):
            await worker_bench.create_capped_campaign(
                url,
                name,
                counts[name],
                first_numbers[name],
                urgent_cap if name == "urgent" else None,
            )
        connection = await asyncpg.connect(url)
        try:
            await connection.execute("UPDATE campaigns SET priority = 5 WHERE name = 'urgent'")
        finally:
            await connection.close()
        async with worker_bench.running_simulator(
            worker_bench.UNLIMITED_CPS, 0.0, worker_bench.UNLIMITED_CPS
        ) as base:
            environment = worker_bench.worker_environment(
                url, base, account_cps=10.0, requests_per_window=300, concurrency=4
            )
            await worker_bench.run_workers(environment, 2, seconds * 6 + 60)
            ledger = await worker_bench.read_ledger(base)
    owner = {}
    for name, first in first_numbers.items():
        for offset in range(1, counts[name] + 1):
            owner[f"+1{first + offset}"] = name
    per_second: dict[str, Counter[int]] = {name: Counter() for name in counts}
    for dial in ledger["dials"]:
        per_second[owner[dial["destination"]]][int(dial["dialled_at"])] += 1
    return per_second


def print_phases(per_second: dict[str, Counter[int]]) -> None:
    start = min(min(counts) for counts in per_second.values() if counts)
    urgent_last = max(per_second["urgent"])
    ends = min(max(per_second["a"]), max(per_second["b"]))
    phases = {
        "while urgent had work": range(start + 1, urgent_last),
        "after urgent finished": range(urgent_last + 1, ends),
    }
    print("  | phase | seconds | urgent (priority 5) | a (priority 0) | b (priority 0) |")
    print("  |---|---|---|---|---|")
    for phase, seconds in phases.items():
        means = [
            statistics.fmean(per_second[name].get(second, 0) for second in seconds)
            if seconds
            else 0.0
            for name in ("urgent", "a", "b")
        ]
        print(
            f"  | {phase} | {len(seconds)} | "
            + " | ".join(f"{mean:.2f}/s" for mean in means)
            + " |"
        )


async def bench_priorities(arguments: argparse.Namespace) -> None:
    for cap in (4.0, None):
        label = "capped at 4 calls/s" if cap is not None else "uncapped"
        print(
            f"\n== 2. priorities: account CPS 10; urgent (priority 5, {label}), a and b "
            "(priority 0); 2 worker processes ==",
            flush=True,
        )
        print_phases(await share_run(arguments, cap))


async def main_async(arguments: argparse.Namespace) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Python {sys.version.split()[0]}"
    )
    selected = arguments.only or list(BENCHMARKS)
    for name in BENCHMARKS:
        if name in selected:
            started = time.perf_counter()
            await globals()[f"bench_{name}"](arguments)
            print(f"  ({name} took {time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="repeatable")
    parser.add_argument(
        "--server-url",
        default=os.environ.get(
            "CAMPAIGN_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--contacts", type=int, default=300, help="concurrency run")
    parser.add_argument("--share-s", type=int, default=20, help="priorities: seconds per phase")
    arguments: Any = parser.parse_args()
    asyncio.run(main_async(arguments))


if __name__ == "__main__":
    main()
