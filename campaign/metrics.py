"""Prometheus metrics: one registry per process, created once and passed to what records into it."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from campaign.models import CONTACT_STATUSES
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

    def set_progress(self, rows: Sequence[CampaignProgress]) -> None:
        """Replace the contacts gauge with the database's current counts."""
        self.contacts.clear()
        for row in rows:
            for status in CONTACT_STATUSES:
                self.contacts.labels(row.campaign, status).set(row.counts[status])

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
