"""What goes to Plivo and what comes back, as data: the Make-a-call body, its reply read per
destination, and the records the look-ups return. Pure: no I/O, so each rule is unit-tested.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from campaign.destinations import bare_number
from campaign.plivo.errors import FateUnknown, redacted_excerpt

MAX_DESTINATIONS_PER_REQUEST = 1000
DESTINATION_SEPARATOR = "<"
CDR_PAGE_MAX_LIMIT = 20


# --- Make a call ---------------------------------------------------------------------------------


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
            body_excerpt=redacted_excerpt(text, auth_token),
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
            body_excerpt=redacted_excerpt(text, auth_token),
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
    invalid_keys = {bare_number(number) for number in invalid_numbers}
    is_invalid = [bare_number(destination) in invalid_keys for destination in destinations]
    every_invalid_matched = invalid_keys <= {bare_number(d) for d in destinations}
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


# --- look-ups ------------------------------------------------------------------------------------


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


def queued_call_from_reply(reply: Mapping[str, Any], request_uuid: str) -> QueuedCall:
    """A queued call's details from Plivo's `GET /Call/{uuid}/?status=queued` reply."""
    return QueuedCall(
        request_uuid=str(reply.get("request_uuid") or request_uuid),
        call_uuid=_optional_text(reply.get("call_uuid")),
        from_number=str(reply.get("from") or ""),
        to_number=str(reply.get("to") or ""),
    )


def call_record_page_from_reply(reply: Mapping[str, Any]) -> CallRecordPage:
    """A page of call detail records from Plivo's `GET /Call/` reply (malformed items skipped)."""
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


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)
