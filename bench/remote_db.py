"""Benchmark pacing when the workers are far from Postgres (issue 15), against the simulator.

    .venv/bin/python bench/remote_db.py                      # CPS 100; one-way 0, 10, 25, 50 ms
    .venv/bin/python bench/remote_db.py --cps 10 --cps 100 --cps 500 --latencies direct,0,10,25,50

Each run (one account CPS, one one-way latency L) is self-contained: a fresh, migrated database
on the local server (dropped afterwards); `campaign simulator` in its own process with 40 ms
added to every request, no CPS limit of its own (nothing is queued) and no callbacks; a running
campaign of CPS x --seconds contacts; then --workers `campaign worker --drain` processes started
at once, each connected to Postgres through its own latency-injecting TCP proxy. The proxies run
in this process, which does nothing else while the workers run. A proxy holds every chunk it
reads, in each direction, for L +- 20 % (drawn uniformly per chunk), and never delivers a chunk
before the one read ahead of it in the same direction, so the bytes of a connection stay in
order. Its timers are asyncio's (millisecond granularity): a chunk arrives about 0.5-1 ms later
than drawn, which is why each run first measures the round trip it really gets (`SELECT 1` on
one connection, and through a one-connection pool: asyncpg's pool resets a connection with a
second round trip before handing it back). "direct" connects the workers straight to Postgres:
compared with L = 0 it shows the proxy's own cost.

Read afterwards: the simulator's ledger (calls per whole second of ITS clock, as Plivo would
count them; dials per destination) and the database (requests written ahead, requests given
back unsent, when each worker wrote its first request, when the last contact was first claimed).

Steady state: the whole seconds of the simulator's clock strictly after the first second with a
dial and after the second in which the last of the worker processes had written its first
request --warm-up-s (2) seconds earlier (start-up: Python, then the pool's connections opened
one by one through the proxy as the dispatchers need them), and strictly before the last
second with a dial and before the second in which the last contact never claimed before was
claimed (from then on the workers may find nothing pending, and wait their poll interval: the
tail). The simulator and the database run on this host's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import resource
import shlex
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

# bench/worker.py, beside this file (scripts in bench/ are run as `python bench/<name>.py`).
import worker as worker_bench

SIMULATOR_LATENCY_S = 0.04
FIRST_NUMBER = 2_000_000_000
# The real account's default request limit, as a user's workers would have it; it is far from
# binding here (a batch carries a tenth of a second of calls: ten requests a second).
REQUESTS_PER_WINDOW = 300


# --- the latency-injecting proxy ------------------------------------------------------------------


class _Direction:
    """Bytes one way through a proxied connection: each chunk is delivered its delay after it
    was read, and never before the chunk read ahead of it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, delay_s: Callable[[], float], tally: Counter[str]
    ) -> None:
        self._loop = loop
        self._delay_s = delay_s
        self._tally = tally
        # None: the sending side closed; close the receiving side once what is ahead is out.
        self._pending: deque[bytes | None] = deque()
        self._last_due = 0.0
        self.target: asyncio.Transport | None = None

    def push(self, data: bytes | None) -> None:
        due = max(self._loop.time() + self._delay_s(), self._last_due)
        self._last_due = due
        self._pending.append(data)
        self._tally["chunks"] += 1
        # Each timer delivers the oldest chunk, not "its own": timers due at the same instant
        # may run in any order, and the order of the bytes must not depend on it.
        self._loop.call_at(due, self._deliver)

    def _deliver(self) -> None:
        data = self._pending.popleft()
        target = self.target
        if target is None or target.is_closing():
            return
        if data is None:
            target.close()  # after what it has buffered
        else:
            target.write(data)


class _Side(asyncio.Protocol):
    """One end of a proxied connection: what it reads leaves through `outgoing`; what
    `incoming` delivers is written to it."""

    def __init__(self, outgoing: _Direction, incoming: _Direction, proxy: LatencyProxy) -> None:
        self.outgoing = outgoing
        self.incoming = incoming
        self._proxy = proxy
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.incoming.target = transport
        self._proxy.transports.add(transport)

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self._proxy.transports.discard(self.transport)
        self.outgoing.push(None)


class _ClientSide(_Side):
    """The worker's end: reads nothing until the proxy's own connection to Postgres is up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self._proxy.connect_upstream(self)


class LatencyProxy:
    """A TCP proxy on a free loopback port that delays each direction by `one_way_s` +- jitter.

    No flow control: a worker's statements and their replies are a few kilobytes at most.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, one_way_s: float, jitter: float, seed: str
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._one_way_s = one_way_s
        self._jitter = jitter
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self.transports: set[asyncio.Transport] = set()
        self.tally: Counter[str] = Counter()
        self.port = 0

    def _delay_s(self) -> float:
        return self._one_way_s * self._random.uniform(1 - self._jitter, 1 + self._jitter)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def _accept(self) -> _ClientSide:
        loop = asyncio.get_running_loop()
        to_server = _Direction(loop, self._delay_s, self.tally)
        to_client = _Direction(loop, self._delay_s, self.tally)
        self.tally["connections"] += 1
        return _ClientSide(to_server, to_client, self)

    def connect_upstream(self, client: _ClientSide) -> None:
        task = asyncio.get_running_loop().create_task(self._connect(client))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, client: _ClientSide) -> None:
        loop = asyncio.get_running_loop()
        assert client.transport is not None
        try:
            # Postgres's end: what it reads goes to the worker, what the worker sent comes in.
            await loop.create_connection(
                lambda: _Side(client.incoming, client.outgoing, self), *self._upstream
            )
        except OSError:
            client.transport.close()
            return
        client.transport.resume_reading()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self.transports):
            transport.abort()
        for task in list(self._connecting):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()


def through(url: str, port: int) -> str:
    """`url` with its host and port replaced by the proxy's on 127.0.0.1."""
    parts = urlsplit(url)
    userinfo, at, _host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))


async def probe_round_trips(url: str, samples: int) -> tuple[float, float]:
    """Median milliseconds of `SELECT 1` on one connection, and through a pool (as a worker's
    statements go: asyncpg resets a connection when it goes back to the pool)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.fetchval("SELECT 1")  # prepared once, as the workers' statements are
        single = []
        for _ in range(samples):
            started = time.perf_counter()
            await connection.fetchval("SELECT 1")
            single.append(time.perf_counter() - started)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await pool.fetchval("SELECT 1")
        pooled = []
        for _ in range(samples):
            started = time.perf_counter()
            await pool.fetchval("SELECT 1")
            pooled.append(time.perf_counter() - started)
    finally:
        await pool.close()
    return statistics.median(single) * 1000, statistics.median(pooled) * 1000


# --- one run --------------------------------------------------------------------------------------


@dataclass(slots=True)
class RemoteRun:
    """What one drained run did, from the simulator's ledger, the database and this process."""

    cps: float
    # None: the workers connected straight to Postgres.
    one_way_ms: float | None
    workers: int
    contacts: int
    calls_per_second: dict[int, int] = field(default_factory=dict)
    dials: int = 0
    dialled_twice: int = 0
    queued: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    given_back: int = 0
    # Per worker process: when (epoch seconds, database clock) it wrote its first request.
    first_request_s: list[float] = field(default_factory=list)
    # When the last contact was written ahead for the first time (nothing fresh was left).
    last_fresh_claim_s: float | None = None
    warm_up_s: float = 2.0
    drain_s: float = 0.0
    proxy_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0
    proxied_chunks: int = 0
    round_trip_ms: float = 0.0
    pool_statement_ms: float = 0.0

    @property
    def round_trips(self) -> str:
        def milliseconds(value: float) -> str:
            return f"{value:.2f}" if value < 10 else f"{value:.1f}"

        return f"{milliseconds(self.round_trip_ms)} / {milliseconds(self.pool_statement_ms)} ms"

    @property
    def label(self) -> str:
        return "direct" if self.one_way_ms is None else f"{self.one_way_ms:g} ms"

    def steady_range(self) -> range:
        """The seconds of the steady state (see the module docstring)."""
        if not self.calls_per_second:
            return range(0)
        first, last = min(self.calls_per_second), max(self.calls_per_second)
        start, end = first + 1, last
        if self.first_request_s:
            start = max(start, math.floor(max(self.first_request_s) + self.warm_up_s) + 1)
        if self.last_fresh_claim_s is not None:
            end = min(end, math.floor(self.last_fresh_claim_s))
        return range(start, end)

    def steady(self) -> list[int]:
        return [self.calls_per_second.get(second, 0) for second in self.steady_range()]

    @property
    def steady_mean(self) -> float:
        counts = self.steady()
        return statistics.fmean(counts) if counts else 0.0

    @property
    def most_in_a_second(self) -> int:
        return max(self.calls_per_second.values(), default=0)

    @property
    def seconds_over(self) -> int:
        return sum(1 for count in self.calls_per_second.values() if count > self.cps)

    @property
    def goal_met(self) -> bool:
        """Issue 15's goal, at any CPS: >= 98 % of it in steady state, never over, none twice."""
        return (
            self.steady_mean >= 0.98 * self.cps
            and self.seconds_over == 0
            and self.dialled_twice == 0
            and self.dials == self.contacts
        )


async def remote_run(
    arguments: argparse.Namespace, cps: float, one_way_ms: float | None, index: int
) -> RemoteRun:
    """Load a campaign into a fresh database and drain it through proxied workers; measure."""
    contacts = arguments.contacts or round(cps * arguments.seconds)
    run = RemoteRun(cps, one_way_ms, arguments.workers, contacts, warm_up_s=arguments.warm_up_s)
    server = urlsplit(arguments.server_url)
    upstream = (server.hostname or "127.0.0.1", server.port or 5432)

    def new_proxy(name: str) -> LatencyProxy:
        one_way_s = (one_way_ms or 0.0) / 1000
        seed = f"{arguments.seed}:{cps:g}:{index}:{name}"
        return LatencyProxy(*upstream, one_way_s, arguments.jitter, seed)

    async with worker_bench.scratch_database(arguments.server_url) as url:
        campaign_id = await worker_bench.create_campaign(
            url, contacts, arguments.batch_size, FIRST_NUMBER
        )
        proxies: list[LatencyProxy] = []
        try:
            if one_way_ms is None:
                worker_urls = [url] * arguments.workers
                run.round_trip_ms, run.pool_statement_ms = await probe_round_trips(
                    url, arguments.probe_samples
                )
            else:
                probe = new_proxy("probe")
                try:
                    probe_url = through(url, await probe.start())
                    run.round_trip_ms, run.pool_statement_ms = await probe_round_trips(
                        probe_url, arguments.probe_samples
                    )
                finally:
                    await probe.close()
                proxies = [new_proxy(f"worker-{n}") for n in range(arguments.workers)]
                worker_urls = [through(url, await proxy.start()) for proxy in proxies]
            async with worker_bench.running_simulator(
                worker_bench.UNLIMITED_CPS,
                arguments.simulator_latency_s,
                worker_bench.UNLIMITED_CPS,
            ) as base_url:
                environments = [
                    worker_bench.worker_environment(
                        worker_url,
                        base_url,
                        account_cps=cps,
                        requests_per_window=REQUESTS_PER_WINDOW,
                        concurrency=arguments.concurrency,
                    )
                    for worker_url in worker_urls
                ]
                own_before = resource.getrusage(resource.RUSAGE_SELF)
                children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                run.drain_s, _outputs = await worker_bench.run_worker_processes(
                    environments, timeout_s=contacts / cps * 4 + 60
                )
                own_after = resource.getrusage(resource.RUSAGE_SELF)
                children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                ledger = await worker_bench.read_ledger(base_url)
        finally:
            for proxy in proxies:
                await proxy.close()
        run.proxy_cpu_s = cpu_s(own_after) - cpu_s(own_before)
        run.workers_cpu_s = cpu_s(children_after) - cpu_s(children_before)
        run.proxied_chunks = sum(proxy.tally["chunks"] for proxy in proxies)
        await read_database(url, campaign_id, run)
    read_ledger_into(ledger, run)
    return run


def cpu_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


async def read_database(url: str, campaign_id: int, run: RemoteRun) -> None:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM contacts WHERE campaign_id = $1 GROUP BY status",
            campaign_id,
        )
        run.statuses = Counter({row["status"]: row["n"] for row in rows})
        requests = await connection.fetchrow(
            "SELECT count(*) AS requests, "
            "       count(*) FILTER (WHERE outcome = 'not_sent') AS given_back "
            "FROM dial_requests WHERE campaign_id = $1",
            campaign_id,
        )
        assert requests is not None  # an aggregate without GROUP BY always returns a row
        run.requests, run.given_back = requests["requests"], requests["given_back"]
        # The write-ahead time of each worker's first request that went out.
        firsts = await connection.fetch(
            "SELECT extract(epoch FROM min(sent_at))::float8 AS first_s FROM dial_requests "
            "WHERE campaign_id = $1 AND outcome IN ('fired', 'queued') GROUP BY worker_id",
            campaign_id,
        )
        run.first_request_s = [row["first_s"] for row in firsts]
        run.last_fresh_claim_s = await connection.fetchval(
            "SELECT extract(epoch FROM max(first_at))::float8 FROM ("
            "    SELECT min(r.sent_at) AS first_at"
            "    FROM dial_requests r, unnest(r.destinations) AS d"
            "    WHERE r.campaign_id = $1 GROUP BY d"
            ") AS firsts",
            campaign_id,
        )
    finally:
        await connection.close()


def read_ledger_into(ledger: dict[str, Any], run: RemoteRun) -> None:
    dials = ledger["dials"]
    run.dials = len(dials)
    run.dialled_twice = sum(
        1 for count in Counter(d["destination"] for d in dials).values() if count > 1
    )
    run.queued = sum(1 for d in dials if d["queued"])
    run.calls_per_second = {int(k): v for k, v in ledger["calls_per_second"].items()}


# --- printing -------------------------------------------------------------------------------------


def print_run(run: RemoteRun) -> None:
    steady = run.steady_range()
    print(
        f"  one-way {run.label}: round trip of SELECT 1 / of a pooled statement "
        f"{run.round_trips}; drain {run.drain_s:.1f} s",
        flush=True,
    )
    print("    calls per second of the simulator's clock, in order ([ ] = steady state):")
    seconds = sorted(run.calls_per_second)
    cells = []
    for second in range(seconds[0], seconds[-1] + 1) if seconds else []:
        count = run.calls_per_second.get(second, 0)
        cells.append(f"[{count:>3}]" if second in steady else f" {count:>3} ")
    for start in range(0, len(cells), 15):
        print("     " + "".join(cells[start : start + 15]))
    counts = run.steady()
    core_share = run.proxy_cpu_s / run.drain_s * 100 if run.drain_s else 0.0
    print(
        f"    steady {len(counts)} s: mean {run.steady_mean:.1f}, min {min(counts, default=0)}, "
        f"max {max(counts, default=0)}; most in one second {run.most_in_a_second}; seconds over "
        f"{run.cps:g}: {run.seconds_over}; dialled twice {run.dialled_twice}; dialled "
        f"{run.dials:,} / {run.contacts:,} contacts ({dict(run.statuses)}); queued at Plivo "
        f"{run.queued}",
        flush=True,
    )
    print(
        f"    requests {run.requests:,}, given back unsent {run.given_back}; proxy CPU "
        f"{run.proxy_cpu_s:.2f} s ({core_share:.1f} % of a core, {run.proxied_chunks:,} chunks); "
        f"workers' CPU {run.workers_cpu_s:.1f} s",
        flush=True,
    )


def print_table(runs: Sequence[RemoteRun]) -> None:
    """The runs of one CPS as a Markdown table, ready for docs/benchmarks.md."""
    cps = runs[0].cps
    print(f"\n  {runs[0].workers} workers, account CPS {cps:g}, {runs[0].contacts:,} contacts:\n")
    print(
        "| one-way latency to Postgres | round trip: `SELECT 1` / pooled statement "
        "| calls/s, steady state | min-max in steady state (seconds) | most calls in one second "
        f"| seconds over {cps:g} | dialled twice | dialled / contacts | requests given back "
        "| proxy CPU | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        counts = run.steady()
        core_share = run.proxy_cpu_s / run.drain_s * 100 if run.drain_s else 0.0
        over = f"**{run.seconds_over}**" if run.seconds_over else "0"
        print(
            f"| {run.label} | {run.round_trips} "
            f"| {run.steady_mean:.1f} | {min(counts, default=0)}-{max(counts, default=0)} "
            f"({len(counts)}) | {run.most_in_a_second} | {over} | {run.dialled_twice} "
            f"| {run.dials:,} / {run.contacts:,} | {run.given_back} of {run.requests:,} "
            f"| {core_share:.1f} % | {'met' if run.goal_met else 'missed'} |"
        )
    print(
        f"\n  goal (issue 15, at CPS {cps:g}): >= {0.98 * cps:g} calls/s in steady state, no "
        f"second over {cps:g}, none dialled twice, every contact dialled.",
        flush=True,
    )


# --- the command ----------------------------------------------------------------------------------


def parse_latencies(text: str) -> list[float | None]:
    latencies: list[float | None] = []
    for item in text.split(","):
        item = item.strip()
        if item == "direct":
            latencies.append(None)
            continue
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a latency: give milliseconds or 'direct', e.g. direct,0,10,25"
            ) from None
        if not 0 <= value <= 10_000:
            raise argparse.ArgumentTypeError(f"{item}: a one-way latency is 0 to 10000 ms")
        latencies.append(value)
    return latencies


async def main_async(arguments: argparse.Namespace) -> None:
    for cps in arguments.cps:
        contacts = arguments.contacts or round(cps * arguments.seconds)
        print(
            f"\n== account CPS {cps:g}: {arguments.workers} worker processes (concurrency "
            f"{arguments.concurrency}), {contacts:,} contacts at batch size {arguments.batch_size}"
            f", simulator --latency-s {arguments.simulator_latency_s:g} ==",
            flush=True,
        )
        runs = []
        for index, one_way_ms in enumerate(arguments.latencies):
            run = await remote_run(arguments, cps, one_way_ms, index)
            print_run(run)
            runs.append(run)
        print_table(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("CAMPAIGN_BENCH_DATABASE_URL")
        or os.environ.get("CAMPAIGN_BENCH_SERVER_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="the PostgreSQL server the bench creates its databases on "
        "(default: $CAMPAIGN_BENCH_DATABASE_URL, $CAMPAIGN_BENCH_SERVER_URL, 127.0.0.1:5432)",
    )
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument(
        "--cps", type=float, action="append", help="account CPS, repeatable (default 100)"
    )
    parser.add_argument(
        "--latencies",
        type=parse_latencies,
        default=parse_latencies("0,10,25,50"),
        help="one-way latencies to Postgres in ms, comma-separated; 'direct' = no proxy "
        "(default 0,10,25,50)",
    )
    parser.add_argument("--contacts", type=int, help="contacts per run (default CPS x --seconds)")
    parser.add_argument(
        "--seconds",
        "--contacts-per-cps",
        dest="seconds",
        type=float,
        default=30.0,
        help="contacts per unit of CPS, i.e. the seconds a run lasts at full pace (default 30)",
    )
    parser.add_argument(
        "--warm-up-s",
        type=float,
        default=2.0,
        help="after the last worker's first request, not yet steady state (default 2)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="CAMPAIGN_WORKER_CONCURRENCY")
    parser.add_argument("--batch-size", type=int, default=100, help="the campaign's batch size")
    parser.add_argument("--jitter", type=float, default=0.2, help="of the one-way latency (0.2)")
    parser.add_argument("--simulator-latency-s", type=float, default=SIMULATOR_LATENCY_S)
    parser.add_argument("--probe-samples", type=int, default=20, help="SELECT 1 round trips")
    parser.add_argument("--seed", default="remote-db", help="of the proxies' jitter")
    arguments = parser.parse_args()
    arguments.cps = arguments.cps or [100.0]
    if urlsplit(arguments.server_url).hostname not in (None, "127.0.0.1", "localhost", "::1"):
        parser.error("--server-url: this benchmark runs against a local server only")
    if arguments.workers < 1 or any(cps <= 0 for cps in arguments.cps):
        parser.error("--workers and --cps must be positive")
    if not 0 <= arguments.jitter < 1:
        parser.error("--jitter: a share of the latency, from 0 to below 1 (e.g. 0.2)")
    memory_gib = psutil.virtual_memory().total / 2**30
    print(
        f"machine: {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM; {platform.platform()}; "
        f"python {platform.python_version()}; asyncpg {metadata.version('asyncpg')}, "
        f"aiohttp {metadata.version('aiohttp')}"
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}", flush=True)
    asyncio.run(main_async(arguments))


if __name__ == "__main__":
    main()
