"""Errors of the HTTP API as RFC 9457 problem details (`application/problem+json`), and the
middleware that makes every failure under /api/v1/ one of them: no input, however malformed,
gets a traceback, and an unexpected error is a bare 500 whose detail names nothing inside."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:campaign:problem:"

# The title of each kind of problem, by HTTP status (the `type` names the kind).
TITLES: dict[str, str] = {
    "bad-request": "The request is malformed",
    "unauthorized": "An API key is needed",
    "forbidden": "This API key may only read",
    "not-found": "No such resource",
    "method-not-allowed": "Method not allowed",
    "not-acceptable": "Not acceptable",
    "conflict": "The request conflicts with the resource's state",
    "payload-too-large": "The request body is too large",
    "unsupported-media-type": "Unsupported media type",
    "validation": "The request breaks a rule",
    "idempotency-key-reused": "The Idempotency-Key was used with another request",
    "idempotency-key-in-use": "A request with this Idempotency-Key is still being answered",
    "plivo-failed": "Plivo did not answer as it should",
    "internal": "Internal error",
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One rule broken: the field (a settings option by name, a query parameter, a CSV line)
    and the words the CLI prints for it."""

    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class Problem(Exception):
    """An answer that is a problem: raised by handlers, written by the middleware."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = list(errors)
        self.headers = headers or {}

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.kind,
            "title": TITLES[self.kind],
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [error.as_json() for error in self.errors]
        return body

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.as_json()).encode(),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def validation(field: str, message: str, detail: str | None = None) -> Problem:
    """A 422 naming one field."""
    return Problem(422, "validation", detail or f"{field}: {message}", [FieldError(field, message)])


# aiohttp's own errors (no route, wrong method, a body too large) as problems.
_HTTP_KINDS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a problem; an unexpected one logged (never the request's headers)."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        kind = _HTTP_KINDS.get(error.status, "bad-request" if error.status < 500 else "internal")
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        status = (
            error.status if error.status in _HTTP_KINDS else (400 if error.status < 500 else 500)
        )
        return Problem(status, kind, error.reason or TITLES[kind], headers=headers).response()
    except HttpProcessingError as error:
        # A body aiohttp cannot parse (a multipart part's headers, a chunk size): the client's.
        return Problem(
            400, "bad-request", f"the request cannot be read: {error.message}"
        ).response()
    except (asyncpg.DataError, UnicodeEncodeError):
        # A value PostgreSQL cannot store or read (a NUL, a lone surrogate, in a name, a path
        # or a field): the request's, and nothing was written (the statement failed).
        return Problem(
            422,
            "validation",
            "a value holds a character that cannot be stored (a NUL or a lone surrogate)",
        ).response()
    except Exception:
        # The request's method and path only: its headers hold the key, its body the user's data.
        logger.exception("%s %s failed", request.method, request.path)
        return Problem(500, "internal", "the server failed to answer; see its log").response()
