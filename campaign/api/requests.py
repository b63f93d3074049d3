"""Reading a request: its JSON body (bounded), its Idempotency-Key, and the answer a retry of a
POST gets again.

A POST with `Idempotency-Key: K` takes K for the API key that sent it and the SHA-256 of its
method, path and body. A retry with K and the same body gets the first answer (a 2xx, kept 24
hours, with `Idempotent-Replayed: true`) and changes nothing; with another body, 422; while
the first is still being answered, 409. A request that ends in an error frees K, so that a
retry runs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from campaign import queries
from campaign.api.auth import API_KEY
from campaign.api.problems import FieldError, Problem
from campaign.config import Settings

# A JSON body (an action's options, numbers to suppress) is at most this big.
JSON_MAX_BYTES = 1 << 20
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_CHARS = 255
API_POOL = web.AppKey("api_pool", asyncpg.Pool)
API_SETTINGS = web.AppKey("api_settings", Settings)


def request_digest(request: web.Request, *parts: bytes) -> bytes:
    """What identifies a request for its Idempotency-Key: method, path and query, body."""
    digest = hashlib.sha256(f"{request.method} {request.path_qs}\n".encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


async def read_body(request: web.Request, limit: int = JSON_MAX_BYTES) -> bytes:
    """The whole body, at most `limit` bytes, else a 413 problem."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise Problem(413, "payload-too-large", f"the body is larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: web.Request) -> tuple[dict[str, Any], bytes]:
    """The body as a JSON object ({} when there is none) and its bytes."""
    raw = await read_body(request)
    if not raw.strip():
        return {}, raw
    if request.content_type not in ("application/json", "application/octet-stream"):
        raise Problem(415, "unsupported-media-type", "send the body as application/json")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise Problem(400, "bad-request", f"the body is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise Problem(
            422,
            "validation",
            "the body must be a JSON object",
            [FieldError("body", "must be a JSON object")],
        )
    return value, raw


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if (
        not key
        or len(key) > IDEMPOTENCY_KEY_MAX_CHARS
        or not key.isprintable()
        or not key.isascii()
    ):
        message = f"must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable ASCII characters"
        raise Problem(
            400,
            "bad-request",
            f"{IDEMPOTENCY_HEADER}: {message}",
            [FieldError(IDEMPOTENCY_HEADER, message)],
        )
    return key


async def idempotent(
    request: web.Request, digest: bytes, answer: Callable[[], Awaitable[web.Response]]
) -> web.Response:
    """`answer()`, or the answer a first request with the same Idempotency-Key got."""
    key = _idempotency_key(request)
    if key is None:
        return await answer()
    pool = request.app[API_POOL]
    api_key = request[API_KEY]
    await queries.forget_expired_idempotency_keys(pool)
    if not await queries.claim_idempotency_key(pool, api_key.id, key, digest):
        record = await queries.idempotency_record(pool, api_key.id, key)
        if record is not None and record.request_sha256 != digest:
            raise Problem(
                422,
                "idempotency-key-reused",
                f"{IDEMPOTENCY_HEADER} {key!r} was sent with another request in the last 24 "
                "hours; use a new key for a new request",
                [FieldError(IDEMPOTENCY_HEADER, "was used with another request")],
            )
        if record is None or record.status is None or record.body is None:
            raise Problem(
                409,
                "idempotency-key-in-use",
                f"a request with {IDEMPOTENCY_HEADER} {key!r} is still being answered; "
                "retry in a moment",
                headers={"Retry-After": "1"},
            )
        return web.Response(
            status=record.status,
            body=record.body,
            headers={
                "Content-Type": record.content_type or "application/json",
                "Idempotent-Replayed": "true",
            },
        )
    try:
        response = await answer()
    except BaseException:
        await queries.release_idempotency_key(pool, api_key.id, key)
        raise
    body = response.body
    if response.status >= 300 or not isinstance(body, bytes):
        await queries.release_idempotency_key(pool, api_key.id, key)
        return response
    await queries.store_idempotent_answer(
        pool,
        api_key.id,
        key,
        response.status,
        response.headers.get("Content-Type", "application/json"),
        body,
    )
    return response
