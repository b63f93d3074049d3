"""JSON answers: dates as ISO 8601, and the opaque cursors of keyset pages."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from decimal import Decimal

from aiohttp import web

from campaign.api.problems import validation

# The largest page a client may ask for, and the default.
PAGE_MAX = 1000
PAGE_DEFAULT = 100
_CURSOR_PREFIX = "k1:"


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: object) -> str:
    return json.dumps(value, default=_default)


def json_answer(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=dumps(value), content_type="application/json")


def encode_cursor(after_id: int) -> str:
    """An opaque cursor: the page after id `after_id`."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{after_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The id a cursor continues after (0: the first page); a 422 problem if it is not ours."""
    if cursor is None or cursor == "":
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        after_id = int(text.removeprefix(_CURSOR_PREFIX))
        if not 0 <= after_id < 2**63:
            raise ValueError(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise validation(
            "cursor", "is not a cursor of this API; pass next_cursor as it came"
        ) from None
    return after_id


def page_limit(text: str | None) -> int:
    """`limit`: 1 to PAGE_MAX (default PAGE_DEFAULT), else a 422 problem."""
    if text is None:
        return PAGE_DEFAULT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= PAGE_MAX:
        raise validation("limit", f"must be a whole number from 1 to {PAGE_MAX}")
    return int(text)
