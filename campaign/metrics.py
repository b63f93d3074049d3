"""Prometheus metrics: one registry per process, created once and passed to what records into it."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from campaign.models import CONTACT_STATUSES, EndpointHealth
from campaign.models import Progress as CampaignProgress

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS_S = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class Metrics:
    """The engine's metrics. Labels never carry a secret: campaigns by name, classes by word."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.contacts = Gauge(
            "campaign_contacts",
            "Contacts by campaign and status (read from the database at each scrape).",
            ["campaign", "status"],
            registry=self.registry,
        )
        self.requests = Counter(
            "campaign_plivo_requests",
            "Make-a-call requests sent, by reply class.",
            ["outcome"],
            registry=self.registry,
        )
        self.destinations = Counter(
            "campaign_destinations_sent",
            "Destinations sent in Make-a-call requests.",
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "campaign_plivo_request_latency_seconds",
            "Make-a-call request latency, retries included.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.rate_limit_wait = Histogram(
            "campaign_rate_limit_wait_seconds",
            "How long batches waited for their slot of the global rate limits.",
            buckets=WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.database_round_trip = Gauge(
            "campaign_database_round_trip_seconds",
            "The network round trip to Postgres, as the least delayed recent claim saw it.",
            registry=self.registry,
        )
        self.batches_replanned = Counter(
            "campaign_batches_replanned",
            "Batches that missed the second of their rate-limit slots and took new ones.",
            registry=self.registry,
        )
        self.callbacks = Counter(
            "campaign_callbacks_received",
            "Plivo callbacks received, by event and result.",
            ["event", "result"],
            registry=self.registry,
        )
        self.callbacks_rejected = Counter(
            "campaign_callbacks_rejected",
            "Callbacks refused, by reason (signature, too large, malformed).",
            ["reason"],
            registry=self.registry,
        )
        self.redials = Counter(
            "campaign_redials_scheduled",
            "Contacts put back to pending by a hangup the campaign redials.",
            registry=self.registry,
        )
        # Webhook endpoints are labelled by id (`campaign webhook list` shows their URLs): a URL
        # may carry a token in its query string.
        self.webhook_deliveries = Gauge(
            "campaign_webhook_deliveries",
            "Webhook deliveries pending and failed, by endpoint id (read at each scrape).",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.webhook_failing = Gauge(
            "campaign_webhook_endpoint_failing_seconds",
            "How long every delivery to the endpoint has failed without a success (0: healthy).",
            ["endpoint"],
            registry=self.registry,
        )
        self.webhook_disable_in = Gauge(
            "campaign_webhook_endpoint_disabled_in_seconds",
            "A failing endpoint's time left before it is disabled unless a delivery succeeds.",
            ["endpoint"],
            registry=self.registry,
        )
        self.webhook_disabled = Gauge(
            "campaign_webhook_endpoint_disabled",
            "1 when the endpoint is disabled (410 Gone, or days of failures), else 0.",
            ["endpoint"],
            registry=self.registry,
        )

    def set_webhook_health(self, rows: Sequence[EndpointHealth], disable_after_s: float) -> None:
        """Replace the webhook gauges with the database's current figures (`disable_after_s`:
        CAMPAIGN_WEBHOOK_DISABLE_AFTER_S, 0: endpoints are never disabled for failing)."""
        for gauge in (
            self.webhook_deliveries,
            self.webhook_failing,
            self.webhook_disable_in,
            self.webhook_disabled,
        ):
            gauge.clear()
        for row in rows:
            endpoint = str(row.endpoint_id)
            self.webhook_deliveries.labels(endpoint, "pending").set(row.pending)
            self.webhook_deliveries.labels(endpoint, "failed").set(row.failed)
            self.webhook_disabled.labels(endpoint).set(1 if row.disabled else 0)
            self.webhook_failing.labels(endpoint).set(row.failing_s or 0.0)
            if row.failing_s is not None and not row.disabled and disable_after_s > 0:
                self.webhook_disable_in.labels(endpoint).set(
                    max(disable_after_s - row.failing_s, 0.0)
                )

    def set_progress(self, rows: Sequence[CampaignProgress]) -> None:
        """Replace the contacts gauge with the database's current counts."""
        self.contacts.clear()
        for row in rows:
            for status in CONTACT_STATUSES:
                self.contacts.labels(row.campaign, status).set(row.counts[status])

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
