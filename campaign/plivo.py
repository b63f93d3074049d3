"""The Make-a-call client: request building, reply parsing, failure classes, safe retries.

The one promise this module keeps: a request that Plivo may have acted on is never sent again.
Every failure is one of four classes (all `PlivoError`):

- `NotSent`: Plivo certainly did not act (nothing complete reached it, or it said 503/429).
  Retried here with full-jitter exponential back-off, bounded by attempts and total time.
- `AccountProblem`: 401/403/404. The campaign must pause; its contacts did nothing wrong.
- `RequestRejected`: 400/405/409/422. Plivo refused this request as built; the body's `error`
  is kept.
- `FateUnknown`: 500/502/504, a time-out or a dropped connection after the request was written,
  a reply that cannot be understood. Plivo may have placed the calls: never re-sent here; the
  caller reconciles through callbacks and the look-ups below.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
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

if TYPE_CHECKING:
    from campaign.config import Settings

MAX_DESTINATIONS_PER_REQUEST = 1000
DESTINATION_SEPARATOR = "<"
BODY_EXCERPT_MAX_CHARS = 300
USER_AGENT = f"campaign/{__version__}"

ACCOUNT_PROBLEM_STATUSES = frozenset({401, 403, 404})
REJECTED_STATUSES = frozenset({400, 405, 409, 422})
NOT_SENT_STATUSES = frozenset({429, 503})
CDR_PAGE_MAX_LIMIT = 20


# --- failures ------------------------------------------------------------------------------------


class PlivoError(Exception):
    """A Make-a-call or look-up request did not succeed; the subclass says what that means."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        body_excerpt: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.body_excerpt = body_excerpt
        self.attempts = attempts


class NotSent(PlivoError):
    """Plivo certainly did not act on the request; sending it again is safe."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        body_excerpt: str = "",
        attempts: int = 1,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            message, http_status=http_status, body_excerpt=body_excerpt, attempts=attempts
        )
        self.retry_after_s = retry_after_s


class RateLimited(NotSent):
    """Plivo said 429: over the account's API rate. Waits for it do not count as attempts."""


class AccountProblem(PlivoError):
    """401/403/404: credentials, account or auth id are wrong; pause the campaign."""


class RequestRejected(PlivoError):
    """400/405/409/422: Plivo refused the request as built; `error` is Plivo's reason."""

    def __init__(
        self,
        message: str,
        *,
        error: str,
        http_status: int | None = None,
        body_excerpt: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(
            message, http_status=http_status, body_excerpt=body_excerpt, attempts=attempts
        )
        self.error = error


class FateUnknown(PlivoError):
    """Plivo may or may not have placed the calls; never re-send, reconcile instead."""


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
    closed while idle is the usual source of an avoidable FateUnknown (see `_transport_failure`),
    so keeping them short lowers the odds of writing into one.
    """
    connector = aiohttp.TCPConnector(limit=connection_limit, keepalive_timeout=4.0)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


# --- replies -------------------------------------------------------------------------------------


class DestinationState(StrEnum):
    """What Plivo said about one destination of a Make-a-call request."""

    FIRED = "fired"
    QUEUED = "queued"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class DestinationResult:
    """One destination's fate; `request_uuid` is None when it could not be told positionally."""

    destination: str
    state: DestinationState
    request_uuid: str | None


@dataclass(frozen=True, slots=True)
class MakeCallResult:
    """A successful Make-a-call reply, with a result per destination in the order sent.

    `mapped` is False when the reply's uuid count does not match the accepted destinations (or an
    invalid number could not be matched to one sent): then no accepted destination carries a
    request_uuid, `request_uuids` keeps them all, and callbacks (which carry `To` and
    `RequestUUID`) must settle which contact owns which uuid.
    """

    http_status: int
    message: str
    api_id: str | None
    queued: bool
    request_uuids: tuple[str, ...]
    invalid_numbers: tuple[str, ...]
    destinations: tuple[DestinationResult, ...]
    mapped: bool
    attempts: int = 1

    @property
    def unsettled(self) -> bool:
        return not self.mapped


def _excerpt(text: str, secret: str) -> str:
    """A body or error text fit for logs: the auth token removed, cut to a sane length."""
    if secret:
        text = text.replace(secret, "***")
    if len(text) > BODY_EXCERPT_MAX_CHARS:
        return text[:BODY_EXCERPT_MAX_CHARS] + f"… ({len(text)} chars)"
    return text


def _strip_plus(destination: str) -> str:
    return destination.removeprefix("+")


def parse_make_call_reply(
    http_status: int, body: bytes, destinations: Sequence[str], *, auth_token: str = ""
) -> MakeCallResult:
    """Turn a 2xx Make-a-call reply into per-destination results; FateUnknown if unreadable.

    A 2xx means Plivo accepted the request, so anything we cannot understand here is a request
    whose calls may be ringing: FateUnknown, never a retry.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise FateUnknown(
            f"Plivo accepted the request (HTTP {http_status}) but the reply is not a JSON object",
            http_status=http_status,
            body_excerpt=_excerpt(text, auth_token),
        )
    message = str(reply.get("message", "")).strip().lower()
    if message in ("call queued", "calls queued"):
        queued = True
    elif message in ("call fired", "calls fired"):
        queued = False
    else:
        raise FateUnknown(
            f"Plivo accepted the request (HTTP {http_status}) with an unknown message {message!r}",
            http_status=http_status,
            body_excerpt=_excerpt(text, auth_token),
        )
    raw_uuids = reply.get("request_uuid")
    if isinstance(raw_uuids, str):
        request_uuids: tuple[str, ...] = (raw_uuids,) if raw_uuids else ()
    elif isinstance(raw_uuids, list):
        request_uuids = tuple(str(item) for item in raw_uuids)
    else:
        request_uuids = ()
    raw_invalid = reply.get("invalid_numbers")
    invalid_numbers = (
        tuple(str(item) for item in raw_invalid) if isinstance(raw_invalid, list) else ()
    )
    api_id = reply.get("api_id")

    # Plivo may echo an invalid number with or without its `+`: match on the bare digits.
    invalid_keys = {_strip_plus(number) for number in invalid_numbers}
    is_invalid = [_strip_plus(destination) in invalid_keys for destination in destinations]
    every_invalid_matched = invalid_keys <= {_strip_plus(d) for d in destinations}
    accepted_count = is_invalid.count(False)
    # Positional mapping only when the counts agree: the order of a bulk reply's uuids is
    # unconfirmed (FACTS.md), and guessing would give a contact someone else's call.
    mapped = every_invalid_matched and len(request_uuids) == accepted_count
    state = DestinationState.QUEUED if queued else DestinationState.FIRED
    results: list[DestinationResult] = []
    uuid_position = 0
    for destination, invalid in zip(destinations, is_invalid, strict=True):
        if invalid:
            results.append(DestinationResult(destination, DestinationState.INVALID, None))
            continue
        request_uuid = request_uuids[uuid_position] if mapped else None
        uuid_position += 1
        results.append(DestinationResult(destination, state, request_uuid))
    return MakeCallResult(
        http_status=http_status,
        message=message,
        api_id=api_id if isinstance(api_id, str) else None,
        queued=queued,
        request_uuids=request_uuids,
        invalid_numbers=invalid_numbers,
        destinations=tuple(results),
        mapped=mapped,
    )


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify_error_status(
    http_status: int,
    body: bytes,
    *,
    retry_after: str | None = None,
    auth_token: str = "",
    what: str = "Make-a-call",
) -> PlivoError:
    """The failure class of a non-2xx reply (4xx/5xx), with Plivo's `error` kept when present."""
    text = body.decode("utf-8", errors="replace")
    excerpt = _excerpt(text, auth_token)
    error = ""
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if isinstance(reply, dict):
        error = _excerpt(str(reply.get("error", "")), auth_token)
    reason = f": {error}" if error else (f": {excerpt}" if excerpt else "")
    if http_status == 429:
        return RateLimited(
            f"{what} rate-limited by Plivo (HTTP 429){reason}",
            http_status=http_status,
            body_excerpt=excerpt,
            retry_after_s=_retry_after_s(retry_after),
        )
    if http_status == 503 and not (
        (isinstance(reply, dict) and ("api_id" in reply or "error" in reply)) or retry_after
    ):
        # A 503 not from Plivo itself (no Plivo error body, no Retry-After) may come from a
        # proxy that had already passed the request on: Plivo may have placed the calls.
        return FateUnknown(
            f"{what} outcome unknown: HTTP 503 not from Plivo's API{reason}",
            http_status=http_status,
            body_excerpt=excerpt,
        )
    if http_status in NOT_SENT_STATUSES:
        return NotSent(
            f"{what} not accepted: Plivo unavailable (HTTP {http_status}){reason}",
            http_status=http_status,
            body_excerpt=excerpt,
            retry_after_s=_retry_after_s(retry_after),
        )
    if http_status in ACCOUNT_PROBLEM_STATUSES:
        return AccountProblem(
            f"{what} refused for the account (HTTP {http_status}): check PLIVO_AUTH_ID, "
            f"PLIVO_AUTH_TOKEN and the account's state{reason}",
            http_status=http_status,
            body_excerpt=excerpt,
        )
    if http_status in REJECTED_STATUSES:
        return RequestRejected(
            f"{what} rejected by Plivo (HTTP {http_status}){reason}",
            error=error or excerpt,
            http_status=http_status,
            body_excerpt=excerpt,
        )
    if 400 <= http_status < 500:
        # An unlisted 4xx: Plivo answered and refused, so the request was not acted on.
        return RequestRejected(
            f"{what} rejected by Plivo (HTTP {http_status}){reason}",
            error=error or excerpt,
            http_status=http_status,
            body_excerpt=excerpt,
        )
    # 500, 502, 504 and any other status: Plivo (or a proxy in front of it) may have acted.
    return FateUnknown(
        f"{what} outcome unknown (HTTP {http_status}){reason}",
        http_status=http_status,
        body_excerpt=excerpt,
    )


def classify_transport_failure(
    error: BaseException, request_fully_written: bool | None, *, auth_token: str = ""
) -> PlivoError:
    """NotSent when the request certainly never reached Plivo whole, else FateUnknown.

    `request_fully_written` comes from aiohttp's UploadTracker: True when the whole request
    (headers and body, which aiohttp writes in one piece for a small JSON body) was handed to
    the transport, False when that write failed or never happened, None when we cannot tell.

    Why this is the line: a server acts on a POST only after reading its whole body (its
    Content-Length frames it), so a request whose bytes never all left us cannot have been acted
    on, whatever went wrong (refused, DNS, connect time-out, a pooled keep-alive connection found
    closing before the write: aiohttp raises "Cannot write to closing transport" then). Once the
    whole request was handed over, a reset, a disconnect, a time-out or a garbled reply can come
    before or after Plivo acted, and we cannot tell which. That includes the subtle case of a
    reused keep-alive connection the server closed while idle, just as we wrote into it: the
    server almost surely dropped it unread, but "almost" is not enough to risk a double dial.
    `new_plivo_session` keeps idle connections short-lived to make that rare.
    """
    detail = _excerpt(f"{type(error).__name__}: {error}", auth_token)
    if isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        # Raised by the connector, before a connection existed: nothing was written.
        return NotSent(f"Make-a-call not sent: could not connect to Plivo ({detail})")
    if request_fully_written is False:
        return NotSent(f"Make-a-call not sent: the request was never written whole ({detail})")
    if isinstance(error, TimeoutError):
        return FateUnknown(
            f"Make-a-call outcome unknown: no reply within the time-out after sending ({detail})"
        )
    return FateUnknown(
        f"Make-a-call outcome unknown: the connection failed after sending ({detail})"
    )


# --- the client ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One completed call from Plivo's call detail records (the fields reconcile needs)."""

    call_uuid: str
    to_number: str
    from_number: str
    initiation_time: str | None
    end_time: str | None
    hangup_cause_code: int | None
    hangup_cause_name: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class QueuedCall:
    """A call Plivo still holds in its queue (over the account's CPS), from its details."""

    request_uuid: str
    call_uuid: str | None
    from_number: str
    to_number: str


@dataclass(frozen=True, slots=True)
class CallRecordPage:
    """A page of call detail records and the total Plivo reports for the query."""

    records: tuple[CallRecord, ...]
    total_count: int


def build_make_call_body(
    parameters: Mapping[str, object], destinations: Sequence[str]
) -> dict[str, object]:
    """The JSON body of a Make-a-call request: the set parameters and the `<`-joined `to`.

    `parameters` are the campaign's Make-a-call parameters, `from` and `answer_url` included;
    `None` means not set and is left out. Raises ValueError for a missing `from`/`answer_url`,
    a `to` among the parameters, `from` among the destinations, an empty batch, more than 1000
    destinations, or a duplicate (Plivo's handling of duplicates is unconfirmed, and a duplicate
    would make the uuid mapping ambiguous).
    """
    if not destinations:
        raise ValueError("a Make-a-call request needs at least one destination")
    if len(destinations) > MAX_DESTINATIONS_PER_REQUEST:
        raise ValueError(
            f"a Make-a-call request takes at most {MAX_DESTINATIONS_PER_REQUEST} destinations, "
            f"got {len(destinations)}"
        )
    if len(set(destinations)) != len(destinations):
        duplicates = sorted(d for d, count in Counter(destinations).items() if count > 1)
        raise ValueError(f"duplicate destinations in one request: {', '.join(duplicates[:5])}")
    for destination in destinations:
        if not destination or DESTINATION_SEPARATOR in destination:
            raise ValueError(f"invalid destination {destination!r}")
    if "to" in parameters:
        raise ValueError("pass destinations separately, not as a `to` parameter")
    body: dict[str, object] = {}
    for name, value in parameters.items():
        if value is None:
            continue
        # Plivo's examples send every value as text ("true", "300"); so do we.
        if isinstance(value, bool):
            body[name] = "true" if value else "false"
        elif isinstance(value, int | float):
            body[name] = str(value)
        else:
            body[name] = value
    for required in ("from", "answer_url"):
        if not body.get(required):
            raise ValueError(f"a Make-a-call request needs `{required}`")
    if body["from"] in destinations:
        raise ValueError("`from` must not be one of the destinations")
    body["to"] = DESTINATION_SEPARATOR.join(destinations)
    return body


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
                        f"({_excerpt(f'{type(error).__name__}: {error}', token)})",
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
                f"{what} failed: {_excerpt(f'{type(error).__name__}: {error}', token)}"
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
                body_excerpt=_excerpt(body.decode("utf-8", errors="replace"), token),
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
        return QueuedCall(
            request_uuid=str(reply.get("request_uuid") or request_uuid),
            call_uuid=_optional_text(reply.get("call_uuid")),
            from_number=str(reply.get("from") or ""),
            to_number=str(reply.get("to") or ""),
        )

    async def live_calls(self, to_number: str | None = None) -> list[str]:
        """The call_uuids of calls in progress, optionally only those to `to_number`."""
        query = {"status": "live"}
        if to_number is not None:
            query["to_number"] = to_number
        reply = await self._get_json("/Call/", query, "live-calls look-up")
        return [str(item) for item in reply.get("calls") or []]

    async def call_records(
        self,
        to_number: str,
        end_time_after: datetime,
        *,
        limit: int = CDR_PAGE_MAX_LIMIT,
        offset: int = 0,
    ) -> CallRecordPage:
        """Completed calls to `to_number` that ended after `end_time_after` (one page, ≤ 20)."""
        if not 1 <= limit <= CDR_PAGE_MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {CDR_PAGE_MAX_LIMIT}")
        when = end_time_after.astimezone(UTC) if end_time_after.tzinfo else end_time_after
        query = {
            "to_number": to_number,
            "end_time__gt": when.strftime("%Y-%m-%d %H:%M:%S"),
            "limit": str(limit),
            "offset": str(offset),
        }
        reply = await self._get_json("/Call/", query, "call-records look-up")
        records = []
        for item in reply.get("objects") or []:
            if not isinstance(item, dict):
                continue
            cause = item.get("hangup_cause_code")
            records.append(
                CallRecord(
                    call_uuid=str(item.get("call_uuid", "")),
                    to_number=str(item.get("to_number", "")),
                    from_number=str(item.get("from_number", "")),
                    initiation_time=_optional_text(item.get("initiation_time")),
                    end_time=_optional_text(item.get("end_time")),
                    hangup_cause_code=int(cause)
                    if isinstance(cause, int | str) and str(cause).isdigit()
                    else None,
                    hangup_cause_name=_optional_text(item.get("hangup_cause_name")),
                    raw=item,
                )
            )
        meta = reply.get("meta")
        total = meta.get("total_count") if isinstance(meta, dict) else None
        return CallRecordPage(
            records=tuple(records),
            total_count=int(total) if isinstance(total, int) else len(records),
        )

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


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


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
