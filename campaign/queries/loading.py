"""Loading a CSV: what the campaign has of its numbers already, then a COPY into contacts."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from campaign.queries.base import Connection, sql

# The columns a load COPYs into `contacts`, in the order of a row of `copy_contacts`.
CONTACT_COLUMNS = (
    "campaign_id",
    "line_number",
    "raw_destination",
    "destination",
    "fields",
    "time_zones",
    "status",
    "last_error",
    "suppressions_version",
    "caller_id_group",
)


@dataclass(frozen=True, slots=True)
class NewContactsLookUp:
    """What a load needs to know of the numbers it is about to store, seen at one moment."""

    # The suppression lists' version the look-up saw (contacts.suppressions_version).
    suppressions_version: int
    # Those the campaign has already.
    present: frozenset[str]
    # Those on one of the campaign's suppression lists, with the list (the first by name).
    suppressed: dict[str, str]
    # With local presence, each number's group of caller IDs, in the order asked; else None.
    caller_id_groups: list[str | None] | None


async def look_up_new_contacts(
    connection: Connection,
    campaign_id: int,
    destinations: Sequence[str],
    suppression_lists: Sequence[str],
    *,
    local_presence: bool = False,
    maybe_present: Sequence[str] | None = None,
) -> NewContactsLookUp:
    """Which of `destinations` campaign `campaign_id` has already (looking only among
    `maybe_present` when given: the others it cannot have), which are on one of
    `suppression_lists`, and (with `local_presence`) which of its caller IDs may call each."""
    row = await connection.fetchrow(
        sql("look_up_new_contacts"),
        campaign_id,
        destinations,
        list(suppression_lists),
        local_presence,
        destinations if maybe_present is None else maybe_present,
    )
    assert row is not None
    return NewContactsLookUp(
        suppressions_version=row["suppressions_version"],
        present=frozenset(row["present"]),
        suppressed=dict(row["suppressed"]),
        caller_id_groups=row["caller_id_groups"],
    )


async def copy_contacts(connection: Connection, data: AsyncIterable[bytes]) -> None:
    """COPY `data` (rows of CONTACT_COLUMNS in COPY's text format) into `contacts`;
    UniqueViolationError if one of them is there already (another session inserted it since
    the look-up)."""
    await connection.copy_to_table("contacts", source=data, columns=CONTACT_COLUMNS, format="text")


async def time_zone_names(connection: Connection) -> list[str]:
    """The names of the time zones the database knows (pg_timezone_names)."""
    return [row["name"] for row in await connection.fetch(sql("time_zone_names"))]


async def staged_time_zone_sets(connection: Connection) -> list[tuple[str, ...]]:
    """The distinct sets of time zones of the rows staged now."""
    return [
        tuple(row["time_zones"]) for row in await connection.fetch(sql("staged_time_zone_sets"))
    ]


async def first_window_opening(
    connection: Connection, campaign_id: int, time_zones: Sequence[str]
) -> datetime | None:
    """When the window of `time_zones` first opens for the campaign (None: not within 15 days of
    its start, or not before its end)."""
    opening: datetime | None = await connection.fetchval(
        sql("first_window_opening"), campaign_id, list(time_zones)
    )
    return opening
