"""API keys: made here, shown once, stored as their SHA-256 only, checked on every request.

A key is `cpk_` and 43 characters of base64 (32 random bytes): a plain SHA-256 of so much
randomness cannot be reversed or guessed, so no slow hash is needed, and the stored hash is
found by an index and compared again in constant time. Keys never reach a log, an error or a
metric: only a key's name does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from campaign import queries
from campaign.api.problems import Problem

KEY_PREFIX = "cpk_"
KEY_RANDOM_BYTES = 32
API_KEY = web.RequestKey("api_key", queries.ApiKey)
# Methods a read-only key may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_key() -> str:
    """A fresh key, to be shown once."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def key_hash(key: str) -> bytes:
    """What is stored of a key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer KEY` header, else None."""
    if authorization is None or not authorization.isascii():
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


async def authenticate(pool: asyncpg.Pool, authorization: str | None) -> queries.ApiKey:
    """The live key the header names, else a 401 problem (which never repeats the key)."""
    key = bearer_key(authorization)
    if key is None:
        raise Problem(
            401,
            "unauthorized",
            "send an API key as `Authorization: Bearer KEY` (`campaign api-key create NAME` "
            "makes one)",
            headers={"WWW-Authenticate": 'Bearer realm="campaign"'},
        )
    digest = key_hash(key)
    found = await queries.api_key_by_hash(pool, digest)
    if found is None or not hmac.compare_digest(found[1], digest):
        raise Problem(
            401,
            "unauthorized",
            "the API key is not valid (unknown or revoked); `campaign api-key list` shows the keys",
            headers={"WWW-Authenticate": 'Bearer realm="campaign", error="invalid_token"'},
        )
    return found[0]


def require_writer(request: web.Request, key: queries.ApiKey) -> None:
    """A 403 problem when a read-only key asks to change something."""
    if key.read_only and request.method not in READ_METHODS:
        raise Problem(
            403,
            "forbidden",
            f"API key {key.name!r} is read-only; create one without --read-only to make changes",
        )


AuthHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
