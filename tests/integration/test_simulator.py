"""The Plivo simulator over loopback: Plivo's checks one by one, the account limits (calls per
second, API requests, concurrent calls), talk times, callbacks signed with V3, the ledger
endpoint, and seeded repeatability."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from plivo_fixtures import (
    ANSWER_URL,
    AUTH_ID,
    AUTH_TOKEN,
    FROM_NUMBER,
    FakeClock,
    destinations,
    simulator_config,
)

from campaign.signature import (
    SIGNATURE_V3_HEADER,
    SIGNATURE_V3_NONCE_HEADER,
    validate_signature_v3,
)
from campaign.simulator import (
    LEDGER_PATH,
    RunningSimulator,
    SimulatorConfig,
    running_simulator,
    time_weighted_mean,
)

AUTHORIZATION = aiohttp.encode_basic_auth(AUTH_ID, AUTH_TOKEN)
CALL_PATH = f"/v1/Account/{AUTH_ID}/Call/"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A bare HTTP session, so the tests speak to the simulator as Plivo's users would."""
    async with aiohttp.ClientSession() as session:
        yield session


async def post_call(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    body: object,
    *,
    headers: dict[str, str] | None = None,
    path: str = CALL_PATH,
) -> tuple[int, dict[str, Any]]:
    sent_headers = {"Authorization": AUTHORIZATION, **(headers or {})}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent_headers.setdefault("Content-Type", "application/json")
    async with http.post(sim.base_url + path, data=data, headers=sent_headers) as response:
        return response.status, await response.json(content_type=None)


def valid_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {"from": FROM_NUMBER, "to": "14155550001", "answer_url": ANSWER_URL}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


@pytest.mark.parametrize(
    ("changes", "error_part"),
    [
        ({"from": None}, "from parameter is missing"),
        ({"to": None}, "to parameter is missing"),
        ({"answer_url": None}, "answer_url parameter is missing"),
        ({"answer_url": "ftp://example.com/a"}, "answer_url"),
        ({"answer_method": "PUT"}, "answer_method"),
        ({"ring_url": "not a url"}, "ring_url"),
        ({"hangup_method": "DELETE"}, "hangup_method"),
        ({"fallback_url": "example.com"}, "fallback_url"),
        ({"caller_name": "x" * 51}, "caller_name"),
        ({"send_digits": "12x"}, "send_digits"),
        ({"send_on_preanswer": "maybe"}, "send_on_preanswer"),
        ({"time_limit": "0"}, "time_limit"),
        ({"hangup_on_ring": "-5"}, "hangup_on_ring"),
        ({"machine_detection": "false"}, "machine_detection"),
        ({"machine_detection_time": "1999"}, "machine_detection_time"),
        ({"machine_detection_time": "10001"}, "machine_detection_time"),
        ({"machine_detection_method": "PATCH"}, "machine_detection_method"),
        ({"sip_headers": "a=b,c-d=e"}, "sip_headers"),
        ({"ring_timeout": "soon"}, "ring_timeout"),
        ({"error_if_parent_not_found": "yes"}, "error_if_parent_not_found"),
        ({"from": "abc"}, "from parameter is not a valid number"),
        ({"to": FROM_NUMBER}, "from number cannot be one of the destinations"),
        ({"to": f"14155550001<+{FROM_NUMBER}"}, "from number cannot be one of the destinations"),
        ({"to": "14155550001<14155550001"}, "duplicate destination"),
        ({"to": "<".join(destinations(1001))}, "too many destinations"),
        ({"to": "14155550001<14155550002", "parent_call_uuid": "p-1"}, "bulk"),
        ({"to": "12"}, "no valid destination"),
        ({"to": "12<34"}, "no valid destination"),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, str) else None,
)
async def test_each_rule_is_enforced(
    http: aiohttp.ClientSession, changes: dict[str, object], error_part: str
) -> None:
    """Each Make-a-call rule answers 400 with a Plivo-style {api_id, error} and dials nothing."""
    async with running_simulator(simulator_config()) as sim:
        status, reply = await post_call(http, sim, valid_body(**changes))
        assert status == 400
        assert error_part in reply["error"]
        assert reply["api_id"]
        assert sim.ledger.dials == []


async def test_a_body_that_is_not_json_is_refused(http: aiohttp.ClientSession) -> None:
    """A form body or broken JSON is refused with 400."""
    async with running_simulator(simulator_config()) as sim:
        status, _ = await post_call(http, sim, b"from=1&to=2")
        assert status == 400
        status, _ = await post_call(
            http, sim, b"{}", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 400


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({"Authorization": ""}, CALL_PATH, 401),
        ({"Authorization": aiohttp.encode_basic_auth(AUTH_ID, "wrong")}, CALL_PATH, 401),
        ({"Authorization": aiohttp.encode_basic_auth("MAOTHER", AUTH_TOKEN)}, CALL_PATH, 401),
        ({}, "/v1/Account/MAOTHERACCOUNT000001/Call/", 404),
    ],
    ids=["no-credentials", "wrong-token", "wrong-id", "other-account-path"],
)
async def test_credentials_are_checked(
    http: aiohttp.ClientSession, headers: dict[str, str], path: str, status: int
) -> None:
    """Basic auth against the configured id/token (401); another account's path (404)."""
    async with running_simulator(simulator_config()) as sim:
        got, reply = await post_call(http, sim, valid_body(), headers=headers, path=path)
        assert got == status
        assert "error" in reply
        assert sim.ledger.dials == []


async def test_bulk_uuids_follow_to_order_and_invalids_are_listed(
    http: aiohttp.ClientSession,
) -> None:
    """Valid destinations get request_uuids in `to` order; invalid ones come in invalid_numbers."""
    to = ["14155550001", "999", "sip:alice@example.com", "+14155550002"]
    async with running_simulator(simulator_config()) as sim:
        status, reply = await post_call(http, sim, valid_body(to="<".join(to)))
        assert status == 201
        assert reply["message"] == "calls fired"
        assert reply["invalid_numbers"] == ["999"]
        dialled = [(call.destination, call.request_uuid) for call in sim.ledger.dials]
    assert [destination for destination, _ in dialled] == [to[0], to[2], to[3]]
    assert reply["request_uuid"] == [request_uuid for _, request_uuid in dialled]


async def test_cps_queues_and_dials_when_a_slot_frees(http: aiohttp.ClientSession) -> None:
    """At 2 calls/s, 6 destinations: 2 dialled now, 4 queued; never more than 2 dials a second."""
    clock = FakeClock()
    async with running_simulator(simulator_config(calls_per_second=2.0), clock=clock) as sim:
        status, reply = await post_call(http, sim, valid_body(to="<".join(destinations(6))))
        assert (status, reply["message"]) == (200, "calls queued")
        assert len(sim.ledger.dials) == 2
        clock.advance(1.0)
        assert len(sim.ledger.dials) == 4
        clock.advance(1.0)
        assert len(sim.ledger.dials) == 6
        ledger = sim.ledger
    assert [call.request_uuid for call in ledger.dials] == reply["request_uuid"]
    assert sum(call.queued for call in ledger.dials) == 4
    assert max(ledger.calls_per_second().values()) == 2


async def test_300_requests_per_5_s_then_429(http: aiohttp.ClientSession) -> None:
    """The 301st API request inside 5 s gets 429 with Retry-After; the next window is open again."""
    clock = FakeClock()
    headers = {"Authorization": AUTHORIZATION}
    async with running_simulator(simulator_config(), clock=clock) as sim:
        url = f"{sim.base_url}{CALL_PATH}?status=queued"
        for _ in range(300):
            async with http.get(url, headers=headers) as response:
                assert response.status == 200
        async with http.get(url, headers=headers) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
        status, _ = await post_call(http, sim, valid_body())
        assert status == 429
        clock.advance(5.0)
        status, _ = await post_call(http, sim, valid_body())
        assert status == 201
        windows = sim.ledger.requests_per_window(5.0)
        summary = sim.ledger.summary()
    assert sorted(windows.values()) == [1, 302]
    assert (summary["request_rate_refusals"], summary["concurrency_refusals"]) == (2, 0)


async def test_ledger_endpoint_lists_dials_and_rates(http: aiohttp.ClientSession) -> None:
    """`GET /__simulator__/ledger` returns each destination with its request_uuid and time."""
    async with running_simulator(simulator_config()) as sim:
        _, reply = await post_call(http, sim, valid_body(to="14155550001<14155550002"))
        async with http.get(sim.base_url + LEDGER_PATH) as response:
            ledger = await response.json()
        async with http.get(sim.base_url + LEDGER_PATH + "?summary=1") as response:
            summary = await response.json()
    assert [d["request_uuid"] for d in ledger["dials"]] == reply["request_uuid"]
    assert [d["destination"] for d in ledger["dials"]] == ["14155550001", "14155550002"]
    assert all(isinstance(d["dialled_at"], float) for d in ledger["dials"])
    assert ledger["max_calls_per_second"] == 2
    assert sum(ledger["requests_per_window"].values()) == 1
    assert summary["dials"] == 2


async def test_a_seed_repeats_the_run(http: aiohttp.ClientSession) -> None:
    """Two simulators with the same seed hand out the same uuids and outcomes."""
    runs = []
    for _ in range(2):
        async with running_simulator(simulator_config(seed=42)) as sim:
            await post_call(http, sim, valid_body(to="<".join(destinations(5))))
            runs.append([(c.request_uuid, c.outcome) for c in sim.ledger.dials])
    assert runs[0] == runs[1]


@pytest.fixture
async def callback_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local web app standing in for the campaign's callback endpoints; records each hit."""
    received: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else request.query
        received.append(
            {
                "path": request.path,
                "method": request.method,
                "url": str(request.url),
                "params": {key: str(value) for key, value in form.items()},
                "signature": request.headers.get(SIGNATURE_V3_HEADER, ""),
                "nonce": request.headers.get(SIGNATURE_V3_NONCE_HEADER, ""),
            }
        )
        return web.Response(text="<Response><Speak>Hello</Speak></Response>")

    app = web.Application()
    app.router.add_route("*", "/{kind}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", received
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("outcome", "events"),
    [("completed", ["/ring", "/answer", "/hangup"]), ("busy", ["/ring", "/hangup"])],
)
async def test_callbacks_carry_plivos_parameters_signed_v3(
    http: aiohttp.ClientSession,
    callback_receiver: tuple[str, list[dict[str, Any]]],
    outcome: str,
    events: list[str],
) -> None:
    """Ring, answer (only when answered) and hangup callbacks, each with a valid V3 signature."""
    base, received = callback_receiver
    config = simulator_config(send_callbacks=True, outcome_shares={outcome: 1.0})
    async with running_simulator(config) as sim:
        _, reply = await post_call(
            http,
            sim,
            valid_body(
                answer_url=f"{base}/answer",
                ring_url=f"{base}/ring?campaign=7",
                hangup_url=f"{base}/hangup",
                answer_method="GET",
                sip_headers="campaign=7",
            ),
        )
        await sim.simulator.settle()
    assert [hit["path"] for hit in received] == events
    for hit in received:
        # A GET carries its parameters in the query, which the GET rule already merges in.
        signed = hit["params"] if hit["method"] == "POST" else {}
        assert validate_signature_v3(
            AUTH_TOKEN, hit["url"], hit["nonce"], signed, hit["signature"], hit["method"]
        )
        params = hit["params"]
        assert params["RequestUUID"] == reply["request_uuid"]
        assert params["To"] == "14155550001"
        assert params["X-PH-campaign"] == "7"
    hangup = received[-1]["params"]
    assert hangup["Event"] == "Hangup"
    assert hangup["CallStatus"] == outcome
    assert {"StartTime", "EndTime", "HangupCause", "Duration", "BillDuration"} <= set(hangup)
    assert received[0]["params"]["Event"] == "Ring"


async def test_a_status_callback_refused_with_a_5xx_is_tried_again_as_plivo_does(
    http: aiohttp.ClientSession,
) -> None:
    """A hangup URL that answers 503 twice gets the callback a third time (after its
    Retry-After) and accepts it; a 4xx is final; the answer_url fetch is tried once."""
    answers = {"/hangup": [503, 503, 200], "/ring": [403, 200], "/answer": [503, 200]}
    received: list[str] = []

    async def reply(request: web.Request) -> web.Response:
        received.append(request.path)
        status = answers[request.path].pop(0)
        return web.Response(status=status, text="x", headers={"Retry-After": "0.01"})

    app = web.Application()
    app.router.add_route("*", "/{kind}", reply)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"
    try:
        config = simulator_config(send_callbacks=True, outcome_shares={"completed": 1.0})
        async with running_simulator(config) as sim:
            await post_call(
                http,
                sim,
                valid_body(
                    answer_url=f"{base}/answer",
                    ring_url=f"{base}/ring",
                    hangup_url=f"{base}/hangup",
                ),
            )
            await sim.simulator.settle()
            ledger = sim.ledger
    finally:
        await runner.cleanup()
    assert received == ["/ring", "/answer", "/hangup", "/hangup", "/hangup"]
    assert [(c.event, c.http_status) for c in ledger.callbacks] == [
        ("ring", 403),
        ("answer", 503),
        ("hangup", 503),
        ("hangup", 503),
        ("hangup", 200),
    ]


def test_config_refuses_impossible_rates() -> None:
    """Fault rates adding up past 1, or an unknown outcome, are refused up front."""
    with pytest.raises(ValueError, match="add up"):
        SimulatorConfig(unavailable_rate=0.6, rate_limited_rate=0.6)
    with pytest.raises(ValueError, match="unknown outcomes"):
        SimulatorConfig(outcome_shares={"voicemail": 1.0})
    with pytest.raises(ValueError, match="talk_s_max"):
        SimulatorConfig(talk_s=5.0, talk_s_max=2.0)
    with pytest.raises(ValueError, match="max_concurrent_calls"):
        SimulatorConfig(max_concurrent_calls=-1)


# --- concurrent calls (Plivo's India accounts) and talk times ---


def answered_calls(**changes: Any) -> SimulatorConfig:
    """Every call answered, after 0.5 s of ringing and 0.5 s to answer, then `talk_s`."""
    values: dict[str, Any] = {
        "outcome_shares": {"completed": 1.0},
        "ring_after_s": 0.5,
        "answer_after_s": 0.5,
        **changes,
    }
    return simulator_config(**values)


async def live_calls(http: aiohttp.ClientSession, sim: RunningSimulator) -> list[str]:
    """The call_uuids the simulator's `status=live` look-up lists."""
    headers = {"Authorization": AUTHORIZATION}
    async with http.get(f"{sim.base_url}{CALL_PATH}?status=live", headers=headers) as response:
        assert response.status == 200
        reply = await response.json()
    calls: list[str] = reply["calls"]
    return calls


async def test_a_request_over_the_concurrent_call_limit_is_refused_whole_with_5030(
    http: aiohttp.ClientSession,
) -> None:
    """With 3 concurrent calls allowed and 2 live, a request for 2 more gets 403 with Plivo's
    {api_id, error} naming code 5030 and places neither; a request for 1 fits and is fired; the
    refusal is in the ledger (status, `refusal`, the summary's count) as other refusals are."""
    clock = FakeClock()
    config = answered_calls(talk_s=10.0, max_concurrent_calls=3)
    async with running_simulator(config, clock=clock) as sim:
        status, _ = await post_call(http, sim, valid_body(to="14155550001<14155550002"))
        assert status == 201
        status, refused = await post_call(http, sim, valid_body(to="14155550003<14155550004"))
        assert status == 403
        assert set(refused) == {"api_id", "error"}
        assert "5030" in refused["error"]
        assert refused["error"] == (
            "concurrent call limit reached (error code 5030): 2 calls in progress, limit 3"
        )
        assert [call.destination for call in sim.ledger.dials] == ["14155550001", "14155550002"]
        status, fired = await post_call(http, sim, valid_body(to="14155550003"))
        assert (status, fired["message"]) == (201, "call fired")
        assert len(await live_calls(http, sim)) == 3
        status, refused = await post_call(http, sim, valid_body(to="14155550004"))
        assert (status, "3 calls in progress, limit 3" in refused["error"]) == (403, True)
        async with http.get(sim.base_url + LEDGER_PATH) as response:
            ledger = await response.json()
    assert len(ledger["dials"]) == 3
    assert [(r["http_status"], r["refusal"], r["destinations"]) for r in ledger["requests"]] == [
        (201, None, 2),
        (403, "concurrent_calls", 0),
        (201, None, 1),
        (200, None, 0),
        (403, "concurrent_calls", 0),
    ]
    assert ledger["concurrency_refusals"] == 2
    assert ledger["max_live_calls"] == 3


async def test_calls_that_end_free_room_under_the_limit(http: aiohttp.ClientSession) -> None:
    """A call is live from its dial until its end on the simulator's clock: with 2 allowed and
    2 live, a third is refused; once the first two have ended (1 s of ringing and answering plus
    2 s of talk) it is fired, and a limit set by `reconfigure` mid-run applies at once."""
    clock = FakeClock()
    config = answered_calls(talk_s=2.0, max_concurrent_calls=2)
    async with running_simulator(config, clock=clock) as sim:
        status, _ = await post_call(http, sim, valid_body(to="14155550001<14155550002"))
        assert status == 201
        clock.advance(2.9)
        assert len(await live_calls(http, sim)) == 2
        status, _ = await post_call(http, sim, valid_body(to="14155550003"))
        assert status == 403
        clock.advance(0.1)  # 3 s after the dial: both ended
        assert await live_calls(http, sim) == []
        status, _ = await post_call(http, sim, valid_body(to="14155550003"))
        assert status == 201
        sim.simulator.reconfigure(max_concurrent_calls=1)
        status, refused = await post_call(http, sim, valid_body(to="14155550004"))
        assert status == 403
        assert "1 calls in progress, limit 1" in refused["error"]
        sim.simulator.reconfigure(max_concurrent_calls=0)
        status, _ = await post_call(http, sim, valid_body(to="14155550004"))
        assert status == 201
        ledger = sim.ledger
    assert ledger.refusals("concurrent_calls") == 2
    assert ledger.max_live_calls() == 2


async def test_queued_calls_hold_their_place_and_cancelled_ones_give_it_back(
    http: aiohttp.ClientSession,
) -> None:
    """At 1 call/s with 3 concurrent calls allowed, 3 destinations are 1 live and 2 queued: a
    fourth is refused (the queued ones will be live), cancelling a queued one lets it in, and
    as the queue dials, never more than 3 calls are live at once."""
    clock = FakeClock()
    config = answered_calls(talk_s=10.0, calls_per_second=1.0, max_concurrent_calls=3)
    headers = {"Authorization": AUTHORIZATION}
    async with running_simulator(config, clock=clock) as sim:
        status, reply = await post_call(http, sim, valid_body(to="<".join(destinations(3))))
        assert (status, reply["message"]) == (200, "calls queued")
        assert len(await live_calls(http, sim)) == 1
        status, refused = await post_call(http, sim, valid_body(to="14155550001"))
        assert status == 403
        assert "3 calls in progress, limit 3" in refused["error"]
        cancel = f"{sim.base_url}/v1/Account/{AUTH_ID}/Request/{reply['request_uuid'][2]}/"
        async with http.delete(cancel, headers=headers) as response:
            assert response.status == 204
        status, reply = await post_call(http, sim, valid_body(to="14155550001"))
        assert (status, reply["message"]) == (200, "call queued")
        clock.advance(30.0)
        ledger = sim.ledger
    assert len(ledger.dials) == 3
    assert ledger.max_live_calls() == 3
    assert ledger.refusals("concurrent_calls") == 1


class WatchedClock(FakeClock):
    """A hand-moved clock that says when it is next read (the simulator reads it as a request
    arrives)."""

    def __init__(self) -> None:
        super().__init__()
        self.read = asyncio.Event()

    def __call__(self) -> float:
        self.read.set()
        return self.now_s


async def test_a_request_is_counted_when_its_body_has_come_not_when_it_arrived(
    http: aiohttp.ClientSession,
) -> None:
    """One call allowed. A request arrives while a call is live, its body held back; the call
    ends and another request (too big) is refused meanwhile. When the body comes, the call is
    placed at that moment, not dialled back at the arrival, when it would overlap the call that
    was live then: no moment has 2 live calls."""
    clock = WatchedClock()
    config = answered_calls(talk_s=2.0, max_concurrent_calls=1)
    async with running_simulator(config, clock=clock) as sim:
        status, _ = await post_call(http, sim, valid_body(to="14155550001"))
        assert status == 201
        clock.advance(1.0)
        release = asyncio.Event()

        async def held_body() -> AsyncIterator[bytes]:
            # The client sends the headers with the first chunk: send some, hold the rest.
            body = json.dumps(valid_body(to="14155550002")).encode()
            yield body[:10]
            await release.wait()
            yield body[10:]

        clock.read.clear()
        headers = {"Authorization": AUTHORIZATION, "Content-Type": "application/json"}
        held = asyncio.create_task(
            http.post(sim.base_url + CALL_PATH, data=held_body(), headers=headers)
        )
        await clock.read.wait()  # the held request has arrived, 1 s after the first call
        clock.advance(4.0)  # the first call ended at 3 s
        status, _ = await post_call(http, sim, valid_body(to="14155550003<14155550004"))
        assert status == 403
        release.set()
        async with await held as response:
            assert response.status == 201
        ledger = sim.ledger
    first, second = ledger.dials
    assert second.dial_at - first.dial_at == 5.0
    assert ledger.max_live_calls() == 1


async def test_concurrent_requests_on_the_real_clock_never_pass_the_limit(
    http: aiohttp.ClientSession,
) -> None:
    """Twenty clients asking at once for 1 to 3 calls each, calls lasting 0.05 to 0.2 s, for
    about a second on the wall clock: some requests are refused with 5030, many calls are
    placed, and the ledger shows no moment with more than 8 live calls."""
    config = simulator_config(
        outcome_shares={"completed": 1.0},
        ring_after_s=0.0,
        answer_after_s=0.0,
        talk_s=0.05,
        talk_s_max=0.2,
        max_concurrent_calls=8,
        requests_per_window=100_000,
    )
    numbers = iter(range(14155551000, 14155599999))
    draws = random.Random(3)
    async with running_simulator(config) as sim:
        deadline = time.monotonic() + 1.0

        async def client() -> list[int]:
            statuses = []
            while time.monotonic() < deadline:
                to = "<".join(str(next(numbers)) for _ in range(draws.randint(1, 3)))
                status, _ = await post_call(http, sim, valid_body(to=to))
                statuses.append(status)
                await asyncio.sleep(draws.uniform(0.0, 0.02))
            return statuses

        statuses = [s for run in await asyncio.gather(*(client() for _ in range(20))) for s in run]
        ledger = sim.ledger
    assert set(statuses) == {201, 403}
    assert ledger.refusals("concurrent_calls") == statuses.count(403)
    assert len(ledger.dials) > 20
    assert ledger.max_live_calls() == 8


async def test_the_ledger_endpoint_serves_the_live_calls_timeline(
    http: aiohttp.ClientSession,
) -> None:
    """Calls of 2 s dialled at 0 s (two) and 1 s (one) on the simulator's clock: the ledger
    endpoint reports 3 live at most, the timeline's change points, and a mean that
    `time_weighted_mean` computes from the served JSON as the ledger does in-process."""
    clock = FakeClock(start_s=1_000.0)
    config = simulator_config(
        outcome_shares={"completed": 1.0}, ring_after_s=0.0, answer_after_s=0.0, talk_s=2.0
    )
    async with running_simulator(config, clock=clock) as sim:
        await post_call(http, sim, valid_body(to="14155550001<14155550002"))
        clock.advance(1.0)
        await post_call(http, sim, valid_body(to="14155550003"))
        async with http.get(sim.base_url + LEDGER_PATH) as response:
            ledger = await response.json()
        async with http.get(sim.base_url + LEDGER_PATH + "?summary=1") as response:
            summary = await response.json()
        in_process = sim.ledger.mean_live_calls(1_000.0, 1_004.0)
    assert ledger["live_calls_timeline"] == [[1_000.0, 2], [1_001.0, 3], [1_002.0, 1], [1_003.0, 0]]
    assert [d["ended_at"] - d["dialled_at"] for d in ledger["dials"]] == [2.0, 2.0, 2.0]
    assert summary["max_live_calls"] == ledger["max_live_calls"] == 3
    # 2 for 1 s, 3 for 1 s, 1 for 1 s, 0 for 1 s: 6 call-seconds over 4 s.
    assert time_weighted_mean(ledger["live_calls_timeline"], 1_000.0, 1_004.0) == 1.5
    assert in_process == 1.5


async def test_talk_times_are_drawn_between_talk_s_and_talk_s_max(
    http: aiohttp.ClientSession,
) -> None:
    """With talk_s 2 and talk_s_max 10, each answered call talks a seeded uniform draw in
    [2, 10] s (spread across the range, the same again with the same seed); without
    talk_s_max every call talks exactly talk_s, as before."""
    config = answered_calls(talk_s=2.0, talk_s_max=10.0, seed=11)
    runs = []
    for _ in range(2):
        async with running_simulator(config) as sim:
            status, _ = await post_call(http, sim, valid_body(to="<".join(destinations(200))))
            assert status == 201
            dials = sim.ledger.dials
            assert all(
                call.end_at - (call.answer_at or 0) == pytest.approx(call.talk_s) for call in dials
            )
            runs.append([call.talk_s for call in dials])
    talk = runs[0]
    assert len(talk) == 200
    assert all(2.0 <= seconds <= 10.0 for seconds in talk)
    assert min(talk) < 2.5
    assert max(talk) > 9.5
    assert len(set(talk)) == 200
    assert runs[1] == talk
    async with running_simulator(answered_calls(talk_s=2.0)) as sim:
        await post_call(http, sim, valid_body(to="<".join(destinations(20))))
        assert {call.talk_s for call in sim.ledger.dials} == {2.0}
