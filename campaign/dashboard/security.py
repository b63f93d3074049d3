"""Sessions, CSRF tokens, login throttling and the response headers of the dashboard.

A session is a cookie holding 32 random bytes (`campaign_session`: HttpOnly, SameSite=Strict,
Secure when CAMPAIGN_PUBLIC_URL is https); only its SHA-256 is stored (dashboard_sessions), and
it ends at logout, when its key is revoked, or after CAMPAIGN_DASHBOARD_IDLE_S without a request
on the database's clock. A session's CSRF token is derived from its cookie token (an HMAC), so
nothing more is stored, and a page of another origin, which cannot read the cookie, cannot make
it. Failed logins are counted per address in the database: after CAMPAIGN_DASHBOARD_LOGIN_FAILURES
within CAMPAIGN_DASHBOARD_LOGIN_WINDOW_S, that address gets 429 with Retry-After until the oldest
failure leaves the window, whether its next key is right or wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from campaign.queries.api import ApiKey
from campaign.queries.dashboard import peek_dashboard_session, touch_dashboard_session

COOKIE_NAME = "campaign_session"
FLASH_COOKIE = "campaign_flash"
TOKEN_BYTES = 32

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in page's key and the CSRF token its forms carry."""

    key: ApiKey
    token_sha256: bytes
    csrf: str

    @property
    def writer(self) -> bool:
        return not self.key.read_only


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose cookie holds `token`."""
    return hmac.new(token.encode("utf-8", "surrogatepass"), b"csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, given: str | None) -> bool:
    if not given or not given.isascii():
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), given.encode())


def _cookie_token(request: web.Request) -> str | None:
    token = request.cookies.get(COOKIE_NAME)
    if not token or len(token) > 200 or not token.isascii():
        return None
    return token


async def session_of(
    request: web.Request, pool: asyncpg.Pool, idle_s: float
) -> tuple[Session, str] | None:
    """The live session of the request's cookie (seen now), with the cookie's token; else None."""
    token = _cookie_token(request)
    if token is None:
        return None
    digest = token_hash(token)
    found = await touch_dashboard_session(pool, digest, idle_s=idle_s)
    if found is None or not hmac.compare_digest(found[1], digest):
        return None
    return Session(found[0], digest, csrf_token(token)), token


async def peek_session(
    request: web.Request, pool: asyncpg.Pool, idle_s: float
) -> tuple[Session, float] | None:
    """The live session of the request's cookie, not touched, and its seconds left; else None."""
    token = _cookie_token(request)
    if token is None:
        return None
    digest = token_hash(token)
    found = await peek_dashboard_session(pool, digest, idle_s=idle_s)
    if found is None or not hmac.compare_digest(found[1], digest):
        return None
    return Session(found[0], digest, csrf_token(token)), found[2]


def client_address(request: web.Request) -> str:
    """Who is logging in, for the throttle: the peer's address (a proxy in front should be the
    only peer, and then every login shares its count: see the README)."""
    return request.remote or "unknown"


def set_session_cookie(response: web.StreamResponse, token: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE_NAME, token, httponly=True, samesite="Strict", path="/", secure=secure
    )


def secure_cookies(public_url: str | None) -> bool:
    return public_url is not None and public_url.lower().startswith("https://")
