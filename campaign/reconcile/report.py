"""What a reconcile run found and did: the report `campaign reconcile` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from campaign.models import ContactStatus

FOUND_QUEUED_MESSAGE = "reconciled: found queued at Plivo"
FOUND_LIVE_MESSAGE = "reconciled: found live at Plivo"
FOUND_IN_CDR_MESSAGE = "reconciled: found in CDR"


class UnknownCampaign(LookupError):
    """No campaign has the name given to reconcile."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no campaign named {name!r}; `campaign list` shows the campaigns")
        self.name = name


@dataclass(frozen=True, slots=True)
class FoundCall:
    """The call Plivo has for a contact, and the outcome the contact takes from it."""

    status: ContactStatus
    request_uuid: str | None
    call_uuid: str | None
    plivo_message: str


@dataclass(frozen=True, slots=True)
class LookupFailure:
    """A contact left unknown because a look-up that might have found its call failed."""

    contact_id: int
    campaign: str
    destination: str
    error: str

    def as_json(self) -> dict[str, object]:
        return {
            "contact_id": self.contact_id,
            "campaign": self.campaign,
            "destination": self.destination,
            "error": self.error,
        }


@dataclass(slots=True)
class ReconcileReport:
    """What a reconcile run found and did (or, in a dry run, would do)."""

    dry_run: bool = False
    examined: int = 0
    found: Counter[str] = field(default_factory=Counter)
    not_found: Counter[str] = field(default_factory=Counter)
    too_recent: int = 0
    run_again_after: datetime | None = None
    lookup_failures: list[LookupFailure] = field(default_factory=list)
    reopened_campaigns: list[str] = field(default_factory=list)
    # Contacts that changed between the read and the update (a late reply, another run).
    changed_meanwhile: int = 0
    # Plivo refused the account: the look-ups stopped there (the contacts not looked up are
    # among lookup_failures).
    account_problem: str | None = None

    @property
    def found_total(self) -> int:
        return sum(self.found.values())

    def summary(self) -> str:
        """One line, e.g. `reconciled: 2 found (queued 1, fired 1), 1 back to pending, …`."""
        verb = "would reconcile (dry run)" if self.dry_run else "reconciled"
        queued = self.found[ContactStatus.QUEUED]
        fired = self.found[ContactStatus.FIRED]
        parts = [
            f"{self.found_total} found (queued {queued}, fired {fired})",
            f"{self.not_found[ContactStatus.PENDING]} back to pending",
        ]
        if self.not_found[ContactStatus.FAILED]:
            parts.append(f"{self.not_found[ContactStatus.FAILED]} failed (out of attempts)")
        if self.not_found[ContactStatus.CANCELLED]:
            parts.append(
                f"{self.not_found[ContactStatus.CANCELLED]} cancelled (campaign cancelled)"
            )
        recent = f"{self.too_recent} still unknown"
        if self.run_again_after is not None:
            when = self.run_again_after.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            recent += f" (too recent: run again after {when})"
        parts.append(recent)
        failed = len(self.lookup_failures)
        parts.append(f"{failed} look-up{'' if failed == 1 else 's'} failed")
        line = f"{verb}: {', '.join(parts)}"
        if self.changed_meanwhile:
            line += f"; {self.changed_meanwhile} changed meanwhile and were left as they were"
        if self.reopened_campaigns:
            line += f"; running again: {', '.join(self.reopened_campaigns)}"
        return line

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict, as `campaign reconcile --json` prints it."""
        return {
            "dry_run": self.dry_run,
            "examined": self.examined,
            "found": self.found_total,
            "queued": self.found[ContactStatus.QUEUED],
            "fired": self.found[ContactStatus.FIRED],
            "pending": self.not_found[ContactStatus.PENDING],
            "failed": self.not_found[ContactStatus.FAILED],
            "cancelled": self.not_found[ContactStatus.CANCELLED],
            "still_unknown": self.too_recent,
            "run_again_after": (
                self.run_again_after.astimezone(UTC).isoformat()
                if self.run_again_after is not None
                else None
            ),
            "lookups_failed": len(self.lookup_failures),
            "lookup_failures": [failure.as_json() for failure in self.lookup_failures],
            "reopened_campaigns": list(self.reopened_campaigns),
            "changed_meanwhile": self.changed_meanwhile,
            "account_problem": self.account_problem,
        }
