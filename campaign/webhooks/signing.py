"""The Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`,
keyed by the secret's base64 part decoded, so receivers verify with the specification's
reference libraries (https://www.standardwebhooks.com)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def message_id(event_id: UUID) -> str:
    """The webhook-id of an event: the same on every attempt, so receivers drop repeats."""
    return f"evt_{event_id.hex}"


def sign(key: bytes, message: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header's value for one attempt."""
    signed = f"{message}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(key: bytes, message: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of the specification, and the body's type."""
    return {
        ID_HEADER: message,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key, message, timestamp, body),
        "Content-Type": "application/json",
    }
