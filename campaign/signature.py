"""Plivo's V3 callback signature: computed by the simulator, checked by the callback handlers.

The rules follow Plivo's SDKs (plivo-python `validate_v3_signature`, plivo-go), which agree on
the test vector in FACTS.md:

- POST: `scheme://host/path`, then `?` and the URL's query sorted as `k=v&…` when there is one;
  when there are body parameters a `?` is always present, a `.` separates the query from them,
  and each body parameter is appended as `key + value`, keys sorted (a repeated key: each of
  its values, sorted).
- GET: the URL's query and the parameters merged, sorted as `k=v&…`, after `?`.
- The message is that string, `.`, and the nonce; the signature is base64(HMAC-SHA256(token)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

SIGNATURE_V3_HEADER = "X-Plivo-Signature-V3"
SIGNATURE_V3_NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"

ParameterValue = str | Sequence[str]


def _pairs(parameters: Mapping[str, ParameterValue]) -> list[tuple[str, str]]:
    """Every (key, value) pair, keys sorted and a repeated key's values sorted."""
    pairs: list[tuple[str, str]] = []
    for key in sorted(parameters):
        value = parameters[key]
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, item) for item in sorted(value))
    return pairs


def _merge(
    first: Iterable[tuple[str, str]], second: Mapping[str, ParameterValue]
) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for key, value in first:
        merged.setdefault(key, []).append(value)
    for key, values in second.items():
        merged.setdefault(key, []).extend([values] if isinstance(values, str) else values)
    return merged


def _sorted_query(parameters: Mapping[str, ParameterValue]) -> str:
    return "&".join(f"{key}={value}" for key, value in _pairs(parameters))


def signature_v3_base(url: str, parameters: Mapping[str, ParameterValue], method: str) -> str:
    """The string Plivo signs (before `.nonce`) for a callback to `url` with `parameters`."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if method.upper() == "GET":
        merged = _sorted_query(_merge(query, parameters))
        return f"{base}?{merged}" if merged else base
    query_text = _sorted_query(_merge(query, {}))
    if query_text:
        base = f"{base}?{query_text}"
    if not parameters:
        return base
    body_text = "".join(key + value for key, value in _pairs(parameters))
    separator = "." if query_text else "?"
    return f"{base}{separator}{body_text}"


def compute_signature_v3(
    auth_token: str,
    url: str,
    nonce: str,
    parameters: Mapping[str, ParameterValue],
    method: str = "POST",
) -> str:
    """The V3 signature Plivo sends for a callback to `url` carrying `parameters`."""
    message = f"{signature_v3_base(url, parameters, method)}.{nonce}"
    # surrogateescape: a URL or value decoded from bytes that were not UTF-8 (aiohttp keeps
    # them as surrogates) is signed as those bytes, instead of raising.
    digest = hmac.new(
        auth_token.encode(), message.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def validate_signature_v3(
    auth_tokens: str | Sequence[str],
    url: str,
    nonce: str,
    parameters: Mapping[str, ParameterValue],
    signature_header: str,
    method: str = "POST",
) -> bool:
    """True when any signature in the comma-separated header matches any of the auth tokens.

    Plivo lists several signatures while more than one token is active (rotation); any match is
    enough. The comparison is constant-time. A malformed header (not ASCII) is False, never an
    exception.
    """
    tokens = [auth_tokens] if isinstance(auth_tokens, str) else list(auth_tokens)
    # Plivo's signatures are base64 and its nonces digits: anything else (bytes that were not
    # even UTF-8 among them) is a malformed header, refused like a wrong one.
    if not nonce or not nonce.isascii() or not signature_header.isascii():
        return False
    offered = [part.strip() for part in signature_header.split(",") if part.strip()]
    if not offered:
        return False
    for token in tokens:
        expected = compute_signature_v3(token, url, nonce, parameters, method)
        for signature in offered:
            if hmac.compare_digest(expected.encode(), signature.encode()):
                return True
    return False


def new_nonce() -> str:
    """A fresh nonce in the shape Plivo uses: 20 decimal digits."""
    return "".join(secrets.choice("0123456789") for _ in range(20))
