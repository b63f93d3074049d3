"""Benchmark: answers per second one `campaign worker` process serves while it dials (issue 13).

    .venv/bin/python bench/answers.py                     # closed loop: 64 in flight, 30 s
    .venv/bin/python bench/answers.py --rate 2000         # open loop: 2,000 due per second
    .venv/bin/python bench/answers.py --seconds 60 --concurrency 128 --dial-cps 500

A fresh database on the local PostgreSQL (--server-url); a campaign `answered` whose content the
engine serves (a --message with {first_name} and {appointment}, --gather 1=confirmed,9=opt-out,
its answer_url the worker's public URL /plivo/answer?campaign=ID) with --contacts contacts
already called, each with its CSV fields (one in ten has markup, quotes and an ampersand in its
name); a campaign `dialled` the same worker dials meanwhile through `campaign simulator` (its own
process, no callbacks, no limit of its own) at --dial-cps; one `campaign worker` process with
CAMPAIGN_HTTP_PORT and CAMPAIGN_PUBLIC_URL set (signatures are checked against the public URL,
as behind a proxy).

This script then sends Plivo's answer request (a V3-signed form POST: To, From, CallUUID,
RequestUUID, Event=StartApp, CallStatus=in-progress, …) for random contacts of `answered` over
--concurrency keep-alive connections, for --warm-up-s (not counted) and then --seconds: closed
loop (each connection sends again as soon as it has its reply) or, with --rate, open loop (the
requests fall due at that rate whatever the replies do, as Plivo's come). It prints answers/s,
the latency of each answer (p50, p90, p99, max: to the reply's last byte read, from the
request's first byte written, or in open loop from when it fell due), HTTP errors, and how many
contacts of `dialled` were dialled meanwhile. One reply in --sample-every is kept and checked
afterwards: well-formed XML, its <GetDigits> posting to the engine's /plivo/digits, and the words
spoken those of the template filled with that contact's own fields (read from the database).

The requests are signed before the clock starts and sent over raw streams, not an HTTP client:
the generator shares this machine's two cores with what it measures, so it must cost as little
as possible (as bench/callbacks.py). Talks to nothing but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import asyncpg
import callbacks as callbacks_bench  # bench/callbacks.py, beside this file
import psutil
import uvloop
import worker as worker_bench  # bench/worker.py (bench scripts run as `python bench/<name>.py`)
from defusedxml import ElementTree

from campaign.signature import SIGNATURE_V3_HEADER, SIGNATURE_V3_NONCE_HEADER, compute_signature_v3

# The base URL Plivo would reach the engine at (behind a proxy): what the requests are signed
# for. They are sent to the worker's own port on 127.0.0.1.
PUBLIC_URL = "https://answers.bench.example"
MESSAGE = "Hello {first_name}, your appointment is on {appointment}."
GATHER = {"1": "confirmed", "9": "opt-out"}
FROM = "+14155550100"
ANSWERED_FIRST_NUMBER = 2_000_000_000
DIALLED_FIRST_NUMBER = 3_000_000_000


# --- the database ---------------------------------------------------------------------------------


async def prepare(url: str, contacts: int, dial_contacts: int) -> tuple[int, int]:
    """The two campaigns in the (fresh, migrated) database; (answered id, dialled id)."""
    connection = await asyncpg.connect(url)
    try:
        answered: int = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, message, voice, language, '
            "gather) VALUES ('answered', 'running', $1, 'pending', $2, 'WOMAN', 'en-US', "
            "$3::jsonb) RETURNING id",
            FROM,
            MESSAGE,
            '{"1": "confirmed", "9": "opt-out"}',
        )
        # As `campaign load --message` does (serve_campaign_answers).
        await connection.execute(
            "UPDATE campaigns SET answer_url = $2 || '/plivo/answer?campaign=' || id, "
            "answer_method = 'POST' WHERE id = $1",
            answered,
            PUBLIC_URL,
        )
        request_id = await connection.fetchval(
            "INSERT INTO dial_requests (campaign_id, worker_id, destinations, outcome) "
            "VALUES ($1, 'bench', '{}', 'fired') RETURNING id",
            answered,
        )
        # Called already (one request for all: the answers only read the contacts). One name in
        # ten carries markup, quotes, an ampersand and a non-ASCII letter: spoken, never obeyed.
        await connection.execute(
            """
            INSERT INTO contacts (campaign_id, destination, raw_destination, line_number, status,
                                  attempts, dial_request_id, request_uuid, fields)
            SELECT $1, '+1' || ($2::bigint + g), '+1' || ($2::bigint + g), g + 1, 'fired', 1, $3,
                   'req-' || g,
                   jsonb_build_object(
                       'phone', '+1' || ($2::bigint + g),
                       'first_name', CASE WHEN g % 10 = 0
                                          THEN '</Speak><Dial>+19005550000</Dial> Zoë & "O''Neil" '
                                               || g
                                          ELSE (ARRAY['Ann', 'Bob', 'Chen', 'Dana', 'Emeka',
                                                      'Fatima', 'Gus', 'Hiro'])[1 + g % 8]
                                               || ' ' || g END,
                       'last_name', 'Family ' || (g % 997),
                       'appointment', (1 + g % 28) || ' December at ' || (8 + g % 10) || ':'
                                      || lpad(((g % 4) * 15)::text, 2, '0'),
                       'clinic', 'Clinic ' || (g % 37))
            FROM generate_series(1, $4) AS g
            """,
            answered,
            ANSWERED_FIRST_NUMBER,
            request_id,
            contacts,
        )
        dialled: int = await connection.fetchval(
            'INSERT INTO campaigns (name, status, "from", answer_url, batch_size) VALUES '
            "('dialled', 'running', $1, 'https://example.com/answer.xml', 100) RETURNING id",
            FROM,
        )
        await connection.execute(
            "INSERT INTO contacts (campaign_id, destination, raw_destination, line_number) "
            "SELECT $1, '+1' || ($2::bigint + g), '+1' || ($2::bigint + g), g + 1 "
            "FROM generate_series(1, $3) AS g",
            dialled,
            DIALLED_FIRST_NUMBER,
            dial_contacts,
        )
        # As autovacuum would have by the time a real campaign runs: plans need statistics.
        await connection.execute("VACUUM ANALYZE contacts")
    finally:
        await connection.close()
    return answered, dialled


async def dialled_count(connection: asyncpg.Connection, campaign_id: int) -> int:
    """Contacts of the campaign whose call was placed (or queued at Plivo)."""
    count: int = await connection.fetchval(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND status IN ('fired', 'queued')",
        campaign_id,
    )
    return count


# --- the requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """One answer request as the bytes of an HTTP/1.1 keep-alive POST, and its contact."""

    destination: str
    data: bytes


def answer_requests(
    campaign_id: int, contacts: int, count: int, worker_address: str, seed: int
) -> list[Prepared]:
    """`count` answer requests for random contacts, each signed (a fresh nonce) as Plivo signs
    the request to the campaign's answer_url."""
    choose = random.Random(seed)
    path_qs = f"/plivo/answer?campaign={campaign_id}"
    signed_url = PUBLIC_URL + path_qs
    prepared = []
    for index in range(count):
        number = ANSWERED_FIRST_NUMBER + choose.randint(1, contacts)
        call_uuid = f"{choose.getrandbits(128):032x}"
        request_uuid = f"{choose.getrandbits(128):032x}"
        form = {
            "From": FROM.removeprefix("+"),
            "To": f"1{number}",
            "RequestUUID": request_uuid,
            "ALegRequestUUID": request_uuid,
            "CallUUID": call_uuid,
            "ALegUUID": call_uuid,
            "Direction": "outbound",
            "Event": "StartApp",
            "CallStatus": "in-progress",
        }
        nonce = f"{index:020d}"
        body = urlencode(form).encode()
        head = [
            f"POST {path_qs} HTTP/1.1",
            f"Host: {worker_address}",
            "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(body)}",
            f"{SIGNATURE_V3_NONCE_HEADER}: {nonce}",
            f"{SIGNATURE_V3_HEADER}: "
            + compute_signature_v3(worker_bench.AUTH_TOKEN, signed_url, nonce, form, "POST"),
        ]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        prepared.append(Prepared(f"+1{number}", data))
    return prepared


# --- the load -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Load:
    """What one timed run of the generator saw."""

    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    # Connections that failed (reset, closed mid-reply), each reopened.
    errors: Counter[str] = field(default_factory=Counter)
    # (destination, reply body) of one reply in `sample_every`.
    samples: list[tuple[str, bytes]] = field(default_factory=list)
    # Open loop: the requests that fell due (each answered, or counted in `errors`).
    due: int | None = None

    @property
    def answers(self) -> int:
        return len(self.latencies_s)


class Generator:
    """Sends the prepared requests in order (then again from the first) over keep-alive
    connections, one request in flight on each.

    Closed loop (no rate): each connection sends its next request as soon as its last reply is
    in, until the time is up; an answer's latency is from its first byte written. Open loop (a
    rate): requests are due at that rate whatever the replies do, as Plivo's arrive, and each
    goes out on the first connection free; its latency is from when it was due, so that the
    time it waited for a connection counts too.
    """

    def __init__(self, host: str, port: int, requests: list[Prepared], sample_every: int) -> None:
        self._host = host
        self._port = port
        self._requests = requests
        self._sample_every = sample_every
        self._next = 0

    async def run(self, seconds: float, connections: int, rate: float | None = None) -> Load:
        load = Load()
        started = time.perf_counter()
        deadline = started + seconds
        if rate is None:

            async def next_start() -> float | None:
                now = time.perf_counter()
                return now if now < deadline else None

            await asyncio.gather(*(self._connection(load, next_start) for _ in range(connections)))
        else:
            schedule: asyncio.Queue[float | None] = asyncio.Queue()
            senders = [
                asyncio.create_task(self._connection(load, schedule.get))
                for _ in range(connections)
            ]
            sent = 0
            while (now := time.perf_counter()) < deadline:
                while started + sent / rate <= now:
                    schedule.put_nowait(started + sent / rate)
                    sent += 1
                # 1 ms at least: uvloop runs a shorter timer at once, which would spin; the
                # requests that fall due meanwhile go out together, their latency counted from
                # when each fell due.
                await asyncio.sleep(max(0.001, started + sent / rate - time.perf_counter()))
            for _ in senders:
                schedule.put_nowait(None)
            await asyncio.gather(*senders)
            load.due = sent
        load.elapsed_s = time.perf_counter() - started
        return load

    async def _connection(
        self, load: Load, next_start: Callable[[], Awaitable[float | None]]
    ) -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while (due := await next_start()) is not None:
                try:
                    if streams is None:
                        streams = await asyncio.open_connection(self._host, self._port)
                    await self._one(*streams, due, load)
                except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                    load.errors[type(error).__name__] += 1
                    if streams is not None:
                        streams[1].close()
                        streams = None
        finally:
            if streams is not None:
                streams[1].close()
                with contextlib.suppress(OSError):
                    await streams[1].wait_closed()

    async def _one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, due: float, load: Load
    ) -> None:
        index = self._next
        self._next += 1
        request = self._requests[index % len(self._requests)]
        writer.write(request.data)
        status_line = await reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        load.latencies_s.append(time.perf_counter() - due)
        load.statuses[status] += 1
        if index % self._sample_every == 0:
            load.samples.append((request.destination, body))


# --- checking the replies -------------------------------------------------------------------------


async def check_samples(
    url: str, campaign_id: int, samples: list[tuple[str, bytes]]
) -> tuple[int, list[str]]:
    """(replies checked, what was wrong with the others): each must be the answer for its own
    contact, the template filled with that contact's fields from the database."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT destination, fields::text AS fields FROM contacts "
            "WHERE campaign_id = $1 AND destination = ANY($2::text[])",
            campaign_id,
            sorted({destination for destination, _ in samples}),
        )
    finally:
        await connection.close()
    fields = {row["destination"]: json.loads(row["fields"]) for row in rows}
    digits_url = f"{PUBLIC_URL}/plivo/digits?campaign={campaign_id}"
    problems = []
    for destination, body in samples:
        values = fields.get(destination)
        if values is None:
            problems.append(f"{destination}: no such contact")
            continue
        expected = MESSAGE.format(
            first_name=values["first_name"], appointment=values["appointment"]
        )
        try:
            root = ElementTree.fromstring(body)
        except Exception as error:  # any parse failure is a wrong reply
            problems.append(f"{destination}: not XML ({error}): {body[:200]!r}")
            continue
        menu = root.find("GetDigits")
        speak = None if menu is None else menu.find("Speak")
        if (
            root.tag != "Response"
            or menu is None
            or speak is None
            or menu.get("action") != digits_url
            or menu.get("validDigits") != "".join(sorted(GATHER))
            or speak.get("voice") != "WOMAN"
            or speak.text != expected
            or len(root) != 1
            or len(menu) != 1
        ):
            problems.append(f"{destination}: expected {expected!r}, got {body[:300]!r}")
    return len(samples), problems


# --- the run --------------------------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def wait_for_dialing(url: str, campaign_id: int, timeout_s: float = 60.0) -> None:
    connection = await asyncpg.connect(url)
    try:
        give_up = time.monotonic() + timeout_s
        while await dialled_count(connection, campaign_id) == 0:
            if time.monotonic() > give_up:
                raise SystemExit(f"the worker dialled nothing in {timeout_s:g} s")
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def bench(arguments: argparse.Namespace) -> None:
    server_url = arguments.server_url
    url = await worker_bench.fresh_database(server_url)
    worker: asyncio.subprocess.Process | None = None
    log = tempfile.TemporaryFile()  # noqa: SIM115  # closed in the finally below
    try:
        print(
            f"preparing: {arguments.contacts:,} contacts to answer, "
            f"{arguments.dial_contacts:,} to dial …",
            flush=True,
        )
        answered, dialled = await prepare(url, arguments.contacts, arguments.dial_contacts)
        async with worker_bench.running_simulator(
            worker_bench.UNLIMITED_CPS, 0.0, worker_bench.UNLIMITED_CPS
        ) as simulator_url:
            http_port = worker_bench.free_port()
            environment = {
                **worker_bench.worker_environment(
                    url,
                    simulator_url,
                    account_cps=arguments.dial_cps,
                    requests_per_window=0,
                    concurrency=arguments.worker_concurrency,
                ),
                "CAMPAIGN_HTTP_PORT": str(http_port),
                "CAMPAIGN_PUBLIC_URL": PUBLIC_URL,
                "CAMPAIGN_DATABASE_POOL_SIZE": str(arguments.pool_size),
            }
            command = [str(worker_bench.CAMPAIGN_EXECUTABLE), "worker"]
            if arguments.profile_worker:
                # The worker under cProfile: its statistics are written when it stops (SIGINT).
                command = [
                    sys.executable, "-m", "cProfile", "-o", arguments.profile_worker,
                    "-m", "campaign", "worker",
                ]  # fmt: skip
            worker = await asyncio.create_subprocess_exec(
                *command, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
            await callbacks_bench.wait_http(f"http://127.0.0.1:{http_port}/healthz")
            print("signing the requests …", flush=True)
            requests = answer_requests(
                answered,
                arguments.contacts,
                arguments.requests,
                f"127.0.0.1:{http_port}",
                arguments.seed,
            )
            await wait_for_dialing(url, dialled)
            generator = Generator("127.0.0.1", http_port, requests, arguments.sample_every)
            connections, due_per_second = arguments.concurrency, arguments.rate
            warm_up = await generator.run(arguments.warm_up_s, connections, due_per_second)
            counter = await asyncpg.connect(url)
            try:
                worker_process = psutil.Process(worker.pid)
                own = psutil.Process()
                simulator_process = [
                    process
                    for process in psutil.process_iter(["cmdline"])
                    if "simulator" in (process.info["cmdline"] or [])
                    and str(urlsplit(simulator_url).port) in (process.info["cmdline"] or [])
                ]
                dialled_before = await dialled_count(counter, dialled)
                cpu_before = (
                    cpu_s(worker_process),
                    cpu_s(own),
                    sum(cpu_s(process) for process in simulator_process),
                    callbacks_bench.postgres_cpu_s(),
                )
                load = await generator.run(arguments.seconds, connections, due_per_second)
                cpu_after = (
                    cpu_s(worker_process),
                    cpu_s(own),
                    sum(cpu_s(process) for process in simulator_process),
                    callbacks_bench.postgres_cpu_s(),
                )
                dialled_after = await dialled_count(counter, dialled)
                pending = await counter.fetchval(
                    "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND status = 'pending'",
                    dialled,
                )
            finally:
                await counter.close()
            worker.send_signal(2)
            try:
                await asyncio.wait_for(worker.wait(), 60)
            except TimeoutError:
                worker.kill()
                await worker.wait()
            if worker.returncode not in (0, -2, 130):
                log.seek(0)
                print(log.read().decode(errors="replace")[-3000:], file=sys.stderr)
        checked, problems = await check_samples(url, answered, load.samples)
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            await worker.wait()
        log.close()
        await worker_bench.drop_database(server_url, url)

    ordered = sorted(load.latencies_s)
    worker_cpu, own_cpu, simulator_cpu, postgres_cpu = (
        after - before for before, after in zip(cpu_before, cpu_after, strict=True)
    )
    rate = load.answers / load.elapsed_s
    dial_rate = (dialled_after - dialled_before) / load.elapsed_s
    p99_ms = percentile(ordered, 0.99) * 1000
    ok = load.statuses.get(200, 0)
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
        f"{platform.platform()}; python {platform.python_version()}"
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    mode = (
        f"closed loop, {arguments.concurrency} in flight"
        if arguments.rate is None
        else f"open loop, {arguments.rate:,.0f} due per second over at most "
        f"{arguments.concurrency} connections"
    )
    print(
        f"answered campaign     {arguments.contacts:>10,} contacts   requests signed "
        f"{len(requests):,}   {mode}"
    )
    print(
        f"warm-up               {warm_up.answers:>10,} answers in {warm_up.elapsed_s:.1f} s "
        "(not counted)"
    )
    served_rate = rate
    if load.due is None:
        print(f"answers               {load.answers:>10,} in {load.elapsed_s:.2f} s")
    else:
        print(
            f"answers               {load.answers:>10,} of {load.due:,} due, in "
            f"{load.elapsed_s:.2f} s (the last due at {arguments.seconds:g} s)"
        )
        if load.answers == load.due:
            # Every request answered: the rate served is the rate they came at.
            served_rate = arguments.rate
    print(f"answers per second    {rate:>10,.0f}   (goal >= 2,000)")
    print(
        "latency (ms)          "
        f"p50 {percentile(ordered, 0.50) * 1000:.1f}   p90 {percentile(ordered, 0.90) * 1000:.1f}"
        f"   p99 {p99_ms:.1f}   max {(ordered[-1] if ordered else 0) * 1000:.1f}   "
        f"mean {statistics.fmean(ordered) * 1000 if ordered else 0:.1f}   (goal p99 < 50)"
    )
    print(
        f"HTTP statuses         {dict(sorted(load.statuses.items()))}   non-200: "
        f"{load.answers - ok}   connection errors: {dict(load.errors) or 0}"
    )
    print(
        f"replies checked       {checked:>10,} (one in {arguments.sample_every}): "
        f"{'each for its own contact' if not problems else f'{len(problems)} WRONG'}"
    )
    for problem in problems[:5]:
        print(f"    {problem}")
    print(
        f"dialled meanwhile     {dialled_after - dialled_before:>10,} contacts of `dialled` = "
        f"{dial_rate:,.0f} contacts/s (account CPS {arguments.dial_cps:g})"
        + ("   RAN OUT of contacts to dial" if pending == 0 else "")
    )
    print(
        f"worker CPU            {worker_cpu:>10.2f} s  ({worker_cpu / load.elapsed_s:.0%} of a "
        f"core; {worker_cpu / max(load.answers, 1) * 1e6:.0f} µs per answer, dialing included)"
    )
    print(
        f"other CPU             load generator {own_cpu:.2f} s, PostgreSQL {postgres_cpu:.2f} s, "
        f"simulator {simulator_cpu:.2f} s"
    )
    met = served_rate >= 2000 and p99_ms < 50 and ok == load.answers and not problems
    print(
        f"goal (>= 2,000 answers/s, p99 < 50 ms, every reply right): {'met' if met else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured")
    parser.add_argument("--warm-up-s", type=float, default=3.0, help="before, not counted")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="connections (requests in flight at most)"
    )
    parser.add_argument(
        "--rate", type=float, help="answer requests due per second (open loop; default: closed)"
    )
    parser.add_argument("--contacts", type=int, default=200_000, help="of the answered campaign")
    parser.add_argument(
        "--requests", type=int, default=150_000, help="signed beforehand; sent again when used up"
    )
    parser.add_argument("--dial-contacts", type=int, default=200_000)
    parser.add_argument(
        "--dial-cps", type=float, default=200.0, help="the worker's account CPS meanwhile"
    )
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--sample-every", type=int, default=50, help="one reply in N is checked")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--profile-worker", metavar="FILE", help="run the worker under cProfile, stats to FILE"
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get(
            "CAMPAIGN_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    arguments = parser.parse_args()
    if urlsplit(arguments.server_url).hostname not in (None, "127.0.0.1", "localhost", "::1"):
        raise SystemExit("--server-url: this benchmark runs against a local server only")
    # uvloop, as the worker runs: the generator takes less of the CPU it shares with the worker.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(bench(arguments))


if __name__ == "__main__":
    main()
