"""The Make-a-call client over real loopback HTTP: every reply shape, every failure class, and
what was and was not re-sent, read from the simulator's ledger (or a fake server's count)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from plivo_fixtures import (
    AUTH_ID,
    AUTH_TOKEN,
    FakeClock,
    call_parameters,
    destinations,
    fake_plivo,
    plivo_client,
    simulator_config,
)

from campaign import __version__
from campaign.plivo import (
    AccountProblem,
    DestinationState,
    FateUnknown,
    NotSent,
    PlivoError,
    RequestRejected,
)
from campaign.simulator import running_simulator


async def test_single_call_fired_maps_its_uuid() -> None:
    """One destination: `call fired`, its request_uuid is the one the simulator dialled."""
    async with running_simulator(simulator_config()) as sim, plivo_client(sim.base_url) as client:
        result = await client.make_call(call_parameters(), ["14155550001"])
    assert result.message == "call fired"
    assert result.http_status == 201
    assert result.attempts == 1
    (dial,) = sim.ledger.dials
    assert result.destinations[0].request_uuid == dial.request_uuid
    assert dial.destination == "14155550001"


async def test_bulk_with_an_invalid_number() -> None:
    """A bulk reply's uuids map to the valid destinations in order; the invalid one is marked."""
    batch = ["14155550001", "12", "14155550002"]
    async with running_simulator(simulator_config()) as sim, plivo_client(sim.base_url) as client:
        result = await client.make_call(call_parameters(), batch)
    assert result.message == "calls fired"
    assert result.mapped
    dialled = {call.destination: call.request_uuid for call in sim.ledger.dials}
    assert [(d.state, d.request_uuid) for d in result.destinations] == [
        (DestinationState.FIRED, dialled["14155550001"]),
        (DestinationState.INVALID, None),
        (DestinationState.FIRED, dialled["14155550002"]),
    ]


async def test_over_cps_is_queued_and_cancellable() -> None:
    """Over the account CPS the reply is `calls queued`; queued calls are listed and cancellable."""
    clock = FakeClock()
    config = simulator_config(calls_per_second=2.0)
    async with (
        running_simulator(config, clock=clock) as sim,
        plivo_client(sim.base_url) as client,
    ):
        result = await client.make_call(call_parameters(), destinations(5))
        assert result.queued
        assert all(d.state is DestinationState.QUEUED for d in result.destinations)
        assert len(sim.ledger.dials) == 2
        queued = await client.queued_calls()
        assert len(queued) == 3
        assert await client.cancel_queued_call(queued[0]) is True
        assert await client.cancel_queued_call(queued[0]) is False
        clock.advance(5.0)
        assert await client.queued_calls() == []
        ledger = sim.ledger
    assert len(ledger.dials) == 4
    assert queued[0] not in {call.request_uuid for call in ledger.dials}
    assert max(ledger.calls_per_second().values()) <= 2


async def test_request_is_built_as_plivo_expects() -> None:
    """JSON body, Basic auth, Content-Type and User-Agent, only the parameters that are set."""

    async def fired(request: web.Request) -> web.Response:
        return web.json_response({"message": "call fired", "request_uuid": "u-1", "api_id": "a"})

    async with fake_plivo(fired) as fake, plivo_client(fake.base_url) as client:
        await client.make_call(call_parameters(ring_url=None, time_limit=60), ["14155550001"])
    (headers,) = fake.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"campaign/{__version__}"
    expected = base64.b64encode(f"{AUTH_ID}:{AUTH_TOKEN}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"
    assert fake.received[0]["path"] == f"/v1/Account/{AUTH_ID}/Call/"
    body = json.loads(fake.received[0]["body"])
    assert body == {**call_parameters(), "time_limit": "60", "to": "14155550001"}


@pytest.mark.parametrize(
    ("status", "reply", "mapped", "queued"),
    [
        (201, {"message": "calls queued", "request_uuid": ["u-1"]}, False, True),
        (200, {"message": "calls fired", "request_uuid": "u-1"}, False, False),
        (201, {"message": "calls fired", "request_uuid": ["u-1", "u-2"]}, True, False),
        (202, {"message": "calls queued", "request_uuid": ["u-1", "u-2"]}, True, True),
    ],
    ids=["queued-fewer-uuids", "string-uuid-for-bulk", "201-list", "202-queued"],
)
async def test_reply_shapes_the_simulator_does_not_make(
    status: int, reply: dict[str, object], mapped: bool, queued: bool
) -> None:
    """Replies with 201/202, a string for a bulk uuid, or too few uuids: parsed, never guessed."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({**reply, "api_id": "a"}, status=status)

    async with fake_plivo(answer) as fake, plivo_client(fake.base_url) as client:
        result = await client.make_call(call_parameters(), ["14155550001", "14155550002"])
    assert result.mapped is mapped
    assert result.queued is queued
    assert len(fake.received) == 1
    if not mapped:
        assert all(d.request_uuid is None for d in result.destinations)
        assert result.request_uuids


async def test_503_is_retried_and_the_batch_dialled_once() -> None:
    """Two 503s then success: three requests, every destination dialled exactly once."""
    config = simulator_config(unavailable_rate=1.0, fault_budget=2)
    async with running_simulator(config) as sim, plivo_client(sim.base_url) as client:
        result = await client.make_call(call_parameters(), destinations(3))
    assert result.attempts == 3
    statuses = [r.http_status for r in sim.ledger.make_call_requests()]
    assert statuses == [503, 503, 201]
    assert set(sim.ledger.dial_counts().values()) == {1}


async def test_503_until_attempts_run_out_is_not_sent() -> None:
    """A 503 on every attempt: NotSent after exactly `retry_attempts` requests, nothing dialled."""
    config = simulator_config(unavailable_rate=1.0)
    async with (
        running_simulator(config) as sim,
        plivo_client(sim.base_url, retry_attempts=4) as client,
    ):
        with pytest.raises(NotSent) as caught:
            await client.make_call(call_parameters(), destinations(2))
    assert caught.value.attempts == 4
    assert len(sim.ledger.make_call_requests()) == 4
    assert sim.ledger.dials == []


async def test_429_waits_do_not_count_as_attempts() -> None:
    """Five 429s (Retry-After honoured) with 3 attempts allowed still end in one success."""
    config = simulator_config(rate_limited_rate=1.0, fault_budget=5, retry_after_s=0.01)
    async with (
        running_simulator(config) as sim,
        plivo_client(sim.base_url, retry_attempts=3) as client,
    ):
        result = await client.make_call(call_parameters(), destinations(2))
    assert result.attempts == 6
    assert [r.http_status for r in sim.ledger.make_call_requests()] == [429] * 5 + [201]
    assert set(sim.ledger.dial_counts().values()) == {1}


async def test_429_is_bounded_by_the_retry_budget() -> None:
    """Endless 429s stop when the total retry time is spent, as NotSent, nothing dialled."""
    config = simulator_config(rate_limited_rate=1.0, retry_after_s=0.05)
    async with (
        running_simulator(config) as sim,
        plivo_client(sim.base_url, retry_budget_s=0.3) as client,
    ):
        with pytest.raises(NotSent):
            await client.make_call(call_parameters(), destinations(1))
    assert sim.ledger.dials == []
    assert 2 <= len(sim.ledger.make_call_requests()) <= 10


@pytest.mark.parametrize(
    ("fault", "client_changes"),
    [
        ("error_after_placing_rate", {}),
        ("reset_after_placing_rate", {}),
        ("hang_after_placing_rate", {"timeout_s": 0.5}),
    ],
    ids=["500", "reset", "hang-past-time-out"],
)
async def test_placed_then_failed_is_fate_unknown_and_never_resent(
    fault: str, client_changes: dict[str, float]
) -> None:
    """500, a reset or a hang after placing: FateUnknown, one request, calls dialled once."""
    config = simulator_config(**{fault: 1.0}, hang_s=1.0)
    async with (
        running_simulator(config) as sim,
        plivo_client(sim.base_url, **client_changes) as client,
    ):
        with pytest.raises(FateUnknown) as caught:
            await client.make_call(call_parameters(), destinations(3))
        assert caught.value.attempts == 1
        assert len(sim.ledger.make_call_requests()) == 1
        assert sorted(sim.ledger.dial_counts().values()) == [1, 1, 1]


@pytest.mark.parametrize(
    ("changes", "status"),
    [({"auth_token": "wrong-token"}, 401), ({"auth_id": "MAWRONGACCOUNT000001"}, 401)],
    ids=["bad-token", "bad-auth-id"],
)
async def test_account_problems_stop_at_once(changes: dict[str, str], status: int) -> None:
    """Bad credentials or auth id: AccountProblem after one request; no token in the text."""
    async with (
        running_simulator(simulator_config()) as sim,
        plivo_client(sim.base_url, **changes) as client,
    ):
        with pytest.raises(AccountProblem) as caught:
            await client.make_call(call_parameters(), destinations(1))
    assert caught.value.http_status == status
    assert len(sim.ledger.requests) == 1
    assert "wrong-token" not in str(caught.value)
    assert AUTH_TOKEN not in str(caught.value)


async def test_rejected_request_keeps_plivos_error() -> None:
    """A parameter Plivo refuses: RequestRejected with its error, one request, no dial."""
    async with running_simulator(simulator_config()) as sim, plivo_client(sim.base_url) as client:
        with pytest.raises(RequestRejected) as caught:
            await client.make_call(call_parameters(answer_method="PUT"), destinations(1))
    assert "answer_method" in caught.value.error
    assert len(sim.ledger.requests) == 1
    assert sim.ledger.dials == []


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, b'{"error": "account disabled", "api_id": "a"}', AccountProblem),
        (405, b'{"error": "method not allowed"}', RequestRejected),
        (409, b'{"error": "conflict"}', RequestRejected),
        (422, b'{"error": "unprocessable"}', RequestRejected),
        (502, b"<html>bad gateway</html>", FateUnknown),
        (504, b"", FateUnknown),
        (200, b"<html>this is not JSON</html>", FateUnknown),
    ],
)
async def test_statuses_the_simulator_does_not_make(
    status: int, body: bytes, expected: type[PlivoError]
) -> None:
    """403/405/409/422/502/504 and a non-JSON 200 each fall in their class, sent exactly once."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    async with fake_plivo(answer) as fake, plivo_client(fake.base_url) as client:
        with pytest.raises(expected):
            await client.make_call(call_parameters(), destinations(1))
    assert len(fake.received) == 1


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_connection_refused_is_not_sent_after_all_attempts() -> None:
    """Nobody listening: nothing was written, so it is retried, then NotSent."""
    async with plivo_client(f"http://127.0.0.1:{_unused_port()}", retry_attempts=3) as client:
        with pytest.raises(NotSent) as caught:
            await client.make_call(call_parameters(), destinations(1))
    assert caught.value.attempts == 3


async def test_connection_refused_then_reachable_dials_once() -> None:
    """Refused while Plivo is down, then it comes up: the retry gets through, dialled once."""
    port = _unused_port()
    started = asyncio.Event()

    async def start_later() -> None:
        await asyncio.sleep(0.05)
        async with running_simulator(simulator_config(), port=port) as sim:
            started.set()
            await asyncio.sleep(2.0)
            ledger.extend(sim.ledger.dials)

    ledger: list[object] = []
    async with plivo_client(
        f"http://127.0.0.1:{port}", retry_attempts=20, backoff_initial_s=0.02, backoff_max_s=0.05
    ) as client:
        server = asyncio.create_task(start_later())
        result = await client.make_call(call_parameters(), destinations(2))
        assert started.is_set()
        assert result.attempts > 1
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_look_ups_for_reconcile() -> None:
    """Live calls by destination while ringing, then call records once the call has ended."""
    clock = FakeClock()
    config = simulator_config(
        outcome_shares={"completed": 1.0}, ring_after_s=1.0, answer_after_s=1.0, talk_s=10.0
    )
    async with (
        running_simulator(config, clock=clock) as sim,
        plivo_client(sim.base_url) as client,
    ):
        await client.make_call(call_parameters(), ["14155550001", "14155550002"])
        (first, _) = sim.ledger.dials
        clock.advance(3.0)
        assert await client.live_calls("14155550001") == [first.call_uuid]
        assert len(await client.live_calls()) == 2
        since = datetime.fromtimestamp(clock(), UTC) - timedelta(minutes=1)
        assert (await client.call_records("14155550001", since)).records == ()
        clock.advance(20.0)
        assert await client.live_calls() == []
        page = await client.call_records("14155550001", since)
    (record,) = page.records
    assert record.call_uuid == first.call_uuid
    assert record.hangup_cause_code == 4000
    assert page.total_count == 1
