"""Plivo's V3 callback signature: the published test vector and the validation rules."""

from __future__ import annotations

import pytest

from campaign.signature import compute_signature_v3, signature_v3_base, validate_signature_v3

VECTOR_URL = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml/?a=b&c=d"
VECTOR_NONCE = "31627761595286130198"
VECTOR_TOKEN = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4"
VECTOR_UUID = "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"
VECTOR_PARAMETERS = {
    "Direction": "outbound",
    "From": "19792014278",
    "ALegUUID": VECTOR_UUID,
    "CallStatus": "in-progress",
    "BillRate": "0.002",
    "ParentAuthID": "MANWVLYTK4ZWU1YTY4QA",
    "To": "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
    "ALegRequestUUID": VECTOR_UUID,
    "CallUUID": VECTOR_UUID,
    "RequestUUID": VECTOR_UUID,
    "SIP-H-To": "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
    "SessionStart": "2020-04-08 11:34:33.238707",
    "Event": "StartApp",
}
VECTOR_POST = "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c="
VECTOR_GET = "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ="


@pytest.mark.parametrize(("method", "expected"), [("POST", VECTOR_POST), ("GET", VECTOR_GET)])
def test_vector_computes(method: str, expected: str) -> None:
    """Our signature equals the one Plivo's SDKs publish for the FACTS.md vector."""
    signature = compute_signature_v3(
        VECTOR_TOKEN, VECTOR_URL, VECTOR_NONCE, VECTOR_PARAMETERS, method
    )
    assert signature == expected


@pytest.mark.parametrize(("method", "expected"), [("POST", VECTOR_POST), ("GET", VECTOR_GET)])
def test_vector_validates_among_several_signatures(method: str, expected: str) -> None:
    """A header listing several signatures (token rotation) passes when any one matches."""
    header = f"bm90LXRoaXMtb25l, {expected},YW5vdGhlcg=="
    assert validate_signature_v3(
        VECTOR_TOKEN, VECTOR_URL, VECTOR_NONCE, VECTOR_PARAMETERS, header, method
    )


def test_any_active_token_validates() -> None:
    """With several auth tokens active, a signature made with any of them passes."""
    assert validate_signature_v3(
        ["old-token", VECTOR_TOKEN], VECTOR_URL, VECTOR_NONCE, VECTOR_PARAMETERS, VECTOR_POST
    )


@pytest.mark.parametrize(
    ("token", "url", "nonce", "parameters", "method"),
    [
        ("wrong-token", VECTOR_URL, VECTOR_NONCE, VECTOR_PARAMETERS, "POST"),
        (VECTOR_TOKEN, VECTOR_URL + "&e=f", VECTOR_NONCE, VECTOR_PARAMETERS, "POST"),
        (VECTOR_TOKEN, VECTOR_URL, "1" + VECTOR_NONCE[1:], VECTOR_PARAMETERS, "POST"),
        (VECTOR_TOKEN, VECTOR_URL, VECTOR_NONCE, {**VECTOR_PARAMETERS, "To": "1555"}, "POST"),
        (VECTOR_TOKEN, VECTOR_URL, VECTOR_NONCE, VECTOR_PARAMETERS, "GET"),
        (VECTOR_TOKEN, VECTOR_URL, "", VECTOR_PARAMETERS, "POST"),
    ],
    ids=["token", "url", "nonce", "parameter", "method", "no-nonce"],
)
def test_any_change_fails(
    token: str, url: str, nonce: str, parameters: dict[str, str], method: str
) -> None:
    """A wrong token, a changed URL, nonce or parameter, or the other method's rule all fail."""
    assert not validate_signature_v3(token, url, nonce, parameters, VECTOR_POST, method)


def test_empty_header_fails() -> None:
    """A missing signature never passes."""
    assert not validate_signature_v3(VECTOR_TOKEN, VECTOR_URL, VECTOR_NONCE, VECTOR_PARAMETERS, "")


@pytest.mark.parametrize(
    ("url", "parameters", "method", "base"),
    [
        ("https://h.example/cb", {}, "POST", "https://h.example/cb"),
        ("https://h.example/cb", {"B": "2", "A": "1"}, "POST", "https://h.example/cb?A1B2"),
        ("https://h.example/cb?z=1", {"A": "1"}, "POST", "https://h.example/cb?z=1.A1"),
        ("https://h.example/cb?z=1", {}, "POST", "https://h.example/cb?z=1"),
        ("https://h.example/cb", {"A": ["2", "1"]}, "POST", "https://h.example/cb?A1A2"),
        ("https://h.example/cb?z=1", {"A": "1"}, "GET", "https://h.example/cb?A=1&z=1"),
        ("http://127.0.0.1:8080/cb", {}, "GET", "http://127.0.0.1:8080/cb"),
    ],
    ids=[
        "post-bare",
        "post-body",
        "post-query-and-body",
        "post-query",
        "repeated-key",
        "get",
        "port",
    ],
)
def test_signed_string(url: str, parameters: dict[str, str], method: str, base: str) -> None:
    """The signed string follows FACTS.md's POST and GET rules in each corner case."""
    assert signature_v3_base(url, parameters, method) == base


@pytest.mark.parametrize(
    ("signature", "nonce"),
    [
        ("\udcff\udcfe" + VECTOR_POST, VECTOR_NONCE),  # bytes that were not UTF-8, as aiohttp
        ("é" + VECTOR_POST, VECTOR_NONCE),  # keeps them, and any other non-ASCII text
        (VECTOR_POST, "\udcff" + VECTOR_NONCE),
        (VECTOR_POST, "€"),
        (VECTOR_POST + ",\udcc3", VECTOR_NONCE),
    ],
)
def test_malformed_headers_are_false_not_an_exception(signature: str, nonce: str) -> None:
    """A signature or nonce header that is not ASCII is refused like a wrong one; nothing
    raises (it used to be a UnicodeEncodeError, a 500 and a traceback per request)."""
    assert not validate_signature_v3(
        VECTOR_TOKEN, VECTOR_URL, nonce, VECTOR_PARAMETERS, signature, "POST"
    )


def test_a_url_with_bytes_that_were_not_utf8_can_be_signed() -> None:
    """A query decoded with surrogates (from bytes that were not UTF-8) is signed as those
    bytes instead of raising, so such a request is refused by comparison, not by a crash."""
    url = "https://example.com/plivo/hangup?campaign=1&x=\udcff"
    signature = compute_signature_v3(VECTOR_TOKEN, url, VECTOR_NONCE, {})
    assert validate_signature_v3(VECTOR_TOKEN, url, VECTOR_NONCE, {}, signature)
