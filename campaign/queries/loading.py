"""Loading a CSV: what the campaign has of its numbers already, then a COPY into contacts."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from campaign.destinations import e164_number
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
    """What a load needs to know in its own transaction of the numbers it is about to store."""

    # Of those it was asked about, those the campaign has already.
    present: frozenset[str]
    # With local presence, each number's group of caller IDs (None: any); else None.
    caller_id_groups: dict[str, str | None] | None


NO_NEW_CONTACTS_LOOK_UP = NewContactsLookUp(present=frozenset(), caller_id_groups=None)


async def look_up_suppressions(
    connection: Connection, destinations: Sequence[str], suppression_lists: Sequence[str]
) -> dict[str, str]:
    """Those of `destinations` on one of `suppression_lists`, with the list (the first by name;
    E.164 numbers looked up by their integers, the others by their text). Needs nothing of a
    load's transaction: any connection will do."""
    numbers: list[int] = []
    others: list[str] = []
    for destination in destinations:
        number = e164_number(destination)
        if number is None:
            others.append(destination)
        else:
            numbers.append(number)
    listed = await connection.fetchval(
        sql("look_up_suppressions"), list(suppression_lists), numbers, others
    )
    return dict(listed)


async def look_up_new_contacts(
    connection: Connection,
    campaign_id: int,
    destinations: Sequence[str],
    *,
    local_presence: bool = False,
    maybe_present: Sequence[str] = (),
) -> NewContactsLookUp:
    """Which of `maybe_present` campaign `campaign_id` has already, and (with `local_presence`)
    which of its caller IDs may call each of `destinations`; on the load's own connection (a
    campaign the load creates, and its contacts, are seen by no other until it commits)."""
    if not local_presence and not maybe_present:
        return NO_NEW_CONTACTS_LOOK_UP
    row = await connection.fetchrow(
        sql("look_up_new_contacts"),
        campaign_id,
        destinations if local_presence else [],
        list(maybe_present),
        local_presence,
    )
    assert row is not None
    groups = row["caller_id_groups"]
    return NewContactsLookUp(
        present=frozenset(row["present"]),
        caller_id_groups=None if groups is None else dict(zip(destinations, groups, strict=True)),
    )


async def copy_contacts(
    connection: Connection, data: AsyncIterable[bytes], *, staged: bool = False
) -> None:
    """COPY `data` (rows of CONTACT_COLUMNS in COPY's text format) into `contacts` (rows its
    campaign does not have: UniqueViolationError if one is there), or with `staged` into the
    load's staging table (create_load_staging; then insert_staged_contacts)."""
    await connection.copy_to_table(
        "load_staging" if staged else "contacts",
        source=data,
        columns=CONTACT_COLUMNS,
        format="text",
    )


async def create_load_staging(connection: Connection) -> None:
    """The load's staging table (temporary, dropped at commit)."""
    await connection.execute(sql("create_load_staging"))


async def insert_staged_contacts(connection: Connection) -> tuple[int, int]:
    """The staged rows into contacts, those the campaign has already skipped; how many were
    inserted, and how many of them are suppressed. The staging table is emptied."""
    row = await connection.fetchrow(sql("insert_staged_contacts"))
    await connection.execute(sql("truncate_load_staging"))
    assert row is not None
    return row["inserted"], row["suppressed"]


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
