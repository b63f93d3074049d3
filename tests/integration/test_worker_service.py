"""The worker as a long-running service: the global API request limit, and lost connections."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import aiohttp
import asyncpg
from plivo_fixtures import client_config, simulator_config
from worker_fixtures import make_campaign, numbers, worker_config

from campaign.plivo import PlivoClient
from campaign.simulator import RunningSimulator, running_simulator
from campaign.worker import Worker, WorkerReport

KILL_ROUNDS = 6
KILL_OTHER_BACKENDS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
)


def bare(destination: str) -> str:
    """A number without its `+`, to compare the ledger's destinations with the contacts'."""
    return destination.lstrip("+")


def dialled(plivo: RunningSimulator) -> Counter[str]:
    """How many times the simulator dialled each destination (bare numbers)."""
    return Counter(bare(call.destination) for call in plivo.ledger.dials)


def busiest_window(times: Sequence[float], window_s: float) -> int:
    """The most requests in any half-open window [t, t + window_s) starting at a request.

    A window holding the most requests can always be slid right until it starts at one of them,
    so checking the windows that start at each request covers every window, aligned or not.
    """
    ordered = sorted(times)
    most = 0
    end = 0
    for start, at in enumerate(ordered):
        end = max(end, start)
        while end < len(ordered) and ordered[end] < at + window_s:
            end += 1
        most = max(most, end - start)
    return most


def test_busiest_window_slides() -> None:
    """The window check counts unaligned windows: 0.1, 0.9, 1.0 and 1.1 hold 3 in one 1 s window
    (0.1-1.1 or 0.9-1.9), where aligned windows (0-1, 1-2) would see only 2."""
    assert busiest_window([0.1, 0.9, 1.0, 1.1, 2.5], 1.0) == 3
    assert busiest_window([0.0, 0.95, 1.05, 1.9], 0.5) == 2
    assert busiest_window([0.0, 1.0, 2.0], 1.0) == 1  # half-open, as the simulator counts
    assert busiest_window([], 1.0) == 0


async def test_api_request_limit_is_global_and_respected(pool: asyncpg.Pool) -> None:
    """Two workers (2 dispatchers each) under a limit of 10 requests per 1 s: no sliding 1 s
    window of the simulator's ledger holds more than 10 Make-a-call requests, Plivo never
    answers 429, and every contact is fired, dialled exactly once."""
    per_window, window_s = 10, 1.0
    destinations = numbers(28)
    await make_campaign(pool, destinations, batch_size=1)
    config = simulator_config(requests_per_window=per_window, request_window_s=window_s)
    async with running_simulator(config) as plivo, aiohttp.ClientSession() as session:
        client = PlivoClient(session, client_config(plivo.base_url))
        workers = [
            Worker(
                pool,
                client,
                worker_config(
                    worker_id=f"limited-{index}",
                    api_requests_per_window=per_window,
                    api_window_s=window_s,
                ),
            )
            for index in range(2)
        ]
        reports = await asyncio.wait_for(
            asyncio.gather(*(worker.run(drain=True) for worker in workers)), timeout=20
        )
        requests = plivo.ledger.make_call_requests()
        dial_counts = dialled(plivo)
    assert busiest_window([r.received_at for r in requests], window_s) <= per_window
    assert [r.sequence for r in requests if r.http_status == 429] == []
    assert len(requests) == len(destinations)  # one request per contact, none sent again
    assert all(report.batches > 0 for report in reports), "both workers should have dialled"
    assert dial_counts == {bare(d): 1 for d in destinations}
    rows = await pool.fetch("SELECT status, attempts FROM contacts")
    assert {(r["status"], r["attempts"]) for r in rows} == {("fired", 1)}


async def _kill_connections(
    database_url: str, worker: asyncio.Task[WorkerReport]
) -> list[tuple[int, int]]:
    """Every 0.25 s while the worker runs (KILL_ROUNDS times), cut the worker's connections from
    a connection of the test's own: lock dial_requests until a statement of the worker waits
    on it (so that the kill lands on a statement in flight, not only on idle connections), then
    terminate every other backend of the database. Returns (statements waiting, backends
    killed) for each round."""
    rounds: list[tuple[int, int]] = []
    connection = await asyncpg.connect(database_url)
    try:
        await asyncio.sleep(0.3)
        while not worker.done() and len(rounds) < KILL_ROUNDS:
            async with connection.transaction():
                await connection.execute("LOCK TABLE dial_requests IN EXCLUSIVE MODE")
                waiting = 0
                for _ in range(40):
                    waiting = await connection.fetchval(WAITING_ON_A_LOCK)
                    if waiting:
                        break
                    await asyncio.sleep(0.01)
                results = await connection.fetch(KILL_OTHER_BACKENDS)
            rounds.append((waiting, sum(1 for row in results if row[0])))
            await asyncio.sleep(0.25)
    finally:
        await connection.close()
    return rounds


async def test_lost_database_connections_lose_no_work(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The worker pool's server connections killed 3 to 6 times mid-run, statements in flight too:
    the worker drains and exits normally, every contact ends fired or unknown, nobody is
    dialled twice, the fired contacts are exactly the dialled ones (each once; no reply Plivo
    gave is lost), and most contacts are fired."""
    destinations = numbers(600)
    campaign_id = await make_campaign(pool, destinations, batch_size=10)
    async with (
        running_simulator(simulator_config(latency_s=0.2)) as plivo,
        aiohttp.ClientSession() as session,
    ):
        client = PlivoClient(session, client_config(plivo.base_url))
        worker = Worker(pool, client, worker_config(concurrency=4, lease_s=2.0))
        run = asyncio.create_task(worker.run(drain=True))
        killer = asyncio.create_task(_kill_connections(database_url, run))
        report = await asyncio.wait_for(run, timeout=30)
        killed = await killer
        dial_counts = dialled(plivo)

    # The test did what it says: it killed the worker's connections while the worker ran.
    assert len(killed) >= 3, f"the worker finished after only {len(killed)} kills"
    assert all(waiting > 0 and count > 0 for waiting, count in killed), killed

    rows = await pool.fetch(
        "SELECT destination, status FROM contacts WHERE campaign_id = $1", campaign_id
    )
    status = {row["destination"]: row["status"] for row in rows}
    left = {d: s for d, s in status.items() if s not in ("fired", "unknown")}
    assert left == {}, f"contacts not fired or unknown: {left}"
    assert max(dial_counts.values()) == 1, "a destination was dialled twice"
    fired = {bare(d) for d, s in status.items() if s == "fired"}
    assert fired - set(dial_counts) == set(), "fired but never dialled"
    # A claim whose reply was lost may leave contacts unknown (never sent); a Plivo reply the
    # worker received must be recorded, through lost connections, so none dialled is unknown.
    assert set(dial_counts) - fired == set(), "dialled, but the reply was not recorded"
    assert len(fired) > len(destinations) // 2, f"only {len(fired)} of {len(destinations)} fired"
    assert report.outcomes["fired"] == len(fired)
