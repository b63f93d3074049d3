"""The four failure classes of a Plivo request, and how a reply or a transport failure maps to one.

Every failure is a `PlivoError`; its class says whether Plivo may have acted (see the package
docstring). `ConcurrencyLimited` (a 4xx naming Plivo's concurrent-call limit, error 5030) is a
refusal that placed no call and is no fault of the account or the request. The mapping lives
here, in one place, so the client, the worker and reconcile agree on what a status or a dropped
connection means.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

BODY_EXCERPT_MAX_CHARS = 300

ACCOUNT_PROBLEM_STATUSES = frozenset({401, 403, 404})
REJECTED_STATUSES = frozenset({400, 405, 409, 422})
NOT_SENT_STATUSES = frozenset({429, 503})


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


class ConcurrencyLimited(PlivoError):
    """Plivo refused the request because the account's concurrent calls are at its limit (India:
    403 with error code 5030): no call was placed. Not retried here: sending again is safe, but
    only once a call has ended."""


class FateUnknown(PlivoError):
    """Plivo may or may not have placed the calls; never re-send, reconcile instead."""


def redacted_excerpt(text: str, secret: str) -> str:
    """A body or error text fit for logs: the auth token removed, cut to a sane length."""
    if secret:
        text = text.replace(secret, "***")
    if len(text) > BODY_EXCERPT_MAX_CHARS:
        return text[:BODY_EXCERPT_MAX_CHARS] + f"… ({len(text)} chars)"
    return text


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
    excerpt = redacted_excerpt(text, auth_token)
    error = ""
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if isinstance(reply, dict):
        error = redacted_excerpt(str(reply.get("error", "")), auth_token)
    reason = f": {error}" if error else (f": {excerpt}" if excerpt else "")
    if 400 <= http_status < 500 and _says_concurrency_limit(reply, text):
        # Checked before the account problems: this 403 is no fault of the credentials.
        return ConcurrencyLimited(
            f"{what} refused: the account's concurrent calls are at Plivo's limit "
            f"(HTTP {http_status}){reason}",
            http_status=http_status,
            body_excerpt=excerpt,
        )
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


def _says_concurrency_limit(reply: object, body: str) -> bool:
    """Whether a refusal names the concurrent-call limit: Plivo's error code 5030, or its words
    (the body's exact shape is not documented). In a JSON reply, only its error fields are read
    (an api_id may hold the digits 5030 by chance)."""
    if isinstance(reply, dict):
        said = " ".join(str(value) for key, value in reply.items() if key != "api_id").lower()
    else:
        said = body.lower()
    return "5030" in said or "concurren" in said


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
    detail = redacted_excerpt(f"{type(error).__name__}: {error}", auth_token)
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
