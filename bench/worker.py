"""Benchmark `campaign worker`: throughput, pacing, latency and scale, against the simulator.

    .venv/bin/python bench/worker.py                      # all four
    .venv/bin/python bench/worker.py --only throughput --concurrency 4 --concurrency 8
    .venv/bin/python bench/worker.py --only scale --scale-concurrency 4

Each run is self-contained: a fresh database on the local PostgreSQL server (--server-url),
migrated; `campaign simulator` in its own process on 127.0.0.1 (a free port, no callbacks); a
campaign whose contacts are bulk-inserted with generate_series (not what is measured); one or
more `campaign worker --drain` processes pointed at the simulator; then the simulator's ledger
and the database are read, and the database is dropped. Talks to nothing but 127.0.0.1.

1. throughput  no rate limit, zero latency: contacts/s end to end for batch sizes 1000, 100 and 1
               and several worker concurrencies (goal: >= 20,000/s at batch 1000).
2. pacing      account CPS 50 for 60 s, two worker processes: the simulator's calls per clock
               second (goal: none above 50, mean >= 49, nothing queued).
3. latency     simulator latency 250 ms, CPS 500: sustained calls/s per concurrency (goal >= 495).
4. scale       throughput with --scale-rows (10M) settled contacts already in the table, versus an
               empty table (goal: within 10 %).
5. share       fair share: account CPS 10, three running campaigns for ~60 s, one of them capped
               at --share-cap calls per second: each campaign's calls per second (the other two
               share what the capped one leaves; none starved).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import psutil

from campaign import db

AUTH_ID = "MABENCHMARK000000001"
AUTH_TOKEN = "bench-auth-token"
UNLIMITED_CPS = 100_000_000
BENCHMARKS = ("throughput", "pacing", "latency", "scale", "share")
CAMPAIGN_EXECUTABLE = Path(sys.executable).with_name("campaign")


# --- the database ---------------------------------------------------------------------------------


async def fresh_database(server_url: str) -> str:
    """A new, migrated database on the server; its URL."""
    name = f"campaign_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = db.with_database(server_url, name)
    connection = await asyncpg.connect(url)
    try:
        await db.migrate(connection)
    finally:
        await connection.close()
    return url


async def drop_database(server_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    url = await fresh_database(server_url)
    try:
        yield url
    finally:
        await drop_database(server_url, url)


async def create_campaign(url: str, contacts: int, batch_size: int, first_number: int) -> int:
    """A running campaign with `contacts` pending contacts (+1 numbers from first_number)."""
    connection = await asyncpg.connect(url)
    try:
        campaign_id: int = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, batch_size) '
            "VALUES ($1, 'running', '+14155550100', 'http://127.0.0.1:9/answer.xml', $2) "
            "RETURNING id",
            f"bench-{uuid.uuid4().hex[:8]}",
            batch_size,
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, line_number) "
            "SELECT $1, '+1' || (($2::bigint) + g)::text, '+1' || (($2::bigint) + g)::text, g + 1 "
            "FROM generate_series(1, $3) AS g",
            campaign_id,
            first_number,
            contacts,
        )
        # A loader's table would be analysed by autovacuum soon after; do it now.
        await connection.execute("ANALYZE contacts")
    finally:
        await connection.close()
    return campaign_id


async def build_settled_rows(url: str, rows: int, campaigns: int = 10) -> float:
    """`rows` settled contacts (97 % fired, 2 % failed, 1 % queued) in completed campaigns."""
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        # Only this build session; the measured workers keep the server's defaults.
        await connection.execute("SET synchronous_commit = off")
        per_campaign = -(-rows // campaigns)
        done = 0
        for index in range(campaigns):
            count = min(per_campaign, rows - done)
            if count <= 0:
                break
            campaign_id = await connection.fetchval(
                'INSERT INTO campaigns (name, status, "from", answer_url) '
                "VALUES ($1, 'completed', '+14155550100', 'http://127.0.0.1:9/answer.xml') "
                "RETURNING id",
                f"settled-{index}",
            )
            await connection.execute(
                """
                INSERT INTO contacts (campaign_id, destination, raw_destination, line_number,
                                      status, attempts, request_uuid, api_id, plivo_message,
                                      http_status, last_error, dial_request_id)
                SELECT $1, '+1' || (3000000000 + g)::text, '+1' || (3000000000 + g)::text, g + 1,
                       CASE WHEN g % 100 < 97 THEN 'fired'
                            WHEN g % 100 < 99 THEN 'failed' ELSE 'queued' END,
                       1, md5(g::text)::uuid::text, md5((g + 1)::text)::uuid::text,
                       'calls fired', 201,
                       CASE WHEN g % 100 BETWEEN 97 AND 98
                            THEN 'Plivo refused the number as invalid' END,
                       g / 100
                FROM generate_series(1, $2) AS g
                """,
                campaign_id,
                count,
            )
            done += count
            elapsed = time.perf_counter() - started
            print(f"    built {done:>12,} / {rows:,} settled rows  ({elapsed:6.0f} s)", flush=True)
        print("    VACUUM ANALYZE contacts …", flush=True)
        await connection.execute("VACUUM ANALYZE contacts")
        size = await connection.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('contacts'))"
        )
        print(f"    contacts table with indexes: {size}", flush=True)
    finally:
        await connection.close()
    return time.perf_counter() - started


# --- the simulator and the workers ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def running_simulator(
    cps: float,
    latency_s: float,
    requests_per_window: int,
    extra: Sequence[str] = ("--no-callbacks",),
) -> AsyncIterator[str]:
    """`campaign simulator` in its own process on a free loopback port, with `extra` options
    (default: no callbacks); yields its base URL."""
    port = free_port()
    command = [
        str(CAMPAIGN_EXECUTABLE), "simulator", "--host", "127.0.0.1", "--port", str(port),
        "--cps", format(cps, "g"), "--requests-per-window", str(requests_per_window),
        "--latency-s", format(latency_s, "g"), *extra,
        "--auth-id", AUTH_ID, "--auth-token", AUTH_TOKEN,
    ]  # fmt: skip
    # Its output is kept, to say why if it ends before the benchmark is done with it.
    output = tempfile.TemporaryFile()  # noqa: SIM115  # closed in the finally below
    process = await asyncio.create_subprocess_exec(
        *command, stdout=output, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            give_up = time.monotonic() + 20
            while True:
                try:
                    async with session.get(f"{base_url}/__simulator__/ledger?summary=1") as reply:
                        if reply.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if process.returncode is not None or time.monotonic() > give_up:
                    raise SystemExit("the simulator did not start")
                await asyncio.sleep(0.1)
        yield base_url
    finally:
        if process.returncode is not None:
            output.seek(0)
            tail = output.read().decode(errors="replace").strip().splitlines()[-10:]
            print(
                f"the simulator on port {port} exited early (code {process.returncode}):",
                *tail,
                sep="\n    ",
                file=sys.stderr,
            )
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        output.close()


async def read_ledger(base_url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{base_url}/__simulator__/ledger") as reply,
    ):
        reply.raise_for_status()
        ledger: dict[str, Any] = await reply.json()
    return ledger


def worker_environment(
    url: str, base_url: str, *, account_cps: float, requests_per_window: int, concurrency: int
) -> dict[str, str]:
    return {
        **os.environ,
        "CAMPAIGN_DATABASE_URL": url,
        "PLIVO_API_URL": base_url,
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "CAMPAIGN_ACCOUNT_CPS": format(account_cps, "g"),
        "CAMPAIGN_API_REQUESTS_PER_WINDOW": str(requests_per_window),
        "CAMPAIGN_WORKER_CONCURRENCY": str(concurrency),
        "CAMPAIGN_LOG_LEVEL": "warning",
    }


async def run_workers(
    environment: dict[str, str], processes: int, timeout_s: float
) -> tuple[float, list[str]]:
    """Start `processes` drained workers at once; wall seconds until the last exits, and output."""
    return await run_worker_processes([environment] * processes, timeout_s)


async def run_worker_processes(
    environments: Sequence[dict[str, str]], timeout_s: float
) -> tuple[float, list[str]]:
    """One drained worker per environment, all started at once; wall seconds until the last
    exits, and each one's output."""
    processes = len(environments)
    with tempfile.TemporaryDirectory() as folder:
        logs = [Path(folder) / f"worker-{index}.log" for index in range(processes)]
        handles = [log.open("w") for log in logs]
        started = time.perf_counter()
        children = [
            await asyncio.create_subprocess_exec(
                str(CAMPAIGN_EXECUTABLE),
                "worker",
                "--drain",
                env=environment,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
            for environment, handle in zip(environments, handles, strict=True)
        ]
        codes: list[int | None]
        try:
            codes = list(
                await asyncio.wait_for(
                    asyncio.gather(*(child.wait() for child in children)), timeout_s
                )
            )
        except TimeoutError:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
            await asyncio.gather(*(child.wait() for child in children))
            codes = [None] * processes
        elapsed = time.perf_counter() - started
        for handle in handles:
            handle.close()
        outputs = [log.read_text().strip() for log in logs]
    for code, output in zip(codes, outputs, strict=True):
        if code != 0:
            tail = "\n".join(output.splitlines()[-15:])
            what = "timed out" if code is None else f"exited {code}"
            raise RuntimeError(f"a worker {what} after {elapsed:.0f} s:\n{tail}")
    return elapsed, outputs


# --- one run --------------------------------------------------------------------------------------


@dataclass(slots=True)
class DialRun:
    """What one drained run did, from the processes, the database and the simulator's ledger."""

    contacts: int
    batch_size: int
    concurrency: int
    processes: int
    drain_s: float = 0.0
    # First write-ahead to last reply recorded (database clock): claimed, sent, recorded.
    recorded_span_s: float = 0.0
    # First to last Make-a-call request the simulator received.
    ledger_span_s: float = 0.0
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    dials: int = 0
    dialled_twice: int = 0
    queued: int = 0
    calls_per_second: dict[int, int] = field(default_factory=dict)

    @property
    def all_fired(self) -> bool:
        return self.statuses == Counter({"fired": self.contacts}) and self.dials == self.contacts

    @property
    def recorded_rate(self) -> float:
        return self.contacts / self.recorded_span_s if self.recorded_span_s else 0.0

    @property
    def drain_rate(self) -> float:
        return self.contacts / self.drain_s if self.drain_s else 0.0

    def full_seconds(self) -> list[int]:
        """Calls per clock second, without the first and last (partial) seconds; gaps count 0."""
        if len(self.calls_per_second) < 3:
            return []
        first, last = min(self.calls_per_second), max(self.calls_per_second)
        return [self.calls_per_second.get(second, 0) for second in range(first + 1, last)]


async def dial_run(
    url: str,
    *,
    contacts: int,
    batch_size: int,
    concurrency: int,
    processes: int = 1,
    account_cps: float = 0,
    requests_per_window: int = 0,
    simulator_cps: float = UNLIMITED_CPS,
    simulator_requests_per_window: int = UNLIMITED_CPS,
    latency_s: float = 0.0,
    timeout_s: float = 600.0,
    first_number: int = 2_000_000_000,
) -> DialRun:
    """Load a campaign into the database at `url`, drain it through a fresh simulator, measure."""
    campaign_id = await create_campaign(url, contacts, batch_size, first_number)
    run = DialRun(contacts, batch_size, concurrency, processes)
    async with running_simulator(simulator_cps, latency_s, simulator_requests_per_window) as base:
        environment = worker_environment(
            url,
            base,
            account_cps=account_cps,
            requests_per_window=requests_per_window,
            concurrency=concurrency,
        )
        run.drain_s, _outputs = await run_workers(environment, processes, timeout_s)
        ledger = await read_ledger(base)
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM contacts WHERE campaign_id = $1 GROUP BY status",
            campaign_id,
        )
        run.statuses = Counter({row["status"]: row["n"] for row in rows})
        span = await connection.fetchrow(
            "SELECT count(*) AS requests, "
            "       extract(epoch FROM max(replied_at) - min(sent_at))::float8 AS span_s "
            "FROM dial_requests WHERE campaign_id = $1",
            campaign_id,
        )
        assert span is not None  # an aggregate without GROUP BY always returns a row
        run.requests = span["requests"]
        run.recorded_span_s = span["span_s"] or 0.0
    finally:
        await connection.close()
    dials = ledger["dials"]
    run.dials = len(dials)
    run.dialled_twice = sum(
        1 for count in Counter(d["destination"] for d in dials).values() if count > 1
    )
    run.queued = sum(1 for d in dials if d["queued"])
    run.calls_per_second = {int(k): v for k, v in ledger["calls_per_second"].items()}
    received = [r["received_at"] for r in ledger["requests"] if r["method"] == "POST"]
    run.ledger_span_s = max(received) - min(received) if received else 0.0
    return run


# --- the four benchmarks --------------------------------------------------------------------------


def print_throughput_table(runs: Sequence[DialRun], title: str) -> None:
    print(f"\n  {title}")
    print(
        f"  {'batch':>5} {'conc':>4} {'contacts':>9} {'requests':>8} {'first→last rec.':>16} "
        f"{'contacts/s':>10} {'req. span':>9} {'drain wall':>10} {'drain/s':>8}  all fired"
    )
    for run in runs:
        print(
            f"  {run.batch_size:>5} {run.concurrency:>4} {run.contacts:>9,} {run.requests:>8,} "
            f"{run.recorded_span_s:>14.2f} s {run.recorded_rate:>10,.0f} "
            f"{run.ledger_span_s:>7.2f} s {run.drain_s:>8.2f} s {run.drain_rate:>8,.0f}  "
            f"{'yes' if run.all_fired else f'NO {dict(run.statuses)} dials {run.dials}'}"
            f"{f' ({run.dialled_twice} dialled twice)' if run.dialled_twice else ''}"
        )


async def bench_throughput(arguments: argparse.Namespace) -> None:
    print("\n== 1. throughput: no rate limit, zero latency, 1 worker process ==")
    plans = [
        (batch_size, arguments.batch_one_contacts if batch_size == 1 else arguments.contacts)
        for batch_size in arguments.batch_size
    ]
    for batch_size, contacts in plans:
        if batch_size == 1:
            print(f"  (batch size 1 with {contacts:,} contacts, not {arguments.contacts:,})")
        runs = []
        for concurrency in arguments.concurrency:
            async with scratch_database(arguments.server_url) as url:
                run = await dial_run(
                    url, contacts=contacts, batch_size=batch_size, concurrency=concurrency
                )
            runs.append(run)
            print_throughput_table([run], f"batch {batch_size}, concurrency {concurrency}: done")
        best = max(runs, key=lambda run: run.recorded_rate)
        print_throughput_table(
            runs, f"batch size {batch_size}: best concurrency {best.concurrency}"
        )
        if batch_size == 1000:
            verdict = "met" if best.recorded_rate >= 20_000 else "MISSED"
            print(
                f"  goal >= 20,000 contacts/s at batch 1000: {verdict} ({best.recorded_rate:,.0f})"
            )


async def bench_pacing(arguments: argparse.Namespace) -> None:
    cps, seconds = 50, arguments.pacing_s
    contacts = cps * seconds
    print(
        f"\n== 2. pacing: account CPS {cps}, {contacts:,} contacts (~{seconds} s), "
        f"2 worker processes, simulator --cps {cps} ==",
        flush=True,
    )
    async with scratch_database(arguments.server_url) as url:
        run = await dial_run(
            url,
            contacts=contacts,
            batch_size=100,
            concurrency=4,
            processes=2,
            account_cps=cps,
            requests_per_window=300,
            simulator_cps=cps,
            simulator_requests_per_window=300,
            timeout_s=seconds * 3 + 60,
        )
    counts = [run.calls_per_second[s] for s in sorted(run.calls_per_second)]
    print("  calls per clock second (simulator ledger, in order):")
    for start in range(0, len(counts), 15):
        print("   " + " ".join(f"{count:>3}" for count in counts[start : start + 15]))
    full = run.full_seconds()
    peak = max(run.calls_per_second.values(), default=0)
    mean = statistics.fmean(full) if full else 0.0
    print(f"  {'seconds (full)':<26} {len(full)}")
    peak_verdict = "met" if peak <= cps else "MISSED"
    mean_verdict = "met" if mean >= 49 else "MISSED"
    print(f"  {'max calls in a second':<26} {peak}   (goal <= {cps}: {peak_verdict})")
    print(f"  {'mean over full seconds':<26} {mean:.2f} (goal >= 49: {mean_verdict})")
    print(f"  {'min over full seconds':<26} {min(full, default=0)}")
    queued_contacts = run.statuses["queued"]
    print(f"  {'calls queued at Plivo':<26} {run.queued}   (contacts queued: {queued_contacts})")
    print(f"  {'requests':<26} {run.requests}   drain wall {run.drain_s:.1f} s")
    print(f"  {'contacts':<26} {dict(run.statuses)}; dialled twice: {run.dialled_twice}")


async def bench_latency(arguments: argparse.Namespace) -> None:
    cps, latency_s = 500, 0.25
    contacts = cps * arguments.latency_run_s
    print(
        f"\n== 3. latency: simulator --latency-s {latency_s:g} --cps {cps}, account CPS {cps}, "
        f"{contacts:,} contacts (~{arguments.latency_run_s} s), 1 worker process ==",
        flush=True,
    )
    runs = []
    for concurrency in arguments.latency_concurrency:
        async with scratch_database(arguments.server_url) as url:
            run = await dial_run(
                url,
                contacts=contacts,
                batch_size=1000,
                concurrency=concurrency,
                account_cps=cps,
                requests_per_window=300,
                simulator_cps=cps,
                simulator_requests_per_window=300,
                latency_s=latency_s,
                timeout_s=arguments.latency_run_s * 10 + 60,
            )
        runs.append(run)
        full = run.full_seconds()
        mean = statistics.fmean(full) if full else 0.0
        print(
            f"  concurrency {concurrency:>2}: sustained {mean:6.1f} calls/s (full seconds), "
            f"max {max(full, default=0)}, min {min(full, default=0)}, queued {run.queued}, "
            f"requests {run.requests}, drain {run.drain_s:.1f} s, "
            f"{'all fired' if run.all_fired else dict(run.statuses)}",
            flush=True,
        )
    best = max(runs, key=lambda run: statistics.fmean(run.full_seconds() or [0]))
    mean = statistics.fmean(best.full_seconds() or [0])
    verdict = "met" if mean >= 495 else "MISSED"
    print(f"  goal >= 495 calls/s: {verdict} (best {mean:.1f} at concurrency {best.concurrency})")


async def checkpoint(url: str) -> None:
    """Flush dirty buffers now, so that a measured run does not pay for the writes before it."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def bench_scale(arguments: argparse.Namespace) -> None:
    rows, contacts, concurrency, repeat = (
        arguments.scale_rows,
        arguments.contacts,
        arguments.scale_concurrency,
        arguments.scale_repeat,
    )
    print(
        f"\n== 4. scale: {contacts:,} pending at batch 1000, concurrency {concurrency}, "
        f"empty table vs {rows:,} settled contacts; {repeat} run(s) each, alternating, "
        "a CHECKPOINT before each ==",
        flush=True,
    )
    results: dict[str, list[DialRun]] = {"empty": [], "settled": []}
    async with (
        scratch_database(arguments.server_url) as settled_url,
        scratch_database(arguments.server_url) as empty_url,
    ):
        print(f"  building {rows:,} settled contacts …", flush=True)
        build_s = await build_settled_rows(settled_url, rows)
        print(f"  built in {build_s:.0f} s", flush=True)
        # Runs alternate between the two databases, so that whatever else the machine does
        # over the minutes of the benchmark weighs on both alike.
        for index in range(repeat):
            for kind, url in (("empty", empty_url), ("settled", settled_url)):
                await checkpoint(url)
                run = await dial_run(
                    url,
                    contacts=contacts,
                    batch_size=1000,
                    concurrency=concurrency,
                    first_number=2_000_000_000 + index * 10_000_000,
                )
                results[kind].append(run)
                label = "empty table" if kind == "empty" else f"{rows:,} settled rows"
                print_throughput_table([run], f"{label}, run {index + 1}")
    print_throughput_table(results["empty"] + results["settled"], "all runs (empty first)")
    for name, pick in (("median", statistics.median), ("best", max)):
        empty = pick(run.recorded_rate for run in results["empty"])
        settled = pick(run.recorded_rate for run in results["settled"])
        change = (settled - empty) / empty * 100 if empty else 0.0
        verdict = "met" if change >= -10 else "MISSED"
        print(
            f"  {name} contacts/s: empty {empty:,.0f}, with {rows:,} rows {settled:,.0f} "
            f"({change:+.1f} %); goal within 10 %: {verdict}"
        )


async def create_capped_campaign(
    url: str, name: str, contacts: int, first_number: int, calls_per_second: float | None
) -> None:
    """A running campaign of batch size 100 with its own cap (None: only the account's)."""
    connection = await asyncpg.connect(url)
    try:
        campaign_id: int = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, calls_per_second) '
            "VALUES ($1, 'running', '+14155550100', 'http://127.0.0.1:9/answer.xml', $2) "
            "RETURNING id",
            name,
            calls_per_second,
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination) "
            "SELECT $1, '+1' || (($2::bigint) + g)::text, 'x' FROM generate_series(1, $3) AS g",
            campaign_id,
            first_number,
            contacts,
        )
    finally:
        await connection.close()


async def bench_share(arguments: argparse.Namespace) -> None:
    cps, seconds, cap = 10.0, arguments.share_s, arguments.share_cap
    # Sized so that every campaign has work for about `seconds`: the capped one takes its cap,
    # the other two halve what is left.
    capped = max(int(cap * seconds), 1)
    each = int((cps - cap) / 2 * seconds)
    campaigns = {"first": (each, 2_000_000_000, None), "second": (each, 3_000_000_000, None)}
    campaigns["capped"] = (capped, 4_000_000_000, cap)
    print(
        f"\n== 5. share: account CPS {cps:g}, campaigns first and second ({each} contacts each, "
        f"no cap) and capped ({capped} contacts, --calls-per-second {cap:g}), 2 worker "
        f"processes, ~{seconds} s ==",
        flush=True,
    )
    async with scratch_database(arguments.server_url) as url:
        for name, (contacts, first, limit) in campaigns.items():
            await create_capped_campaign(url, name, contacts, first, limit)
        async with running_simulator(UNLIMITED_CPS, 0.0, UNLIMITED_CPS) as base:
            environment = worker_environment(
                url, base, account_cps=cps, requests_per_window=300, concurrency=4
            )
            await run_workers(environment, 2, seconds * 4 + 60)
            ledger = await read_ledger(base)
    owner = {}
    for name, (contacts, first, _) in campaigns.items():
        for offset in range(1, contacts + 1):
            owner[f"+1{first + offset}"] = name
    per_second: dict[str, Counter[int]] = {name: Counter() for name in campaigns}
    for dial in ledger["dials"]:
        per_second[owner[dial["destination"]]][int(dial["dialled_at"])] += 1
    # Steady state: whole seconds while every campaign still had contacts left to dial.
    firsts = [min(counts) for counts in per_second.values() if counts]
    lasts = [max(counts) for counts in per_second.values() if counts]
    steady = range(max(firsts) + 1, min(lasts))
    print(f"  steady seconds: {len(steady)} (every campaign still dialling)")
    print("  | campaign | cap | calls | calls/s, mean | min-max per second | starved seconds |")
    print("  |---|---|---|---|---|---|")
    total: Counter[int] = Counter()
    for name, counts in per_second.items():
        series = [counts.get(second, 0) for second in steady]
        for second in steady:
            total[second] += counts.get(second, 0)
        limit = campaigns[name][2]
        # A capped campaign may rightly have empty seconds (one call every 1/cap s).
        starved = sum(1 for value in series if value == 0) if limit is None else "-"
        mean = statistics.fmean(series) if series else 0.0
        print(
            f"  | {name} | {'none' if limit is None else format(limit, 'g')} | "
            f"{sum(counts.values())} | {mean:.2f} | {min(series, default=0)}-"
            f"{max(series, default=0)} | {starved} |"
        )
    account = [total[second] for second in steady]
    destinations = Counter(dial["destination"] for dial in ledger["dials"])
    twice = sum(1 for count in destinations.values() if count > 1)
    print(
        f"  account: mean {statistics.fmean(account) if account else 0:.2f} calls/s in steady "
        f"state, most in one second {max(account, default=0)} (limit {cps:g}); "
        f"dialled twice: {twice}"
    )


async def main_async(arguments: argparse.Namespace) -> None:
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
    parser.add_argument("--contacts", type=int, default=100_000, help="throughput and scale runs")
    parser.add_argument("--batch-one-contacts", type=int, default=5_000)
    parser.add_argument(
        "--batch-size", type=int, action="append", help="throughput (default 1000, 100, 1)"
    )
    parser.add_argument(
        "--concurrency", type=int, action="append", help="throughput (default 4, 8, 16)"
    )
    parser.add_argument("--pacing-s", type=int, default=60)
    parser.add_argument("--latency-run-s", type=int, default=20)
    parser.add_argument(
        "--latency-concurrency", type=int, action="append", help="latency (default 2, 4, 8, 16)"
    )
    parser.add_argument("--scale-rows", type=int, default=10_000_000)
    parser.add_argument("--scale-concurrency", type=int, default=8)
    parser.add_argument("--scale-repeat", type=int, default=5)
    parser.add_argument("--share-s", type=int, default=60)
    parser.add_argument("--share-cap", type=float, default=0.2)
    arguments = parser.parse_args()
    arguments.concurrency = arguments.concurrency or [4, 8, 16]
    arguments.batch_size = arguments.batch_size or [1000, 100, 1]
    arguments.latency_concurrency = arguments.latency_concurrency or [2, 4, 8, 16]
    if urlsplit(arguments.server_url).hostname not in (None, "127.0.0.1", "localhost", "::1"):
        raise SystemExit("--server-url: this benchmark runs against a local server only")
    memory_gib = psutil.virtual_memory().total / 2**30
    print(
        f"machine: {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM; {platform.platform()}; "
        f"python {platform.python_version()}"
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}", flush=True)
    asyncio.run(main_async(arguments))


if __name__ == "__main__":
    main()
