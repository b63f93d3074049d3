"""Which contacts of a campaign a listing shows and a bulk redial acts on: one filter for the
CLI (`campaign redial`), the HTTP API (the contacts listing, POST …/redial) and the dashboard.
Checked here as a pure function; its SQL is in queries.sql (`contacts_page`, `redial_counts`,
`redial_contacts`), the same predicates in each, so a listing and a redial with the same filter
agree on which contacts match."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass

from campaign.models import CONTACT_STATUSES

# The words of contact_outcomes.outcome (schema.sql §9), for the `outcome` filter.
OUTCOMES: tuple[str, ...] = (
    "pending",
    "waiting for calling hours",
    "redial scheduled",
    "claimed",
    "sending",
    "fired",
    "queued",
    "in call",
    "answered",
    "busy",
    "no-answer",
    "failed",
    "timeout",
    "cancel",
    "unknown",
    "cancelled",
    "suppressed",
    "expired",
)

# A filter's texts are matched, never parsed; this bounds what one request may send.
MAX_TEXT_LENGTH = 200


class FilterError(ValueError):
    """A filter value a user gave is not valid; `field` names it (the API's field name), the
    message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ContactFilter:
    """Contacts whose status is one of `statuses`, whose outcome (contact_outcomes) is one of
    `outcomes`, with `time_zone` among their time zones, whose latest keypress meant `response`
    and whose destination contains `search`; an empty or None field matches every contact."""

    statuses: tuple[str, ...] = ()  # contact statuses
    outcomes: tuple[str, ...] = ()  # contact_outcomes.outcome values
    time_zone: str | None = None  # one IANA zone in contacts.time_zones
    response: str | None = None  # a keypress response value
    search: str | None = None  # digits/text contained in the destination

    def checked(self) -> ContactFilter:
        """This filter, or FilterError naming the first bad field and what it may be."""
        for status in self.statuses:
            if status not in CONTACT_STATUSES:
                raise FilterError(
                    "statuses", f"unknown status {status!r}; one of: {', '.join(CONTACT_STATUSES)}"
                )
        for outcome in self.outcomes:
            if outcome not in OUTCOMES:
                raise FilterError(
                    "outcomes", f"unknown outcome {outcome!r}; one of: {', '.join(OUTCOMES)}"
                )
        if self.time_zone is not None and not _is_zone(self.time_zone):
            raise FilterError(
                "time_zone",
                f"unknown time zone {self.time_zone!r}; give an IANA name such as America/New_York",
            )
        for field, text in (("response", self.response), ("search", self.search)):
            if text is not None and not 0 < len(text) <= MAX_TEXT_LENGTH:
                raise FilterError(field, f"must be 1 to {MAX_TEXT_LENGTH} characters")
        return self

    def query_args(
        self,
    ) -> tuple[list[str] | None, list[str] | None, str | None, str | None, str | None]:
        """The filter as the binds of its SQL predicates (None: any)."""
        return (
            list(self.statuses) or None,
            list(self.outcomes) or None,
            self.time_zone,
            self.response,
            self.search,
        )

    def as_json(self) -> dict[str, object]:
        return {
            "statuses": list(self.statuses),
            "outcomes": list(self.outcomes),
            "time_zone": self.time_zone,
            "response": self.response,
            "search": self.search,
        }


def _is_zone(name: str) -> bool:
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
