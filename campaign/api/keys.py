"""API keys: made here, shown once, stored as their SHA-256 only.

A key is `cpk_` and 43 characters of base64 (32 random bytes): a plain SHA-256 of so much
randomness cannot be reversed or guessed, so no slow hash is needed, and the stored hash is
found by an index and compared again in constant time (campaign/api/auth.py). Keys never reach
a log, an error or a metric: only a key's name does. No aiohttp here: `campaign api-key` imports
this module, and the short commands import no serving code.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "cpk_"
KEY_RANDOM_BYTES = 32


def new_key() -> str:
    """A fresh key, to be shown once."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def key_hash(key: str) -> bytes:
    """What is stored of a key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
