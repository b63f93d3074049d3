"""The client: Make-a-call with safe retries, and the look-ups and cancel reconcile needs.

Only `NotSent` is retried (full-jitter exponential back-off, bounded by attempts and total
time); a `FateUnknown` is never sent again (see the package docstring).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from campaign import __version__
from campaign.plivo.errors import (
    AccountProblem,
    FateUnknown,
    NotSent,
    PlivoError,
    RateLimited,
    classify_error_status,
    classify_transport_failure,
    redacted_excerpt,
)
from campaign.plivo.replies import (
    CDR_PAGE_MAX_LIMIT,
    CallRecordPage,
    MakeCallResult,
    QueuedCall,
    build_make_call_body,
    call_record_page_from_reply,
    parse_make_call_reply,
    queued_call_from_reply,
)

if TYPE_CHECKING:
    from campaign.config import Settings

USER_AGENT = f"campaign/{__version__}"


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlivoClientConfig:
    """What the client needs from Settings: where, who, and how long to wait and retry."""

    auth_id: str
    auth_token: str = field(repr=False)
    api_url: str = "https://api.plivo.com"
    connect_timeout_s: float = 5.0
    timeout_s: float = 30.0
    retry_attempts: int = 5
    retry_budget_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PlivoClientConfig:
        """Build from Settings; missing credentials raise ValueError naming the variables."""
        if settings.plivo_auth_id is None or settings.plivo_auth_token is None:
            raise ValueError(
                "Plivo credentials are not set: set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN"
            )
        return cls(
            auth_id=settings.plivo_auth_id,
            auth_token=settings.plivo_auth_token.get_secret_value(),
            api_url=settings.plivo_api_url.rstrip("/"),
            connect_timeout_s=settings.plivo_connect_timeout_s,
            timeout_s=settings.plivo_timeout_s,
            retry_attempts=settings.plivo_retry_attempts,
            retry_budget_s=settings.plivo_retry_budget_s,
            backoff_initial_s=settings.plivo_backoff_initial_s,
            backoff_max_s=settings.plivo_backoff_max_s,
        )

    @property
    def account_url(self) -> str:
        return f"{self.api_url}/v1/Account/{self.auth_id}"


def new_plivo_session(*, connection_limit: int = 100) -> aiohttp.ClientSession:
    """A ClientSession suited to the client; the caller owns it and closes it.

    Idle keep-alive connections are dropped after a few seconds: a connection the server has
    closed while idle is the usual source of an avoidable FateUnknown (see
    `classify_transport_failure`), so keeping them short lowers the odds of writing into one.
    """
    connector = aiohttp.TCPConnector(limit=connection_limit, keepalive_timeout=4.0)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


# --- the client ----------------------------------------------------------------------------------


class PlivoClient:
    """Make-a-call and the look-ups reconcile needs, over one shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: PlivoClientConfig,
    ) -> None:
        self._session = session
        self._config = config
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout_s, connect=config.connect_timeout_s
        )
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Authorization": aiohttp.encode_basic_auth(config.auth_id, config.auth_token),
        }

    @property
    def config(self) -> PlivoClientConfig:
        return self._config

    async def make_call(
        self,
        parameters: Mapping[str, object],
        destinations: Sequence[str],
        *,
        before_retry: Callable[[], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> MakeCallResult:
        """Call 1 to 1000 unique destinations sharing `parameters` (`from`, `answer_url`, …).

        Returns the parsed reply; raises NotSent (after retries ran out), AccountProblem,
        RequestRejected or FateUnknown. A FateUnknown is never retried. `before_retry` is
        awaited before each retry (the worker waits there for new rate-limit slots, and may
        raise to give up); `sleep` waits out each back-off (default asyncio.sleep; the worker's
        returns early when it has reason to give up).
        """
        body = build_make_call_body(parameters, destinations)
        payload = json.dumps(body, separators=(",", ":")).encode()
        attempts_counted = 0

        def should_stop(state: RetryCallState) -> bool:
            # 429 waits do not count as attempts, only the total time bounds them.
            elapsed_s = state.seconds_since_start or 0.0
            if elapsed_s + state.upcoming_sleep >= self._config.retry_budget_s:
                return True
            return attempts_counted >= self._config.retry_attempts

        # Full jitter (AWS's name): uniform over [0, min(max, initial * 2^attempt)], so many
        # workers hitting the same outage do not retry in lockstep.
        backoff = wait_random_exponential(
            multiplier=self._config.backoff_initial_s, max=self._config.backoff_max_s
        )

        def wait_s(state: RetryCallState) -> float:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            if isinstance(error, NotSent) and error.retry_after_s is not None:
                return error.retry_after_s
            return backoff(state)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(NotSent),
            stop=should_stop,
            wait=wait_s,
            reraise=True,
            sleep=sleep or asyncio.sleep,
        )
        attempt_total = 0
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt_total > 0 and before_retry is not None:
                        await before_retry()
                    attempt_total += 1
                    try:
                        result = await self._post_make_call(payload, destinations)
                    except RateLimited:
                        raise
                    except NotSent:
                        attempts_counted += 1
                        raise
                    return _with_attempts(result, attempt_total)
        except PlivoError as error:
            error.attempts = attempt_total
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _post_make_call(self, payload: bytes, destinations: Sequence[str]) -> MakeCallResult:
        url = f"{self._config.account_url}/Call/"
        tracker = aiohttp.UploadTracker()
        token = self._config.auth_token
        try:
            async with self._session.post(
                url,
                data=payload,
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
                upload_tracker=tracker,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                try:
                    body = await response.read()
                except (aiohttp.ClientError, TimeoutError) as error:
                    # The status line arrived, so Plivo read the request: whatever it did stands.
                    raise FateUnknown(
                        "Make-a-call outcome unknown: the reply was cut off "
                        f"({redacted_excerpt(f'{type(error).__name__}: {error}', token)})",
                        http_status=status,
                    ) from None
        except PlivoError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise classify_transport_failure(
                error, _fully_written(tracker), auth_token=token
            ) from None
        if 200 <= status < 300:
            return parse_make_call_reply(status, body, destinations, auth_token=token)
        raise classify_error_status(status, body, retry_after=retry_after, auth_token=token)

    # --- look-ups, for reconciling a FateUnknown ---

    async def _look_up(
        self, method: str, path: str, query: Mapping[str, str], what: str
    ) -> tuple[int, bytes, str | None]:
        """A request that changes no call (a look-up, a cancel): (status, body, Retry-After).

        Any transport failure is NotSent: sending it again is harmless.
        """
        token = self._config.auth_token
        try:
            async with self._session.request(
                method,
                f"{self._config.account_url}{path}",
                params=dict(query),
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                return response.status, await response.read(), response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise NotSent(
                f"{what} failed: {redacted_excerpt(f'{type(error).__name__}: {error}', token)}"
            ) from None

    async def _get_json(self, path: str, query: Mapping[str, str], what: str) -> dict[str, Any]:
        token = self._config.auth_token
        status, body, retry_after = await self._look_up("GET", path, query, what)
        if not 200 <= status < 300:
            raise classify_error_status(
                status, body, retry_after=retry_after, auth_token=token, what=what
            )
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise NotSent(
                f"{what}: the reply is not a JSON object",
                http_status=status,
                body_excerpt=redacted_excerpt(body.decode("utf-8", errors="replace"), token),
            )
        return reply

    async def queued_calls(self) -> list[str]:
        """The request_uuids Plivo still holds in its queue (over the account's CPS)."""
        reply = await self._get_json("/Call/", {"status": "queued"}, "queued-calls look-up")
        return [str(item) for item in reply.get("calls") or []]

    async def queued_call(self, request_uuid: str) -> QueuedCall | None:
        """One queued call's details (its `to` and `from`); None once it is no longer queued.

        Plivo answers 404 for a call that left the queue (dialled or cancelled); a wrong auth id
        would also give 404, but then the queued-calls list, read first, has failed already.
        """
        path = f"/Call/{quote(request_uuid, safe='')}/"
        try:
            reply = await self._get_json(path, {"status": "queued"}, "queued-call look-up")
        except AccountProblem as error:
            if error.http_status == 404:
                return None
            raise
        return queued_call_from_reply(reply, request_uuid)

    async def live_calls(
        self, to_number: str | None = None, from_number: str | None = None
    ) -> list[str]:
        """The call_uuids of calls in progress, optionally only those to `to_number` and from
        `from_number` (numbers as Plivo writes them, without `+`)."""
        query = {"status": "live"}
        if to_number is not None:
            query["to_number"] = to_number
        if from_number is not None:
            query["from_number"] = from_number
        reply = await self._get_json("/Call/", query, "live-calls look-up")
        return [str(item) for item in reply.get("calls") or []]

    async def call_records(
        self,
        to_number: str,
        end_time_after: datetime,
        *,
        limit: int = CDR_PAGE_MAX_LIMIT,
        offset: int = 0,
        from_number: str | None = None,
    ) -> CallRecordPage:
        """Completed calls to `to_number` (and from `from_number`) that ended after
        `end_time_after` (one page, ≤ 20)."""
        if not 1 <= limit <= CDR_PAGE_MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {CDR_PAGE_MAX_LIMIT}")
        when = end_time_after.astimezone(UTC) if end_time_after.tzinfo else end_time_after
        query = {
            "to_number": to_number,
            "end_time__gt": when.strftime("%Y-%m-%d %H:%M:%S"),
            "limit": str(limit),
            "offset": str(offset),
        }
        if from_number is not None:
            query["from_number"] = from_number
        reply = await self._get_json("/Call/", query, "call-records look-up")
        return call_record_page_from_reply(reply)

    async def cancel_queued_call(self, request_uuid: str) -> bool:
        """Cancel a call Plivo still holds in its queue; False when it is no longer queued."""
        what = "cancel of a queued call"
        # Cancelling twice is harmless (the second says 404), so a retry is safe.
        status, body, retry_after = await self._look_up(
            "DELETE", f"/Request/{request_uuid}/", {}, what
        )
        if 200 <= status < 300:
            return True
        if status == 404:
            # Plivo answers 404 both for "no longer queued" and for a wrong auth id; the
            # Make-a-call path would have caught a wrong auth id long before a cancel.
            return False
        raise classify_error_status(
            status, body, retry_after=retry_after, auth_token=self._config.auth_token, what=what
        )


def _fully_written(tracker: aiohttp.UploadTracker) -> bool | None:
    """True when the whole request body went to the transport, False when it did not."""
    outcome = tracker.upload_complete
    if not outcome.done():
        return None
    if outcome.cancelled():
        return False
    return outcome.exception() is None


def _with_attempts(result: MakeCallResult, attempts: int) -> MakeCallResult:
    return result if result.attempts == attempts else replace(result, attempts=attempts)
