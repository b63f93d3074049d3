"""The Make-a-call client: request building, reply parsing, failure classes, safe retries.

The one promise this package keeps: a request that Plivo may have acted on is never sent again.
Every failure is one of four classes (all `PlivoError`):

- `NotSent`: Plivo certainly did not act (nothing complete reached it, or it said 503/429).
  Retried here with full-jitter exponential back-off, bounded by attempts and total time.
- `AccountProblem`: 401/403/404. The campaign must pause; its contacts did nothing wrong.
- `RequestRejected`: 400/405/409/422. Plivo refused this request as built; the body's `error`
  is kept.
- `ConcurrencyLimited`: a 4xx naming the account's concurrent-call limit (India: 403, code
  5030). No call was placed; dial again once calls end (not retried here).
- `FateUnknown`: 500/502/504, a time-out or a dropped connection after the request was written,
  a reply that cannot be understood. Plivo may have placed the calls: never re-sent here; the
  caller reconciles through callbacks and the client's look-ups.

Modules, in import order: `errors` (the four classes and how a status or a transport failure
maps to one), `replies` (the request body and the replies as data, pure), `client` (the HTTP
client: Make-a-call with retries, the look-ups and the cancel of a queued call).
"""

from __future__ import annotations

from campaign.plivo.client import (
    USER_AGENT,
    PlivoClient,
    PlivoClientConfig,
    new_plivo_session,
)
from campaign.plivo.errors import (
    ACCOUNT_PROBLEM_STATUSES,
    BODY_EXCERPT_MAX_CHARS,
    NOT_SENT_STATUSES,
    REJECTED_STATUSES,
    AccountProblem,
    ConcurrencyLimited,
    FateUnknown,
    NotSent,
    PlivoError,
    RateLimited,
    RequestRejected,
    classify_error_status,
    classify_transport_failure,
)
from campaign.plivo.replies import (
    CDR_PAGE_MAX_LIMIT,
    DESTINATION_SEPARATOR,
    MAX_DESTINATIONS_PER_REQUEST,
    CallRecord,
    CallRecordPage,
    DestinationResult,
    DestinationState,
    MakeCallResult,
    QueuedCall,
    build_make_call_body,
    parse_make_call_reply,
)

__all__ = [
    "ACCOUNT_PROBLEM_STATUSES",
    "BODY_EXCERPT_MAX_CHARS",
    "CDR_PAGE_MAX_LIMIT",
    "DESTINATION_SEPARATOR",
    "MAX_DESTINATIONS_PER_REQUEST",
    "NOT_SENT_STATUSES",
    "REJECTED_STATUSES",
    "USER_AGENT",
    "AccountProblem",
    "CallRecord",
    "CallRecordPage",
    "ConcurrencyLimited",
    "DestinationResult",
    "DestinationState",
    "FateUnknown",
    "MakeCallResult",
    "NotSent",
    "PlivoClient",
    "PlivoClientConfig",
    "PlivoError",
    "QueuedCall",
    "RateLimited",
    "RequestRejected",
    "build_make_call_body",
    "classify_error_status",
    "classify_transport_failure",
    "new_plivo_session",
    "parse_make_call_reply",
]
