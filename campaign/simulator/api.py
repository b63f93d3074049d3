"""The fake Plivo HTTP API: Make a call, the call look-ups, the cancel of a queued call, and the
ledger endpoint, each request checked and counted as Plivo would, with faults injected.

`PlivoSimulator` wires the parts: `checks` (what a request must satisfy), `account` (limits,
queue, calls, seeded draws), `calls` (playing calls out with callbacks) and `ledger`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from campaign.destinations import bare_number
from campaign.simulator.account import SimulatedAccount
from campaign.simulator.calls import CallPlayer, format_time
from campaign.simulator.checks import Rejected, check_credentials, check_make_call
from campaign.simulator.config import HANGUP_CAUSES, SimulatorConfig
from campaign.simulator.ledger import Ledger, RequestRecord, SimulatedCall

LEDGER_PATH = "/__simulator__/ledger"
# Restated, not imported from campaign.plivo, for the reason given in `checks`.
CDR_PAGE_MAX_LIMIT = 20


class PlivoSimulator:
    """The fake account behind Plivo's API paths. Serve it with `create_app`."""

    def __init__(
        self, config: SimulatorConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config or SimulatorConfig()
        self._clock = clock
        self._ledger = Ledger()
        self._sequence = itertools.count(1)
        self._account = SimulatedAccount(self._config, self._ledger, clock)
        self._player = CallPlayer(self._config, self._ledger, clock, keypad=self._account.keypad)

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def reconfigure(self, **changes: Any) -> None:
        """Change the behaviour mid-run (e.g. stop a fault); the ledger and queue are kept."""
        self._config = replace(self._config, **changes)
        self._account.reconfigure(self._config)
        self._player.reconfigure(self._config)

    def promote_due_calls(self) -> None:
        """Dial the queued calls whose slot has come (they enter the ledger then)."""
        self._account.promote_due_calls()

    def queued_request_uuids(self) -> list[str]:
        """The request_uuids still waiting for a CPS slot."""
        self._account.promote_due_calls()
        return self._account.queued_request_uuids()

    async def settle(self) -> None:
        """Wait until every call in flight has played out and sent its callbacks (for tests)."""
        await self._player.settle()

    # --- bookkeeping ---

    def _record(
        self,
        sequence: int,
        received_at: float,
        request: web.Request,
        http_status: int,
        destinations: int = 0,
        fault: str | None = None,
        refusal: str | None = None,
    ) -> None:
        self._ledger.requests.append(
            RequestRecord(
                sequence=sequence,
                received_at=received_at,
                method=request.method,
                path=request.path,
                http_status=http_status,
                destinations=destinations,
                fault=fault,
                refusal=refusal,
            )
        )

    def _check_account(self, request: web.Request, now: float) -> None:
        """Credentials (401), the auth id in the path (404), the API rate (429)."""
        check_credentials(
            request.headers.get("Authorization", ""),
            request.match_info.get("auth_id"),
            auth_id=self._config.auth_id,
            auth_token=self._config.auth_token,
        )
        wait_s = self._account.admit_request(now)
        if wait_s is not None:
            raise Rejected(
                429,
                "Too many requests",
                {"Retry-After": str(max(1, math.ceil(wait_s)))},
                refusal="request_rate",
            )

    def _check_concurrent_calls(self, now: float, destinations: int) -> None:
        """Plivo's concurrent-call limit (India accounts): 403 with error code 5030, the whole
        request refused, when the calls in progress (live or queued) plus its destinations
        would pass it."""
        limit = self._config.max_concurrent_calls
        if not limit:
            return
        in_progress = self._account.calls_in_progress(now)
        if in_progress + destinations > limit:
            raise Rejected(
                403,
                f"concurrent call limit reached (error code 5030): {in_progress} calls in "
                f"progress, limit {limit}",
                refusal="concurrent_calls",
            )

    def _error(self, rejected: Rejected) -> web.Response:
        return web.json_response(
            {"api_id": self._account.new_uuid(), "error": rejected.error},
            status=rejected.http_status,
            headers=rejected.headers,
        )

    # --- Make a call ---

    async def _read_make_call(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise Rejected(400, "Content-Type must be application/json")
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise Rejected(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise Rejected(400, "Request body must be a JSON object")
        return body

    async def handle_make_call(self, request: web.Request) -> web.StreamResponse:
        # The request is decided as soon as its body has come (Plivo counts calls then), and the
        # reply waits the added latency: sleeping first would let requests overtake each other.
        response = await self._make_call(request)
        if self._config.latency_s:
            await asyncio.sleep(self._config.latency_s)
        return response

    async def _make_call(self, request: web.Request) -> web.StreamResponse:
        sequence = next(self._sequence)
        now = self._clock()
        self._account.promote_due_calls()
        fault: str | None = None
        try:
            self._check_account(request, now)
            fault = self._account.draw_fault()
            if fault == "unavailable":
                raise Rejected(503, "Service unavailable")
            if fault == "rate_limited":
                retry_after = self._config.retry_after_s
                headers = {} if retry_after is None else {"Retry-After": format(retry_after, "g")}
                raise Rejected(429, "Too many requests", headers)
            checked = check_make_call(await self._read_make_call(request))
            # The calls are counted and placed when the body has come, with no await between:
            # another request may have been decided while this body was read, and a count taken
            # at the arrival time could miss calls that request's later clock saw end.
            decided_at = self._clock()
            self._check_concurrent_calls(decided_at, len(checked.destinations))
        except Rejected as rejected:
            self._record(
                sequence, now, request, rejected.http_status, fault=fault, refusal=rejected.refusal
            )
            return self._error(rejected)
        calls = self._account.place_calls(
            sequence, decided_at, checked.from_number, checked.destinations, checked.parameters
        )
        # Without callbacks a call's life is only computed, never played: cheap for benchmarks.
        if self._config.send_callbacks:
            self._player.play(calls)
        queued = any(call.queued for call in calls)
        bulk = checked.bulk
        reply: dict[str, Any] = {
            "message": f"{'calls' if bulk else 'call'} {'queued' if queued else 'fired'}",
            "request_uuid": [c.request_uuid for c in calls] if bulk else calls[0].request_uuid,
            "api_id": self._account.new_uuid(),
        }
        if checked.invalid_numbers:
            reply["invalid_numbers"] = list(checked.invalid_numbers)
        # The seed's samples answer 201 for a fired call and 200 for a queued one.
        status = 200 if queued else 201
        if fault == "error_after_placing":
            self._record(sequence, now, request, 500, len(calls), fault)
            return self._error(Rejected(500, "Internal server error"))
        if fault == "reset_after_placing":
            self._record(sequence, now, request, 0, len(calls), fault)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing more can be written; end the handler
        if fault == "hang_after_placing":
            self._record(sequence, now, request, status, len(calls), fault)
            await asyncio.sleep(self._config.hang_s)
            return web.json_response(reply, status=status)
        self._record(sequence, now, request, status, len(calls))
        return web.json_response(reply, status=status)

    # --- look-ups and cancel ---

    async def _api_request(
        self, request: web.Request, answer: Callable[[float], web.Response]
    ) -> web.Response:
        sequence = next(self._sequence)
        now = self._clock()
        if self._config.latency_s:
            await asyncio.sleep(self._config.latency_s)
        self._account.promote_due_calls()
        try:
            self._check_account(request, now)
            response = answer(now)
        except Rejected as rejected:
            self._record(sequence, now, request, rejected.http_status, refusal=rejected.refusal)
            return self._error(rejected)
        self._record(sequence, now, request, response.status)
        return response

    async def handle_list_calls(self, request: web.Request) -> web.Response:
        return await self._api_request(request, lambda now: self._list_calls(request, now))

    def _list_calls(self, request: web.Request, now: float) -> web.Response:
        query = request.query
        status = query.get("status")
        if status == "queued":
            calls = self._account.queued_request_uuids()
            return web.json_response({"api_id": self._account.new_uuid(), "calls": calls})
        candidates = self._account.unqueued_calls(query.get("to_number"))
        from_number = query.get("from_number")
        if from_number is not None:
            wanted = bare_number(from_number)
            candidates = [c for c in candidates if bare_number(c.from_number) == wanted]
        if status == "live":
            live = [
                c.call_uuid
                for c in candidates
                if not c.cancelled and c.call_uuid and c.dial_at <= now < c.end_at
            ]
            return web.json_response({"api_id": self._account.new_uuid(), "calls": live})
        if status is not None:
            raise Rejected(400, "status must be queued or live")
        return self._call_records(query, candidates, now)

    def _call_records(
        self, query: Mapping[str, str], candidates: list[SimulatedCall], now: float
    ) -> web.Response:
        try:
            limit = int(query.get("limit", "20"))
            offset = int(query.get("offset", "0"))
        except ValueError:
            raise Rejected(400, "limit and offset must be whole numbers") from None
        if not 1 <= limit <= CDR_PAGE_MAX_LIMIT or offset < 0:
            raise Rejected(400, f"limit must be between 1 and {CDR_PAGE_MAX_LIMIT}")
        after = query.get("end_time__gt")
        after_s = 0.0
        if after is not None:
            try:
                after_s = datetime.fromisoformat(after).replace(tzinfo=UTC).timestamp()
            except ValueError:
                raise Rejected(400, "end_time__gt must look like 2026-01-31 12:00:00") from None
        ended = sorted(
            (c for c in candidates if not c.cancelled and c.end_at <= now and c.end_at > after_s),
            key=lambda c: c.end_at,
            reverse=True,
        )
        page = ended[offset : offset + limit]
        meta = {
            "limit": limit,
            "offset": offset,
            "total_count": len(ended),
            "next": None,
            "previous": None,
        }
        objects = [_call_record(call) for call in page]
        return web.json_response(
            {"api_id": self._account.new_uuid(), "meta": meta, "objects": objects}
        )

    async def handle_get_call(self, request: web.Request) -> web.Response:
        return await self._api_request(request, lambda now: self._get_call(request, now))

    def _get_call(self, request: web.Request, now: float) -> web.Response:
        call_id = request.match_info["call_id"]
        status = request.query.get("status")
        if status == "queued":
            call = self._account.queued_call(call_id)
            if call is None:
                raise Rejected(404, "Call not found")
            return web.json_response(
                {
                    "api_id": self._account.new_uuid(),
                    "call_status": "queued",
                    "call_uuid": call.request_uuid,
                    "request_uuid": call.request_uuid,
                    "from": call.from_number,
                    "to": call.destination,
                    "direction": "outbound",
                }
            )
        found = self._account.call(call_id)
        live = found is not None and not found.cancelled and found.dial_at <= now < found.end_at
        if found is None or (status == "live" and not live):
            raise Rejected(404, "Call not found")
        return web.json_response(
            {
                "api_id": self._account.new_uuid(),
                "call_status": "in-progress" if live else found.outcome,
                "call_uuid": found.call_uuid,
                "request_uuid": found.request_uuid,
                "from": found.from_number,
                "to": found.destination,
                "direction": "outbound",
            }
        )

    async def handle_cancel(self, request: web.Request) -> web.Response:
        return await self._api_request(request, lambda now: self._cancel(request))

    def _cancel(self, request: web.Request) -> web.Response:
        if not self._account.cancel_queued_call(request.match_info["request_uuid"]):
            raise Rejected(404, "Request not found or no longer queued")
        return web.Response(status=204)

    async def handle_ledger(self, request: web.Request) -> web.Response:
        self._account.promote_due_calls()
        window_s = self._config.request_window_s
        if request.query.get("summary"):
            return web.json_response(self._ledger.summary(window_s))
        return web.json_response(self._ledger.to_json(window_s))

    # --- the aiohttp app ---

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        async with self._player.running():
            yield

    def create_app(self) -> web.Application:
        """The aiohttp application serving this simulator (Plivo's paths plus the ledger)."""
        app = web.Application()
        app[SIMULATOR_KEY] = self
        app.cleanup_ctx.append(self._lifecycle)
        account = "/v1/Account/{auth_id}"
        app.router.add_post(f"{account}/Call/", self.handle_make_call)
        app.router.add_get(f"{account}/Call/", self.handle_list_calls)
        app.router.add_get(f"{account}/Call/{{call_id}}/", self.handle_get_call)
        app.router.add_delete(f"{account}/Request/{{request_uuid}}/", self.handle_cancel)
        app.router.add_get(LEDGER_PATH, self.handle_ledger)
        return app


SIMULATOR_KEY = web.AppKey("simulator", PlivoSimulator)


def _call_record(call: SimulatedCall) -> dict[str, object]:
    """One ended call as Plivo's call detail records show it."""
    cause, code = HANGUP_CAUSES[call.outcome]
    answered = call.answer_at
    return {
        "call_uuid": call.call_uuid,
        "to_number": bare_number(call.destination),
        "from_number": bare_number(call.from_number),
        "call_direction": "outbound",
        "initiation_time": format_time(call.dial_at),
        "answer_time": format_time(answered),
        "end_time": format_time(call.end_at),
        "hangup_cause_name": cause,
        "hangup_cause_code": code,
        "hangup_source": "Callee",
        "call_duration": call.duration_s,
        "bill_duration": call.duration_s,
        "call_state": "ANSWER" if answered is not None else "NOANSWER",
    }
