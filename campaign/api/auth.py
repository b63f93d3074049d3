"""Every /api/v1/ request's key: `Authorization: Bearer KEY`, looked up by its hash (401 when
missing, unknown or revoked), and a read-only key refused any change (403)."""

from __future__ import annotations

import hmac

import asyncpg
from aiohttp import web

from campaign import queries
from campaign.api.keys import key_hash
from campaign.api.problems import Problem

API_KEY = web.RequestKey("api_key", queries.ApiKey)
# Methods a read-only key may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
