"""`campaign simulator` run as a user runs it: its options reach the fake Plivo it serves."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from plivo_fixtures import ANSWER_URL, AUTH_ID, AUTH_TOKEN, FROM_NUMBER
from worker_fixtures import free_port

pytestmark = pytest.mark.slow


def simulator_env() -> dict[str, str]:
    """This machine's environment with the test credentials and nothing of campaign's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "PLIVO_"))}
    # Unbuffered, so the line announcing the simulator can be read while it runs.
    return env | {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def serve_simulator(campaign_command: list[str]) -> Iterator[tuple[str, str]]:
    """`campaign simulator` with 2 concurrent calls allowed and calls of 30 to 40 s of talk,
    until the test ends (then SIGINT); its base URL and the line it announced itself with."""
    port = free_port()
    options = ["--port", str(port), "--max-concurrent-calls", "2", "--no-callbacks"]
    options += ["--completed", "1", "--busy", "0", "--no-answer", "0", "--failed", "0"]
    options += ["--timeout", "0", "--talk-s", "30", "--talk-s-max", "40", "--seed", "5"]
    base = f"http://127.0.0.1:{port}"
    # As a context manager the process closes its pipes (and is waited for) on the way out.
    with subprocess.Popen(
        [*campaign_command, "simulator", *options],
        env=simulator_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            for _ in range(150):
                try:
                    with urllib.request.urlopen(f"{base}/__simulator__/ledger", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            else:
                raise AssertionError("campaign simulator did not come up")
            assert process.stdout is not None
            yield base, process.stdout.readline()
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=20)


def make_call(base: str, to: str) -> tuple[int, dict[str, object]]:
    """POST a Make-a-call request as Plivo's users do; the status and the JSON reply."""
    credentials = base64.b64encode(f"{AUTH_ID}:{AUTH_TOKEN}".encode()).decode()
    request = urllib.request.Request(
        f"{base}/v1/Account/{AUTH_ID}/Call/",
        data=json.dumps({"from": FROM_NUMBER, "to": to, "answer_url": ANSWER_URL}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            reply: dict[str, object] = json.loads(response.read())
            return response.status, reply
    except urllib.error.HTTPError as error:
        with error:  # the error holds the reply, and with it the connection
            refused: dict[str, object] = json.loads(error.read())
            return error.code, refused


def test_the_concurrency_and_talk_time_options_reach_the_simulator(
    serve_simulator: tuple[str, str],
) -> None:
    """`--max-concurrent-calls 2`: three destinations at once are refused with 403 and 5030,
    two are placed, one more is refused; `--talk-s 30 --talk-s-max 40`: the placed calls end
    30 to 40 s after they are answered; the served summary counts it all."""
    base, announced = serve_simulator
    assert "at most 2 concurrent calls" in announced
    status, refused = make_call(base, "14155550001<14155550002<14155550003")
    assert status == 403
    assert "5030" in str(refused["error"])
    status, _ = make_call(base, "14155550001<14155550002")
    assert status == 201
    status, _ = make_call(base, "14155550003")
    assert status == 403
    with urllib.request.urlopen(f"{base}/__simulator__/ledger", timeout=5) as response:
        ledger = json.loads(response.read())
    assert (ledger["concurrency_refusals"], ledger["max_live_calls"]) == (2, 2)
    # Ringing and answering take 0.005 s each by default; the rest is talk.
    talk = [d["ended_at"] - d["dialled_at"] - 0.01 for d in ledger["dials"]]
    assert len(talk) == 2
    assert all(30.0 <= seconds <= 40.0 for seconds in talk)


def test_a_talk_s_max_below_talk_s_is_refused_with_one_line(campaign_command: list[str]) -> None:
    """`--talk-s-max` under `--talk-s` cannot be drawn from: one line naming it, exit 2."""
    options = ["--port", str(free_port()), "--talk-s", "5", "--talk-s-max", "1"]
    result = subprocess.run(
        [*campaign_command, "simulator", *options],
        env=simulator_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("campaign: error: simulator: talk_s_max (1) must not be below")


async def test_the_digits_option_reaches_the_simulator(campaign_command: list[str]) -> None:
    """`--digits 1=1`: the served simulator fetches the answer XML from the app on loopback,
    its callee presses 1 at the menu, the action gets Digits=1 and its document is played; the
    served ledger shows all of it under the dial's `heard`."""
    actions: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        menu = request.url.with_path("/menu").with_query(None)
        document = f'<Response><GetDigits action="{menu}"><Speak>Press 1</Speak></GetDigits>'
        return web.Response(text=document + "</Response>", content_type="application/xml")

    async def menu(request: web.Request) -> web.Response:
        actions.append(str((await request.post())["Digits"]))
        return web.Response(text="<Response><Speak>Thank you</Speak></Response>")

    app = web.Application()
    app.router.add_post("/answer", answer)
    app.router.add_post("/menu", menu)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    options = ["--port", str(port), "--digits", "1=1", "--completed", "1", "--busy", "0"]
    options += ["--no-answer", "0", "--failed", "0", "--timeout", "0"]
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        process = await asyncio.create_subprocess_exec(
            *campaign_command,
            "simulator",
            *options,
            env=simulator_env(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            ledger = await _ledger_once_heard(http, base, str(server.make_url("/answer")))
        finally:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), 20)
    assert actions == ["1"]
    assert [entry["kind"] for entry in ledger["dials"][0]["heard"]] == ["speak", "digits", "speak"]
    assert ledger["dials"][0]["heard"][1] == {"kind": "digits", "digits": "1", "valid": True}
    assert ledger["dials"][0]["heard"][2]["text"] == "Thank you"


async def _ledger_once_heard(http: aiohttp.ClientSession, base: str, answer_url: str) -> Any:
    """Wait for the simulator at `base`, place one call answered by `answer_url`, and return
    the served ledger once the call has heard three entries."""
    for _ in range(150):
        try:
            async with http.get(f"{base}/__simulator__/ledger"):
                break
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("campaign simulator did not come up")
    body = {"from": FROM_NUMBER, "to": "14155550001", "answer_url": answer_url}
    headers = {"Authorization": aiohttp.encode_basic_auth(AUTH_ID, AUTH_TOKEN)}
    async with http.post(f"{base}/v1/Account/{AUTH_ID}/Call/", json=body, headers=headers) as r:
        assert r.status == 201
    for _ in range(100):
        async with http.get(f"{base}/__simulator__/ledger") as response:
            ledger = await response.json()
        if len(ledger["dials"][0]["heard"]) >= 3:
            return ledger
        await asyncio.sleep(0.05)
    raise AssertionError(f"the call did not play its XML: {ledger['dials']}")


@pytest.mark.parametrize(
    ("digits", "line"),
    [
        ("1:0.6", "simulator: --digits: '1:0.6' is not KEY=SHARE"),
        ("1=lots", "simulator: --digits: the share of '1' is not a number: 'lots'"),
        ("x=0.5", "simulator: digit_shares: not a phone key (one of 0-9, * or #): 'x'"),
        ("1=0.6,2=0.6", "simulator: digit_shares must add up to at most 1"),
    ],
    ids=["no-equals", "not-a-number", "not-a-key", "over-1"],
)
def test_a_bad_digits_option_is_refused_with_one_line(
    campaign_command: list[str], digits: str, line: str
) -> None:
    """A malformed `--digits` (no `=`, a share that is not a number, a key that is not a phone
    key, shares past 1) ends with one line naming the fault, exit 2, and serves nothing."""
    result = subprocess.run(
        [*campaign_command, "simulator", "--port", str(free_port()), "--digits", digits],
        env=simulator_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"campaign: error: {line}")
    assert result.stdout == ""
