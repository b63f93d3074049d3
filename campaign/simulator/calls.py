"""Call playback: each placed call played out on the clock (ring, answer, hangup), sending the
V3-signed callbacks its request asked for and playing the Plivo XML its answer_url returns.

A call's timing is decided when it is placed (see `SimulatedCall`); playing it only waits for
those moments and tells the callback URLs. At the answer, the answer_url's document is walked
(`callflow`: what the callee hears, the keys it presses, the GetDigits actions and redirects it
leads to) before the machine-detection callback; the hangup still comes at the call's computed
end, or as soon as the walk is over if that is later. The limit on concurrent calls is not
decided here: it is the account's (`SimulatedAccount.calls_in_progress`), decided when a request
arrives from the calls' computed times, so it holds with callbacks off too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp

from campaign.destinations import bare_number
from campaign.signature import (
    SIGNATURE_V3_HEADER,
    SIGNATURE_V3_NONCE_HEADER,
    compute_signature_v3,
    new_nonce,
)
from campaign.simulator.callflow import CallFlow, DocumentRequest, Fetched
from campaign.simulator.config import HANGUP_CAUSES, SimulatorConfig
from campaign.simulator.ledger import CallbackRecord, Ledger, SimulatedCall

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Requests for a call's XML: tried once (a call cannot wait for them), their body walked.
DOCUMENT_EVENTS = frozenset({"answer", "digits", "redirect"})


class _CallbackRefused(Exception):
    """A callback the simulator will not send."""


def is_loopback_url(url: str) -> bool:
    """Whether a URL's host is this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def format_time(epoch_s: float | None) -> str | None:
    """A moment as Plivo writes it in callbacks and call records (UTC, to the second)."""
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).strftime(TIME_FORMAT)


def call_fields(call: SimulatedCall) -> dict[str, str]:
    """The fields every callback of a call carries, its `sip_headers` as `X-PH-` fields."""
    fields = {
        "From": bare_number(call.from_number),
        "To": bare_number(call.destination),
        "RequestUUID": call.request_uuid,
        "ALegRequestUUID": call.request_uuid,
        "CallUUID": call.call_uuid,
        "ALegUUID": call.call_uuid,
        "Direction": "outbound",
    }
    sip_headers = call.parameters.get("sip_headers")
    if isinstance(sip_headers, str):
        for pair in sip_headers.split(","):
            key, _, value = pair.partition("=")
            fields[f"X-PH-{key}"] = value
    return fields


def hangup_fields(call: SimulatedCall, common: dict[str, str]) -> dict[str, str]:
    """The hangup callback: the outcome, its cause, the times and durations."""
    cause, code = HANGUP_CAUSES[call.outcome]
    answered = call.answer_at
    duration = str(call.duration_s)
    return {
        **common,
        "Event": "Hangup",
        "CallStatus": call.outcome,
        "StartTime": format_time(call.dial_at) or "",
        "AnswerTime": format_time(answered) or "",
        "EndTime": format_time(call.end_at) or "",
        "HangupCause": cause,
        "HangupCauseName": cause,
        "HangupCauseCode": str(code),
        "HangupSource": "Callee",
        "Duration": duration,
        "BillDuration": duration,
        **(
            {"Machine": "true" if call.machine else "false"}
            if call.parameters.get("machine_detection") and answered is not None
            else {}
        ),
    }


class CallPlayer:
    """Plays placed calls out, one task each, and records every callback in the ledger.

    `running()` holds the HTTP session the callbacks go out on; when it ends, calls still
    playing are cancelled. `keypad` gives each call's callee its keypresses (the account's
    seeded draws, see `SimulatedAccount.keypad`).
    """

    def __init__(
        self,
        config: SimulatorConfig,
        ledger: Ledger,
        clock: Callable[[], float],
        *,
        keypad: Callable[[SimulatedCall], Callable[[], str | None]],
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._clock = clock
        self._keypad = keypad
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def reconfigure(self, config: SimulatorConfig) -> None:
        self._config = config

    def play(self, calls: Iterable[SimulatedCall]) -> None:
        """Start playing each call (returns at once; `settle` waits for them)."""
        for call in calls:
            task = asyncio.create_task(self._play(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait until every call in flight has played out and sent its callbacks (for tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the callbacks' session; on the way out, stop the calls still playing."""
        self._session = aiohttp.ClientSession()
        try:
            yield
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self._session.close()
            self._session = None

    async def _play(self, call: SimulatedCall) -> None:
        """Ring, answer (walk answer_url's XML) and hang up, sending the callbacks that are set."""
        parameters = call.parameters
        await self._sleep_until(call.dial_at)
        if call.cancelled:
            return
        await self._sleep_until(call.ring_at)
        common = call_fields(call)
        if parameters.get("ring_url"):
            await self._callback(call, "ring", {**common, "Event": "Ring", "CallStatus": "ringing"})
        answered = call.answer_at
        if answered is not None:
            await self._sleep_until(answered)
            await self._answer(call, common)
            if parameters.get("machine_detection") and parameters.get("machine_detection_url"):
                await self._callback(
                    call,
                    "machine_detection",
                    {
                        **common,
                        "Event": "MachineDetection",
                        "CallStatus": "in-progress",
                        "Machine": "true" if call.machine else "false",
                    },
                )
        await self._sleep_until(call.end_at)
        if parameters.get("hangup_url"):
            await self._callback(call, "hangup", hangup_fields(call, common))

    async def _answer(self, call: SimulatedCall, common: dict[str, str]) -> None:
        """Fetch answer_url as Plivo does and walk the XML it returns (see `callflow`)."""
        parameters = {**common, "Event": "StartApp", "CallStatus": "in-progress"}
        if call.parameters.get("machine_detection"):
            parameters["Machine"] = "true" if call.machine else "false"

        async def fetch(request: DocumentRequest) -> Fetched:
            return await self._callback(
                call, request.event, dict(request.parameters), request.url, request.method
            )

        answer = DocumentRequest(
            "answer",
            str(call.parameters.get("answer_url")),
            str(call.parameters.get("answer_method") or "POST").upper(),
            parameters,
        )
        await CallFlow(call, fetch, self._keypad(call), common).run(answer)

    async def _sleep_until(self, at: float) -> None:
        delay_s = at - self._clock()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def _callback(
        self,
        call: SimulatedCall,
        event: str,
        parameters: dict[str, str],
        url: str | None = None,
        method: str | None = None,
    ) -> Fetched:
        """Send one callback as Plivo does: a status callback is retried while its URL does not
        accept it; the last try's answer.

        The URL and method are the request's `{event}_url` and `{event}_method` unless given (a
        GetDigits action, a Redirect). A 5xx, a time-out or a refused connection is tried again
        (`callback_retries` more times), after the answer's Retry-After or `callback_retry_s`;
        a 2xx, 3xx or 4xx is final. A request for the call's XML (DOCUMENT_EVENTS) is tried
        once (a call cannot wait for it). Every try is a row of the ledger, each with its own
        nonce and signature.
        """
        url = str(call.parameters.get(f"{event}_url")) if url is None else url
        if method is None:
            method = str(call.parameters.get(f"{event}_method") or "POST")
        method = method.upper()
        tries_left = 0 if event in DOCUMENT_EVENTS else self._config.callback_retries
        while True:
            fetched, retry_after_s = await self._send_callback(call, event, url, method, parameters)
            if retry_after_s is None or not tries_left or self._session is None:
                return fetched
            tries_left -= 1
            await asyncio.sleep(retry_after_s)

    async def _send_callback(
        self, call: SimulatedCall, event: str, url: str, method: str, parameters: dict[str, str]
    ) -> tuple[Fetched, float | None]:
        """One try of a callback, written to the ledger: what it got, and how long to wait
        before trying again (None when it must not be tried again)."""
        session = self._session
        if session is None:
            return Fetched(None, b"", "not sent: the simulator is stopping"), None
        nonce = new_nonce()
        signature = compute_signature_v3(self._config.auth_token, url, nonce, parameters, method)
        headers = {SIGNATURE_V3_HEADER: signature, SIGNATURE_V3_NONCE_HEADER: nonce}
        http_status: int | None = None
        body = b""
        error: str | None = None
        retry_after_s: float | None = None
        try:
            if not self._config.callbacks_to_any_host and not is_loopback_url(url):
                # A fake Plivo must not send requests into the world on a user's behalf.
                raise _CallbackRefused(
                    "not sent: the simulator calls back only to loopback hosts "
                    "(--callbacks-to-any-host allows others)"
                )
            timeout = aiohttp.ClientTimeout(total=self._config.callback_timeout_s)
            if method == "GET":
                request = session.get(url, params=parameters, headers=headers, timeout=timeout)
            else:
                request = session.post(url, data=parameters, headers=headers, timeout=timeout)
            async with request as response:
                body = await response.read()
                http_status = response.status
                if http_status >= 500:
                    retry_after_s = _retry_after_s(
                        response.headers.get("Retry-After"), self._config.callback_retry_s
                    )
        except _CallbackRefused as refused:
            error = str(refused)
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
            retry_after_s = self._config.callback_retry_s
        self._ledger.callbacks.append(
            CallbackRecord(
                event=event,
                url=url,
                method=method,
                call_uuid=call.call_uuid,
                request_uuid=call.request_uuid,
                sent_at=self._clock(),
                http_status=http_status,
                error=error,
            )
        )
        return Fetched(http_status, body, error), retry_after_s


def _retry_after_s(header: str | None, default_s: float) -> float:
    """The seconds a Retry-After header asks for (capped at a minute), else `default_s`."""
    try:
        seconds = float(header) if header is not None else default_s
    except ValueError:
        return default_s
    return min(max(seconds, 0.0), 60.0) if seconds == seconds else default_s
