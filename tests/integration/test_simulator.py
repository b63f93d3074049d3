"""The Plivo simulator over loopback: Plivo's checks one by one, the account limits, callbacks
signed with V3, the ledger endpoint, and seeded repeatability."""

from __future__ import annotations

import json
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
from campaign.simulator import LEDGER_PATH, RunningSimulator, SimulatorConfig, running_simulator

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
    assert sorted(windows.values()) == [1, 302]


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
