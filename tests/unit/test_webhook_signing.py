"""Webhook signatures, bodies, retries and addresses, without I/O: what a receiver relies on."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from uuid import UUID

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from campaign.config import SettingsError, load_settings, parse_retry_delays, webhook_secret_key
from campaign.queries.webhooks import WebhookEvent
from campaign.webhooks.delivery import (
    DelivererConfig,
    after_failure,
    event_body,
    retry_after_s,
)
from campaign.webhooks.signing import message_id, signed_headers
from campaign.webhooks.urls import refusal

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
EVENT = WebhookEvent(
    id=7,
    event_id=UUID("12345678-1234-5678-1234-567812345678"),
    type="contact.settled",
    campaign_id=1,
    contact_id=2,
    sequence=3,
    occurred_at=datetime(2026, 12, 3, 14, 0, tzinfo=UTC),
    data={"outcome": "answered", "destination": "+14155551000"},
    attempts=1,
)


def test_the_reference_library_verifies_our_signature() -> None:
    """`standardwebhooks` accepts the headers we send for a body, and refuses the same
    headers for a body changed by one byte."""
    body = event_body(EVENT)
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers(webhook_secret_key(SECRET), message_id(EVENT.event_id), now, body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"answered", b"answeree"), headers)


def test_the_body_is_type_timestamp_and_data_with_the_sequence() -> None:
    """The body is the specification's envelope; data carries the campaign's sequence number;
    the webhook-id is stable (the event's, not the attempt's)."""
    document = json.loads(event_body(EVENT))
    assert document == {
        "type": "contact.settled",
        "timestamp": "2026-12-03T14:00:00Z",
        "data": {"outcome": "answered", "destination": "+14155551000", "sequence": 3},
    }
    assert message_id(EVENT.event_id) == "evt_12345678123456781234567812345678"


def test_failures_follow_the_schedule_then_fail() -> None:
    """After attempt n fails, the next is the nth delay (±10 %), a longer Retry-After wins,
    and after the last delay the delivery is failed."""
    config = DelivererConfig(worker_id="w", retry_delays_s=(0.0, 5.0, 300.0))
    chance = random.Random(1)
    first = after_failure(config, EVENT, 500, "HTTP 500", None, chance)
    assert first.status == "pending"
    assert 4.5 <= first.delay_s <= 5.5
    limited = after_failure(config, EVENT, 429, "HTTP 429", 60.0, chance)
    assert limited.delay_s == 60.0
    last = after_failure(
        config,
        WebhookEvent(
            id=EVENT.id,
            event_id=EVENT.event_id,
            type=EVENT.type,
            campaign_id=1,
            contact_id=2,
            sequence=3,
            occurred_at=EVENT.occurred_at,
            data={},
            attempts=3,
        ),
        500,
        "HTTP 500",
        None,
        chance,
    )
    assert last.status == "failed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("-1", None),
        ("nan", None),
        ("Wed, 21 Oct", None),
        ("999999999", 86_400.0),
        (None, None),
    ],
)
def test_retry_after_is_read_in_seconds(value: str | None, expected: float | None) -> None:
    """Seconds are honoured up to a day; anything else is ignored."""
    assert retry_after_s(value) == expected


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "private"),  # noqa: S104  # an address refused, not one bound to
        ("100.64.0.1", "non-public"),
        ("93.184.215.14", None),
    ],
)
def test_private_addresses_are_refused(address: str, kind: str | None) -> None:
    """Loopback, private, link-local and other non-public addresses are refused (SSRF), with
    the kind named; a public address is allowed."""
    reason = refusal("hooks.example.com", address)
    if kind is None:
        assert reason is None
    else:
        assert reason is not None
        assert f"a {kind} address" in reason
        assert "CAMPAIGN_WEBHOOK_ALLOW_PRIVATE=1" in reason


def test_webhook_settings_are_checked_without_showing_the_secret() -> None:
    """A malformed secret, URL or schedule is refused naming the variable; the secret's value
    never appears in the message."""
    bad_secret = "whsec_not*base64*at*all*" + "x" * 20
    with pytest.raises(SettingsError) as caught:
        load_settings(webhook_secret=bad_secret)
    assert "CAMPAIGN_WEBHOOK_SECRET" in str(caught.value)
    assert bad_secret not in str(caught.value)
    with pytest.raises(SettingsError, match="CAMPAIGN_WEBHOOK_URL"):
        load_settings(webhook_url="ftp://example.com/x")
    with pytest.raises(SettingsError, match="CAMPAIGN_WEBHOOK_RETRY_DELAYS"):
        load_settings(webhook_retry_delays="0,5,soon")
    assert parse_retry_delays("0,5,300") == (0.0, 5.0, 300.0)
    assert load_settings().webhook_retry_delays_s == (
        0.0,
        5.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
        36000.0,
    )
