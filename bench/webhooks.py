"""Benchmark webhooks: dialing beside a receiver that hangs or refuses, and a backlog's delivery.

    .venv/bin/python bench/webhooks.py                    # both
    .venv/bin/python bench/webhooks.py --only dialing --contacts 20000 --repeat 3
    .venv/bin/python bench/webhooks.py --only backlog --events 20000

Each run is self-contained: a fresh database on the local PostgreSQL server (--server-url),
migrated, dropped at the end. Talks to nothing but 127.0.0.1.

1. dialing  `campaign worker --drain` (its deliverer inside, as in production) drains a campaign
            through `campaign simulator` (no rate limit, no callbacks) whose events go to: no
            endpoint; an endpoint that accepts connections and never answers; an endpoint whose
            port refuses connections. The dialing rate is contacts over the span from the first
            write-ahead to the last reply recorded (database clock). Goal: the hanging and the
            refusing endpoints within 5 % of none.
            "written, not sent": the events written, to a disabled endpoint (the triggers' cost).
2. backlog  N events already in the outbox (N contacts inserted `cancelled` in one statement),
            delivered by one in-process deliverer to a receiver in its own process on loopback
            (aiohttp, 204 to everything): events/s from start until every one is delivered.
            Then the same beside a second endpoint that hangs with a backlog of its own: the
            first endpoint's rate. Goal: >= 1,000 events/s, and the hanging one holding back
            nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import uvloop
import worker as worker_bench  # bench/worker.py (bench scripts run as `python bench/<name>.py`)

from campaign import db
from campaign.config import Settings
from campaign.webhooks.delivery import Deliverer, DelivererConfig, new_webhook_session

RECEIVER = """
import sys
from aiohttp import web
async def hook(request):
    await request.read()
    return web.Response(status=204)
app = web.Application()
app.router.add_post("/hooks", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


@contextlib.asynccontextmanager
async def receiver_process() -> AsyncIterator[str]:
    """A receiver answering 204 in its own process; its URL."""
    port = worker_bench.free_port()
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", RECEIVER, str(port))
    url = f"http://127.0.0.1:{port}/hooks"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.post(url, data=b"{}") as reply:
                        if reply.status == 204:
                            break
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await process.wait()


@contextlib.asynccontextmanager
async def hanging_endpoint() -> AsyncIterator[str]:
    """A port that accepts connections and never answers; its URL."""
    release = asyncio.Event()

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        release.set()
        server.close()


async def point_at(url: str, campaign_id: int, webhook_url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "UPDATE campaigns SET webhook_endpoint_id = webhook_endpoint_for($2) WHERE id = $1",
            campaign_id,
            webhook_url,
        )
    finally:
        await connection.close()


async def dialing_rate(
    server_url: str,
    contacts: int,
    endpoint: str | None,
    *,
    disabled: bool = False,
    account_cps: float = 0,
) -> tuple[float, int]:
    """One drained campaign with its events going to `endpoint` (`disabled`: written, never
    sent): contacts/s, events written."""
    async with worker_bench.scratch_database(server_url) as url:
        campaign_id = await worker_bench.create_campaign(url, contacts, 100, 2_000_000_000)
        if endpoint is not None:
            await point_at(url, campaign_id, endpoint)
        if disabled:
            connection = await asyncpg.connect(url)
            try:
                await connection.execute("UPDATE webhook_endpoints SET disabled_at = now()")
            finally:
                await connection.close()
        async with worker_bench.running_simulator(
            worker_bench.UNLIMITED_CPS, 0.0, worker_bench.UNLIMITED_CPS
        ) as base:
            environment = worker_bench.worker_environment(
                url, base, account_cps=account_cps, requests_per_window=0, concurrency=4
            )
            environment["CAMPAIGN_WEBHOOK_ALLOW_PRIVATE"] = "1"
            environment["CAMPAIGN_WEBHOOK_TIMEOUT_S"] = "5"
            await worker_bench.run_workers(environment, 1, 900)
        connection = await asyncpg.connect(url)
        try:
            span_s = await connection.fetchval(
                "SELECT extract(epoch FROM max(replied_at) - min(sent_at))::float8"
                " FROM dial_requests WHERE campaign_id = $1",
                campaign_id,
            )
            events = await connection.fetchval("SELECT count(*) FROM webhook_deliveries")
        finally:
            await connection.close()
    return contacts / span_s, events


async def bench_dialing(arguments: argparse.Namespace) -> None:
    kinds = ("none", "written, not sent", "hanging", "refusing")
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    events: dict[str, int] = {}
    refusing = f"http://127.0.0.1:{worker_bench.free_port()}/hooks"
    for _ in range(arguments.repeat):
        for kind in rates:  # interleaved, so that drift of the machine hits each alike
            async with hanging_endpoint() as hanging:
                endpoint = None if kind == "none" else refusing if kind == "refusing" else hanging
                rate, written = await dialing_rate(
                    arguments.server_url,
                    arguments.contacts,
                    endpoint,
                    disabled=kind == "written, not sent",
                    account_cps=arguments.account_cps,
                )
            rates[kind].append(rate)
            events[kind] = written
    limit = f"account CPS {arguments.account_cps:g}" if arguments.account_cps else "no rate limit"
    print(
        f"\ndialing rate, {arguments.contacts:,} contacts, {limit}, batch 100, concurrency 4"
        " (contacts/s)"
    )
    print("| endpoint | events written | median | runs | vs none |")
    print("|---|---|---|---|---|")
    base = statistics.median(rates["none"])
    for kind, values in rates.items():
        median = statistics.median(values)
        runs = ", ".join(f"{value:,.0f}" for value in values)
        change = 100 * (median / base - 1)
        print(f"| {kind} | {events[kind]:,} | {median:,.0f} | {runs} | {change:+.1f} % |")


async def backlog(url: str, campaign_name: str, webhook_url: str, events: int, first: int) -> int:
    """A campaign whose `events` contacts are inserted `cancelled` (one event each)."""
    connection = await asyncpg.connect(url)
    try:
        campaign_id: int = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, webhook_endpoint_id) '
            "VALUES ($1, 'draft', '+14155550100', 'http://127.0.0.1:9/a', "
            "webhook_endpoint_for($2)) RETURNING id",
            campaign_name,
            webhook_url,
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, status) "
            "SELECT $1, '+1' || ($2::bigint + g)::text, '+1' || ($2::bigint + g)::text, "
            "'cancelled' FROM generate_series(1, $3) AS g",
            campaign_id,
            first,
            events,
        )
        await connection.execute("ANALYZE webhook_deliveries")
    finally:
        await connection.close()
    return campaign_id


async def delivery_rate(server_url: str, events: int, *, beside_hanging: int) -> float:
    """Events/s delivered from a backlog of `events` to a local receiver, with a hanging
    endpoint's backlog of `beside_hanging` events beside it (0: none)."""
    async with (
        worker_bench.scratch_database(server_url) as url,
        receiver_process() as receiving,
        hanging_endpoint() as hanging,
    ):
        campaign_id = await backlog(url, "fast", receiving, events, 2_000_000_000)
        if beside_hanging:
            await backlog(url, "hangs", hanging, beside_hanging, 3_000_000_000)
        config = DelivererConfig(
            worker_id="bench", retry_delays_s=(0.0, 60.0), allow_private=True, timeout_s=5.0,
            poll_interval_s=0.05, batch_size=100,
        )  # fmt: skip
        async with (
            db.open_webhook_pool(Settings(database_url=url)) as pool,
            new_webhook_session(config) as session,
        ):
            deliverer = Deliverer(pool, session, config)
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(deliverer.run(stop))
            while await pool.fetchval(  # noqa: ASYNC110  # polling the database, not an event
                "SELECT count(*) FROM webhook_deliveries"
                " WHERE campaign_id = $1 AND status <> 'delivered'",
                campaign_id,
            ):
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return events / elapsed


async def bench_backlog(arguments: argparse.Namespace) -> None:
    print(f"\nbacklog delivery, {arguments.events:,} events, one deliverer, batch 100 (events/s)")
    print("| beside it | median | runs |")
    print("|---|---|---|")
    for beside in (0, arguments.events // 4):
        values = [
            await delivery_rate(arguments.server_url, arguments.events, beside_hanging=beside)
            for _ in range(arguments.repeat)
        ]
        label = f"a hanging endpoint with {beside:,} events" if beside else "nothing"
        runs = ", ".join(f"{value:,.0f}" for value in values)
        print(f"| {label} | {statistics.median(values):,.0f} | {runs} |")


async def main_async(arguments: argparse.Namespace) -> None:
    if arguments.only in (None, "dialing"):
        await bench_dialing(arguments)
    if arguments.only in (None, "backlog"):
        await bench_backlog(arguments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--only", choices=("dialing", "backlog"))
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--account-cps", type=float, default=0, help="0: no rate limit")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    # uvloop, as the commands run.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main_async(arguments))


if __name__ == "__main__":
    main()
