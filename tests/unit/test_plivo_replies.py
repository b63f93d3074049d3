"""Make-a-call request building, reply parsing and failure classification, without a network."""

from __future__ import annotations

import json

import aiohttp
import pytest

from campaign.plivo import (
    BODY_EXCERPT_MAX_CHARS,
    AccountProblem,
    ConcurrencyLimited,
    DestinationState,
    FateUnknown,
    NotSent,
    PlivoError,
    RateLimited,
    RequestRejected,
    build_make_call_body,
    classify_error_status,
    classify_transport_failure,
    parse_make_call_reply,
)
from campaign.plivo.replies import call_record_page_from_reply, queued_call_from_reply

TOKEN = "s3cret-token-value"
UUIDS = ["u-1", "u-2", "u-3"]


def reply(**fields: object) -> bytes:
    return json.dumps({"api_id": "api-1", **fields}).encode()


@pytest.mark.parametrize(
    ("status", "message", "uuid", "queued"),
    [
        (201, "call fired", "u-1", False),
        (200, "call fired", "u-1", False),
        (200, "call queued", "u-1", True),
        (202, "call queued", ["u-1"], True),
    ],
)
def test_single_call_shapes(status: int, message: str, uuid: object, queued: bool) -> None:
    """Any 2xx with `call fired|queued` and a uuid string or one-item list maps the destination."""
    result = parse_make_call_reply(
        status, reply(message=message, request_uuid=uuid), ["14155550001"]
    )
    assert result.mapped
    assert result.queued is queued
    assert result.destinations[0].request_uuid == "u-1"
    expected = DestinationState.QUEUED if queued else DestinationState.FIRED
    assert result.destinations[0].state is expected


@pytest.mark.parametrize("message", ["calls fired", "calls queued"])
def test_bulk_maps_positionally_when_counts_agree(message: str) -> None:
    """A bulk reply with one uuid per destination maps them in `to` order."""
    result = parse_make_call_reply(200, reply(message=message, request_uuid=UUIDS), ["a", "b", "c"])
    assert result.mapped
    assert [d.request_uuid for d in result.destinations] == UUIDS


def test_invalid_numbers_are_skipped_in_the_mapping() -> None:
    """Destinations echoed in invalid_numbers (with or without +) are invalid; the rest map."""
    result = parse_make_call_reply(
        201,
        reply(message="calls fired", request_uuid=["u-1", "u-2"], invalid_numbers=["1999"]),
        ["14155550001", "+1999", "14155550002"],
    )
    assert result.mapped
    assert [(d.state, d.request_uuid) for d in result.destinations] == [
        (DestinationState.FIRED, "u-1"),
        (DestinationState.INVALID, None),
        (DestinationState.FIRED, "u-2"),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"message": "calls queued", "request_uuid": ["u-1", "u-2"]},
        {"message": "calls fired", "request_uuid": "u-1"},
        {"message": "calls fired", "request_uuid": UUIDS, "invalid_numbers": ["not-sent"]},
        {"message": "calls fired"},
    ],
    ids=["fewer-uuids", "string-for-bulk", "unknown-invalid-number", "no-uuid"],
)
def test_counts_that_disagree_are_not_guessed(fields: dict[str, object]) -> None:
    """When counts disagree the result says unsettled, keeps the uuids and assigns none."""
    result = parse_make_call_reply(200, reply(**fields), ["a", "b", "c"])
    assert result.unsettled
    assert all(d.request_uuid is None for d in result.destinations)
    raw = fields.get("request_uuid", [])
    assert list(result.request_uuids) == ([raw] if isinstance(raw, str) else raw)


@pytest.mark.parametrize(
    "body", [b"<html>ok</html>", b"", b"[1, 2]", reply(message="something else")]
)
def test_unreadable_success_is_fate_unknown(body: bytes) -> None:
    """A 2xx we cannot understand may have placed calls: FateUnknown, never a retry."""
    with pytest.raises(FateUnknown):
        parse_make_call_reply(200, body, ["a"])


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, RequestRejected),
        (405, RequestRejected),
        (409, RequestRejected),
        (422, RequestRejected),
        (401, AccountProblem),
        (403, AccountProblem),
        (404, AccountProblem),
        (429, RateLimited),
        (503, NotSent),
        (500, FateUnknown),
        (502, FateUnknown),
        (504, FateUnknown),
    ],
)
def test_each_status_has_one_class(status: int, expected: type[PlivoError]) -> None:
    """Every documented error status lands in exactly the class the issue names."""
    error = classify_error_status(status, reply(error="why"))
    assert type(error) is expected
    assert error.http_status == status


@pytest.mark.parametrize(
    ("body", "retry_after", "expected"),
    [
        (b'{"api_id": "x", "error": "service unavailable"}', None, NotSent),
        (b"", "2", NotSent),
        (b"<html>upstream connect error or disconnect/reset</html>", None, FateUnknown),
        (b"", None, FateUnknown),
    ],
    ids=["plivo-json", "retry-after", "proxy-html", "empty"],
)
def test_only_plivos_own_503_is_not_sent(
    body: bytes, retry_after: str | None, expected: type[PlivoError]
) -> None:
    """A 503 is 'not sent' only when Plivo says so; a proxy's 503 may follow a placed call."""
    assert type(classify_error_status(503, body, retry_after=retry_after)) is expected


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, reply(error="concurrent call limit reached (error code 5030)")),
        (403, reply(error="Concurrency limit exceeded")),
        (400, b'{"error_code": 5030}'),
    ],
    ids=["403-code", "403-words", "400-code-only"],
)
def test_a_refusal_for_the_concurrent_call_limit_is_not_an_account_problem(
    status: int, body: bytes
) -> None:
    """Plivo's 5030 (a 403 in India) placed no call and says nothing about the credentials:
    ConcurrencyLimited, not AccountProblem (which would pause the campaign)."""
    error = classify_error_status(status, body)
    assert type(error) is ConcurrencyLimited
    assert error.http_status == status
    assert type(classify_error_status(403, reply(error="geo permission"))) is AccountProblem


def test_rejection_keeps_plivos_error() -> None:
    """A 400 keeps the body's `error` for the operator."""
    error = classify_error_status(400, reply(error="answer_url parameter is missing"))
    assert isinstance(error, RequestRejected)
    assert error.error == "answer_url parameter is missing"


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), ("0.25", 0.25), (None, None)])
def test_retry_after_is_read(header: str | None, seconds: float | None) -> None:
    """A 429's Retry-After (seconds) is kept for the back-off; absent means None."""
    error = classify_error_status(429, b"", retry_after=header)
    assert isinstance(error, RateLimited)
    assert error.retry_after_s == seconds


def test_error_text_hides_the_token_and_is_cut() -> None:
    """A body echoing the auth token never carries it into the error, and long bodies are cut."""
    body = (f"token {TOKEN} " + "x" * 5000).encode()
    error = classify_error_status(502, body, auth_token=TOKEN)
    assert TOKEN not in str(error)
    assert TOKEN not in error.body_excerpt
    assert len(error.body_excerpt) < BODY_EXCERPT_MAX_CHARS + 40


def test_connect_time_out_is_not_sent() -> None:
    """A connect time-out happens before any byte is written: retryable."""
    error = classify_transport_failure(aiohttp.ConnectionTimeoutError("slow"), None)
    assert isinstance(error, NotSent)


@pytest.mark.parametrize(
    ("written", "expected"),
    [(False, NotSent), (True, FateUnknown), (None, FateUnknown)],
)
def test_dropped_connection_depends_on_whether_the_request_was_written(
    written: bool | None, expected: type[PlivoError]
) -> None:
    """A disconnect is NotSent only when the request provably never went out whole."""
    error = classify_transport_failure(aiohttp.ServerDisconnectedError(), written)
    assert type(error) is expected


def test_time_out_after_writing_is_fate_unknown() -> None:
    """Waiting too long for a reply to a written request: Plivo may have placed the calls."""
    assert isinstance(classify_transport_failure(TimeoutError(), True), FateUnknown)


def test_body_has_only_set_parameters_and_joined_destinations() -> None:
    """Unset (None) parameters are left out; values go as text; `to` is `<`-joined."""
    body = build_make_call_body(
        {
            "from": "14155550100",
            "answer_url": "https://e.com/a",
            "ring_url": None,
            "send_on_preanswer": True,
            "time_limit": 300,
        },
        ["14155550001", "sip:bob@example.com"],
    )
    assert body == {
        "from": "14155550100",
        "answer_url": "https://e.com/a",
        "send_on_preanswer": "true",
        "time_limit": "300",
        "to": "14155550001<sip:bob@example.com",
    }


@pytest.mark.parametrize(
    ("parameters", "batch"),
    [
        ({"from": "1415", "answer_url": "https://e.com/a"}, []),
        ({"from": "1415", "answer_url": "https://e.com/a"}, [str(n) for n in range(1001)]),
        ({"from": "1415", "answer_url": "https://e.com/a"}, ["1", "2", "1"]),
        ({"from": "1415", "answer_url": "https://e.com/a"}, ["1415"]),
        ({"from": "1415", "answer_url": "https://e.com/a"}, ["1<2"]),
        ({"answer_url": "https://e.com/a"}, ["1"]),
        ({"from": "1415"}, ["1"]),
    ],
    ids=["empty", "over-1000", "duplicate", "from-in-to", "separator", "no-from", "no-answer"],
)
def test_bad_batches_are_refused_before_sending(
    parameters: dict[str, object], batch: list[str]
) -> None:
    """Batches Plivo would refuse, or that would make the uuid mapping ambiguous, never go out."""
    with pytest.raises(ValueError, match=r"."):
        build_make_call_body(parameters, batch)


def test_call_record_page_reads_codes_and_skips_malformed_items() -> None:
    """A CDR page keeps well-formed records, reads a numeric-text cause code, takes the total from
    `meta`, and skips items that are not objects."""
    page = call_record_page_from_reply(
        {
            "meta": {"total_count": 41},
            "objects": [
                {
                    "call_uuid": "c-1",
                    "to_number": "14155550001",
                    "from_number": "14155550100",
                    "end_time": "2026-01-31 12:00:00",
                    "hangup_cause_code": "4000",
                    "hangup_cause_name": "Normal Hangup",
                },
                "not a record",
                {"call_uuid": "c-2", "hangup_cause_code": "n/a"},
            ],
        }
    )
    assert page.total_count == 41
    assert [record.call_uuid for record in page.records] == ["c-1", "c-2"]
    assert page.records[0].hangup_cause_code == 4000
    assert page.records[0].initiation_time is None
    assert page.records[1].hangup_cause_code is None


def test_call_record_page_without_meta_counts_its_records() -> None:
    """With no `meta.total_count`, the total is the number of records on the page."""
    page = call_record_page_from_reply({"objects": [{"call_uuid": "c-1"}]})
    assert page.total_count == 1


def test_queued_call_falls_back_to_the_uuid_asked_for() -> None:
    """A queued call keeps `to` and `from`; a reply without its uuid names the one asked for."""
    call = queued_call_from_reply({"to": "14155550001", "from": "14155550100"}, "r-1")
    assert (call.request_uuid, call.call_uuid) == ("r-1", None)
    assert (call.to_number, call.from_number) == ("14155550001", "14155550100")
