"""The simulator plays a call's Plivo XML as Plivo does, over loopback: the answer request (signed,
with Machine when detection was asked for), Speak/Play/Wait heard in order with entities decoded,
GetDigits menus with seeded keypresses and signed action requests, Redirect, Hangup, broken
documents, and the bounds that end a redirect loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from plivo_fixtures import AUTH_ID, AUTH_TOKEN, FROM_NUMBER, destinations, simulator_config

from campaign.signature import (
    SIGNATURE_V3_HEADER,
    SIGNATURE_V3_NONCE_HEADER,
    validate_signature_v3,
)
from campaign.simulator import (
    LEDGER_PATH,
    MAX_DOCUMENTS_PER_CALL,
    MAX_HEARD_PER_CALL,
    RunningSimulator,
    running_simulator,
)

CALL_PATH = f"/v1/Account/{AUTH_ID}/Call/"
DESTINATION = "14155550001"


@dataclass(frozen=True)
class Hit:
    """One request the app under test received from the simulator."""

    path: str
    method: str
    url: str
    # The URL's query, and the form body of a POST (a GET's parameters: its query).
    query: dict[str, str]
    params: dict[str, str]
    signature: str
    nonce: str

    def signed(self) -> bool:
        """Whether its V3 signature is valid for the test token (a GET's parameters are in
        its URL, which the GET rule merges in)."""
        signed_params = self.params if self.method == "POST" else {}
        return validate_signature_v3(
            AUTH_TOKEN, self.url, self.nonce, signed_params, self.signature, self.method
        )


@dataclass
class XmlApp:
    """The app under test: serves Plivo XML documents by path and records every request."""

    base_url: str = ""
    documents: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def hits_to(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]


@pytest.fixture
async def xml_app() -> AsyncIterator[XmlApp]:
    """An in-process aiohttp app on loopback standing in for the engine's answer endpoints; a
    path without a document (hangup, machine detection) answers 200 with an empty body."""
    served = XmlApp()

    async def serve(request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else request.query
        served.hits.append(
            Hit(
                path=request.path,
                method=request.method,
                url=str(request.url),
                query=dict(request.query),
                params={key: str(value) for key, value in form.items()},
                signature=request.headers.get(SIGNATURE_V3_HEADER, ""),
                nonce=request.headers.get(SIGNATURE_V3_NONCE_HEADER, ""),
            )
        )
        status = served.statuses.get(request.path, 200)
        document = served.documents.get(request.path, "")
        return web.Response(status=status, text=document, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", serve)
    async with TestServer(app, host="127.0.0.1") as server:
        served.base_url = str(server.make_url("")).rstrip("/")
        yield served


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A bare HTTP session, to place calls as the engine does."""
    async with aiohttp.ClientSession() as session:
        yield session


def answered(**changes: Any) -> dict[str, Any]:
    """Every call answered, its callbacks sent (loopback only)."""
    return {"send_callbacks": True, "outcome_shares": {"completed": 1.0}, **changes}


async def place_call(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    app: XmlApp,
    *,
    to: str = DESTINATION,
    **parameters: str,
) -> Any:
    """Place a call whose answer_url is the app's /answer and hangup_url its /hangup, wait
    until it has played out, and return the Make-a-call reply."""
    body = {
        "from": FROM_NUMBER,
        "to": to,
        "answer_url": app.url("/answer"),
        "hangup_url": app.url("/hangup"),
        **parameters,
    }
    headers = {"Authorization": aiohttp.encode_basic_auth(AUTH_ID, AUTH_TOKEN)}
    async with http.post(sim.base_url + CALL_PATH, json=body, headers=headers) as response:
        assert response.status in (200, 201)
        reply = await response.json()
    await sim.simulator.settle()
    return reply


def events(sim: RunningSimulator) -> list[tuple[str, int | None]]:
    """The callbacks the simulator sent, as (event, HTTP status), in order."""
    return [(callback.event, callback.http_status) for callback in sim.ledger.callbacks]


def speak(text: str, voice: str = "WOMAN", language: str = "en-US") -> dict[str, Any]:
    """The entry a `<Speak>` with Plivo's defaults leaves in `heard`."""
    return {"kind": "speak", "text": text, "voice": voice, "language": language, "loop": 1}


async def test_speak_play_and_wait_are_heard_in_order_with_entities_decoded(
    http: aiohttp.ClientSession, xml_app: XmlApp
) -> None:
    """The answer request is Plivo's (POST, Event=StartApp, CallStatus=in-progress, no Machine
    without detection, signed V3); each element is heard in document order with its attributes
    (Plivo's defaults where left out), `&amp;`, `&lt;` and `&#233;` heard as the characters they
    stand for, an unknown element noted, nothing after <Hangup/>; a 60 s <Wait> takes no time; the
    served ledger carries the same entries."""
    xml_app.documents["/answer"] = """<?xml version="1.0" encoding="UTF-8"?>
<Response>
    <Speak voice="Polly.Amy" language="en-GB">Hello Ann, your appointment is on 3 December</Speak>
    <Play loop="2">https://example.com/chime.mp3</Play>
    <Wait length="60"/>
    <Speak>Smith &amp; Sons &lt;3 caf&#233;</Speak>
    <Record maxLength="30"/>
    <Hangup/>
    <Speak>Never heard</Speak>
</Response>"""
    async with running_simulator(simulator_config(**answered())) as sim:
        reply = await place_call(http, sim, xml_app)
        heard = sim.ledger.heard(DESTINATION)
        spoken = sim.ledger.spoken_text("+" + DESTINATION)
        async with http.get(sim.base_url + LEDGER_PATH) as response:
            served = await response.json()
        callbacks = sim.ledger.callbacks
    assert heard == [
        speak("Hello Ann, your appointment is on 3 December", "Polly.Amy", "en-GB"),
        {"kind": "play", "url": "https://example.com/chime.mp3", "loop": 2},
        {"kind": "wait", "length": 60, "beep": False, "until_beep": False},
        speak("Smith & Sons <3 café"),
        {"kind": "unknown", "element": "Record"},
        {"kind": "hangup"},
    ]
    assert spoken == "Hello Ann, your appointment is on 3 December Smith & Sons <3 café"
    assert served["dials"][0]["heard"] == heard
    answer, hangup = xml_app.hits_to("/answer"), xml_app.hits_to("/hangup")
    assert len(answer) == len(hangup) == 1
    assert answer[0].method == "POST"
    assert answer[0].signed()
    assert answer[0].params["Event"] == "StartApp"
    assert answer[0].params["CallStatus"] == "in-progress"
    assert answer[0].params["RequestUUID"] == reply["request_uuid"]
    assert "Machine" not in answer[0].params
    assert [hit.path for hit in xml_app.hits] == ["/answer", "/hangup"]
    assert callbacks[-1].sent_at - callbacks[0].sent_at < 30.0


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_pressed_digit_is_sent_signed_to_the_action_and_its_document_played(
    http: aiohttp.ClientSession, xml_app: XmlApp, method: str
) -> None:
    """With digit_shares {"1": 1.0} the callee hears the prompt and presses 1; the action URL
    (its `&amp;` decoded) gets a V3-signed request by the menu's method with the call's fields
    and Digits=1, recorded as a `digits` callback; the action's document is played, and the rest
    of the answer document is not."""
    xml_app.documents["/answer"] = f"""<Response>
    <GetDigits action="{xml_app.url("/menu")}?campaign=7&amp;step=1" method="{method}"
               numDigits="1" retries="3" validDigits="12">
        <Speak>Press 1 to confirm, 2 to cancel</Speak>
    </GetDigits>
    <Speak>We did not get your answer</Speak>
</Response>"""
    xml_app.documents["/menu"] = (
        "<Response><Speak>Thank you, see you on 3 December</Speak><Hangup/></Response>"
    )
    async with running_simulator(simulator_config(**answered(digit_shares={"1": 1.0}))) as sim:
        reply = await place_call(http, sim, xml_app)
        ledger = sim.ledger
        sent = events(sim)
    call = ledger.dials[0]
    assert ledger.heard(DESTINATION) == [
        speak("Press 1 to confirm, 2 to cancel"),
        {"kind": "digits", "digits": "1", "valid": True},
        speak("Thank you, see you on 3 December"),
        {"kind": "hangup"},
    ]
    assert ledger.digits_pressed(DESTINATION) == ["1"]
    (action,) = xml_app.hits_to("/menu")
    assert action.method == method
    assert action.signed()
    assert action.params["Digits"] == "1"
    assert (action.query["campaign"], action.query["step"]) == ("7", "1")
    assert action.params["CallUUID"] == call.call_uuid
    assert action.params["RequestUUID"] == reply["request_uuid"]
    assert action.params["To"] == DESTINATION
    assert action.params["CallStatus"] == "in-progress"
    assert sent == [("answer", 200), ("digits", 200), ("hangup", 200)]


@pytest.mark.parametrize(
    ("digit_shares", "attempt"),
    [
        ({}, {"kind": "no_digits"}),
        ({"9": 1.0}, {"kind": "digits", "digits": "9", "valid": False}),
        ({"#": 1.0}, {"kind": "no_digits", "pressed": "#"}),
    ],
    ids=["no-key", "key-not-in-validDigits", "only-finishOnKey"],
)
async def test_a_menu_without_a_valid_key_repeats_then_goes_on(
    http: aiohttp.ClientSession,
    xml_app: XmlApp,
    digit_shares: dict[str, float],
    attempt: dict[str, Any],
) -> None:
    """With retries=2 and no key the menu takes (none pressed, a key outside validDigits, or
    only the finishOnKey), the prompt is heard twice, each attempt noted, and the element after
    the menu is played; no action request is sent."""
    xml_app.documents["/answer"] = f"""<Response>
    <GetDigits action="{xml_app.url("/menu")}" retries="2" validDigits="12">
        <Speak>Press 1 to confirm</Speak>
        <Play>https://example.com/beep.mp3</Play>
    </GetDigits>
    <Speak>Goodbye</Speak>
</Response>"""
    async with running_simulator(simulator_config(**answered(digit_shares=digit_shares))) as sim:
        await place_call(http, sim, xml_app)
        heard = sim.ledger.heard(DESTINATION)
        sent = events(sim)
    prompt = [
        speak("Press 1 to confirm"),
        {"kind": "play", "url": "https://example.com/beep.mp3", "loop": 1},
    ]
    assert heard == [*prompt, attempt, *prompt, attempt, speak("Goodbye")]
    assert xml_app.hits_to("/menu") == []
    assert sent == [("answer", 200), ("hangup", 200)]


@pytest.mark.parametrize("machine", [False, True], ids=["person", "machine"])
async def test_machine_detection_is_told_on_answer_and_a_machine_presses_nothing(
    http: aiohttp.ClientSession, xml_app: XmlApp, machine: bool
) -> None:
    """With machine_detection asked for, the answer request says Machine=true|false; a
    <Wait beep="true"> lasts until the beep only for a machine; a person presses 1 (and the
    action is called), a machine presses nothing (no action, the next element is played);
    the machine-detection callback comes after the walk, the hangup last."""
    xml_app.documents["/answer"] = f"""<Response>
    <Wait length="10" beep="true"/>
    <GetDigits action="{xml_app.url("/menu")}">
        <Speak>Press 1 to confirm</Speak>
    </GetDigits>
    <Speak>Please call us back</Speak>
</Response>"""
    xml_app.documents["/menu"] = "<Response><Speak>Confirmed</Speak></Response>"
    config = simulator_config(
        **answered(digit_shares={"1": 1.0}, machine_share=1.0 if machine else 0.0)
    )
    async with running_simulator(config) as sim:
        await place_call(
            http,
            sim,
            xml_app,
            machine_detection="true",
            machine_detection_url=xml_app.url("/machine"),
        )
        ledger = sim.ledger
        sent = events(sim)
    (answer,) = xml_app.hits_to("/answer")
    assert answer.params["Machine"] == ("true" if machine else "false")
    wait = {"kind": "wait", "length": 10, "beep": True, "until_beep": machine}
    if machine:
        assert ledger.heard(DESTINATION) == [
            wait,
            speak("Press 1 to confirm"),
            {"kind": "no_digits"},
            speak("Please call us back"),
        ]
        assert ledger.digits_pressed(DESTINATION) == []
        assert xml_app.hits_to("/menu") == []
        assert sent == [("answer", 200), ("machine_detection", 200), ("hangup", 200)]
    else:
        assert ledger.spoken_text(DESTINATION) == "Press 1 to confirm Confirmed"
        assert ledger.digits_pressed(DESTINATION) == ["1"]
        assert len(xml_app.hits_to("/menu")) == 1
        assert sent == [
            ("answer", 200),
            ("digits", 200),
            ("machine_detection", 200),
            ("hangup", 200),
        ]


@pytest.mark.parametrize(
    ("document", "status", "detail"),
    [
        ("<Response><Speak>Hello</Response>", 200, "not well-formed XML (mismatched tag"),
        ("", 200, "not well-formed XML (no element found"),
        ("<Document><Speak>Hello</Speak></Document>", 200, "the root element is <Document>"),
        ("<Response><Speak>Hello</Speak></Response>", 500, "answered HTTP 500, not Plivo XML"),
        (
            '<Response><Speak>Hello</Speak><Wait length="soon"/></Response>',
            200,
            "<Wait> length must be a whole number >= 1, got 'soon'",
        ),
    ],
    ids=["malformed", "empty", "not-Response", "http-500", "bad-attribute"],
)
async def test_a_broken_answer_document_is_an_error_and_the_call_still_hangs_up(
    http: aiohttp.ClientSession, xml_app: XmlApp, document: str, status: int, detail: str
) -> None:
    """A document that is not well-formed, empty, rooted elsewhere than <Response>, answered
    with a 500, or with an attribute Plivo refuses is heard as one error entry naming the
    answer_url and the fault (nothing of it played, the <Speak> before a bad attribute neither);
    the hangup callback still comes."""
    xml_app.documents["/answer"] = document
    xml_app.statuses["/answer"] = status
    async with running_simulator(simulator_config(**answered())) as sim:
        await place_call(http, sim, xml_app)
        heard = sim.ledger.heard(DESTINATION)
        sent = events(sim)
    assert len(heard) == 1
    assert heard[0]["kind"] == "error"
    assert heard[0]["detail"].startswith(f"answer_url {xml_app.url('/answer')}")
    assert detail in heard[0]["detail"]
    assert sent == [("answer", status), ("hangup", 200)]
    (hangup,) = xml_app.hits_to("/hangup")
    assert hangup.params["CallStatus"] == "completed"


async def test_a_redirect_hands_the_call_to_another_document(
    http: aiohttp.ClientSession, xml_app: XmlApp
) -> None:
    """<Redirect method="GET"> fetches its URL by GET, signed, as a `redirect` callback; that
    document is played and the rest of the first one is not."""
    xml_app.documents["/answer"] = f"""<Response>
    <Speak>One moment</Speak>
    <Redirect method="GET">{xml_app.url("/next")}?step=2</Redirect>
    <Speak>Never heard</Speak>
</Response>"""
    xml_app.documents["/next"] = "<Response><Speak>Here is your reminder</Speak></Response>"
    async with running_simulator(simulator_config(**answered())) as sim:
        await place_call(http, sim, xml_app)
        spoken = sim.ledger.spoken_text(DESTINATION)
        sent = events(sim)
    assert spoken == "One moment Here is your reminder"
    (redirect,) = xml_app.hits_to("/next")
    assert redirect.method == "GET"
    assert redirect.signed()
    assert redirect.query["step"] == "2"
    assert redirect.params["CallStatus"] == "in-progress"
    assert sent == [("answer", 200), ("redirect", 200), ("hangup", 200)]


async def test_a_redirect_loop_ends_and_the_call_still_hangs_up(
    http: aiohttp.ClientSession, xml_app: XmlApp
) -> None:
    """A document that redirects to itself is fetched MAX_DOCUMENTS_PER_CALL times in all,
    then the walk ends with an error naming the loop; the hangup callback still comes."""
    xml_app.documents["/answer"] = (
        f"<Response><Speak>Still here</Speak><Redirect>{xml_app.url('/answer')}</Redirect>"
        "</Response>"
    )
    async with running_simulator(simulator_config(**answered())) as sim:
        await place_call(http, sim, xml_app)
        heard = sim.ledger.heard(DESTINATION)
        sent = events(sim)
    assert len(xml_app.hits_to("/answer")) == MAX_DOCUMENTS_PER_CALL
    assert heard[:-1] == [speak("Still here")] * MAX_DOCUMENTS_PER_CALL
    assert heard[-1]["kind"] == "error"
    assert f"stopped after {MAX_DOCUMENTS_PER_CALL} documents" in heard[-1]["detail"]
    assert sent[-1] == ("hangup", 200)
    assert len(xml_app.hits_to("/hangup")) == 1


async def test_a_menu_retried_without_end_is_cut_short(
    http: aiohttp.ClientSession, xml_app: XmlApp
) -> None:
    """A menu with retries="1000000" and nobody pressing stops after MAX_HEARD_PER_CALL
    entries with an error, instead of holding the simulator."""
    xml_app.documents["/answer"] = (
        '<Response><GetDigits retries="1000000"><Speak>Press 1</Speak></GetDigits></Response>'
    )
    async with running_simulator(simulator_config(**answered())) as sim:
        await place_call(http, sim, xml_app)
        heard = sim.ledger.heard(DESTINATION)
    assert len(heard) == MAX_HEARD_PER_CALL + 1
    assert heard[-1] == {
        "kind": "error",
        "detail": f"stopped after {MAX_HEARD_PER_CALL} entries heard",
    }


async def test_an_action_off_loopback_is_not_called(
    http: aiohttp.ClientSession, xml_app: XmlApp
) -> None:
    """A menu's action on a host other than loopback is not requested (as with every callback,
    unless callbacks_to_any_host): the `digits` row of the ledger and the error heard say so."""
    xml_app.documents["/answer"] = (
        '<Response><GetDigits action="https://example.com/menu"><Speak>Press 1</Speak>'
        "</GetDigits></Response>"
    )
    async with running_simulator(simulator_config(**answered(digit_shares={"1": 1.0}))) as sim:
        await place_call(http, sim, xml_app)
        heard = sim.ledger.heard(DESTINATION)
        digits = [c for c in sim.ledger.callbacks if c.event == "digits"]
    assert len(digits) == 1
    assert digits[0].http_status is None
    assert digits[0].error is not None
    assert digits[0].error.startswith("not sent: the simulator calls back only to loopback")
    assert heard[-1]["kind"] == "error"
    assert heard[-1]["detail"].startswith("GetDigits action https://example.com/menu: not sent")


async def test_a_seed_presses_the_same_keys_on_the_same_calls(
    http: aiohttp.ClientSession, xml_app: XmlApp
) -> None:
    """Two runs with the same seed and digit shares 1: 0.4, 2: 0.3 over 40 calls played at
    once press the same key (or none) on each destination, however the calls interleave, spread
    as the shares say (some 1s, some 2s, some none); and the keys pressed do not shift the
    request draws: a request placed after the calls played gets the same uuid as in a run where
    nobody presses."""
    xml_app.documents["/answer"] = (
        f'<Response><GetDigits action="{xml_app.url("/menu")}"><Speak>Press</Speak>'
        "</GetDigits></Response>"
    )
    xml_app.documents["/menu"] = "<Response/>"
    numbers = destinations(40)

    async def run(digit_shares: dict[str, float]) -> tuple[dict[str, tuple[str, ...]], Any]:
        config = simulator_config(**answered(digit_shares=digit_shares, seed=5))
        async with running_simulator(config) as sim:
            await place_call(http, sim, xml_app, to="<".join(numbers))
            later = await place_call(http, sim, xml_app, to="14155559999")
            ledger = sim.ledger
            pressed = {number: tuple(ledger.digits_pressed(number)) for number in numbers}
        return pressed, later["request_uuid"]

    first, second = await run({"1": 0.4, "2": 0.3}), await run({"1": 0.4, "2": 0.3})
    assert first == second
    assert set(first[0].values()) == {("1",), ("2",), ()}
    nobody_presses = await run({})
    assert set(nobody_presses[0].values()) == {()}
    assert nobody_presses[1] == first[1]
