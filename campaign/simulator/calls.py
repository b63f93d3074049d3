"""Call playback: each placed call played out on the clock (ring, answer, hangup), sending the
V3-signed callbacks its request asked for.

A call's timing is decided when it is placed (see `SimulatedCall`); playing it only waits for
those moments and tells the callback URLs. This is the seam where a call's life grows: walking
the answer XML and keypresses belong in `CallPlayer`, not in the API. The limit on concurrent
calls does not: it is the account's (`SimulatedAccount.calls_in_progress`), decided when a
request arrives from the calls' computed times, so it holds with callbacks off too.
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
from campaign.simulator.config import HANGUP_CAUSES, SimulatorConfig
from campaign.simulator.ledger import CallbackRecord, Ledger, SimulatedCall

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


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
    playing are cancelled.
    """

    def __init__(self, config: SimulatorConfig, ledger: Ledger, clock: Callable[[], float]) -> None:
        self._config = config
        self._ledger = ledger
        self._clock = clock
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
        """Ring, answer (fetch answer_url) and hang up, sending the callbacks that are set."""
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
            await self._callback(
                call, "answer", {**common, "Event": "StartApp", "CallStatus": "in-progress"}
            )
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

    async def _sleep_until(self, at: float) -> None:
        delay_s = at - self._clock()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def _callback(self, call: SimulatedCall, event: str, parameters: dict[str, str]) -> None:
        """Send one callback as Plivo does: a status callback is retried while its URL does not
        accept it.

        A 5xx, a time-out or a refused connection is tried again (`callback_retries` more
        times), after the answer's Retry-After or `callback_retry_s`; a 2xx, 3xx or 4xx is
        final. The answer_url fetch is tried once (a call cannot wait for it). Every try is a
        row of the ledger, each with its own nonce and signature.
        """
        url = str(call.parameters.get(f"{event}_url"))
        method = str(call.parameters.get(f"{event}_method") or "POST").upper()
        retries = 0 if event == "answer" else self._config.callback_retries
        for tries_left in range(retries, -1, -1):
            retry_after_s = await self._send_callback(call, event, url, method, parameters)
            if retry_after_s is None or not tries_left or self._session is None:
                return
            await asyncio.sleep(retry_after_s)

    async def _send_callback(
        self, call: SimulatedCall, event: str, url: str, method: str, parameters: dict[str, str]
    ) -> float | None:
        """One try of a callback, written to the ledger; how long to wait before trying again,
        or None when it must not be tried again."""
        session = self._session
        if session is None:
            return None
        nonce = new_nonce()
        signature = compute_signature_v3(self._config.auth_token, url, nonce, parameters, method)
        headers = {SIGNATURE_V3_HEADER: signature, SIGNATURE_V3_NONCE_HEADER: nonce}
        http_status: int | None = None
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
                await response.read()
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
        return retry_after_s


def _retry_after_s(header: str | None, default_s: float) -> float:
    """The seconds a Retry-After header asks for (capped at a minute), else `default_s`."""
    try:
        seconds = float(header) if header is not None else default_s
    except ValueError:
        return default_s
    return min(max(seconds, 0.0), 60.0) if seconds == seconds else default_s
