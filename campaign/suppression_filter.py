"""Bloom filters of the suppression lists: a load looks up only the destinations a list may hold.

A load looks every destination it stores up in the lists its campaign honours. With 10M numbers
listed, that costs PostgreSQL about 1.2 µs a number by the integers' index (migration 0020),
and reading that big an index through the shared buffers pushes the load's own pages out:
+11 to +13 % on a 1M-row load (bench/suppression.py). A Bloom filter of each list answers
"surely not on the list" for all but a fraction of a per cent of the others, in the loader
(0.45 µs a destination); only its positives (the listed ones among them) are looked up.

A destination's key is its text (as contacts and suppressions store it, so a number and a SIP URI
alike) read as a little-endian integer of its UTF-8 bytes, modulo the prime 2**61 - 1; it sets
six bits, by double hashing: the top bits of the key times two odd 64-bit constants
(multiply-shift) give the first bit and the step to the next. A filter has 16 to 32 bits a
destination when built (0.002 to 0.09 % false positives), at most 2**27 bits (16 MiB; 0.22 %
false positives with 10M numbers, where two hashes in 8 MiB gave 6.6 %, and those look-ups cost a
1M-row load 0.3 s more of PostgreSQL's time); it is built again, larger, once it has 8 bits a
destination or fewer (2 %).

Kept in `suppression_filters` (one row a list: its bits, and the lists' version up to which every
destination added is in them, `suppressions.added_version`), so that a load reads 16 MiB rather
than 10M rows. Whoever adds numbers (`campaign suppress add`, a script writing the public table),
a load or `suppress add` brings the filter up to date with the rows added since its version, in
one snapshot with the version it reaches; a filter that took many destinations to bring up to
date is saved for the next. Destinations taken off a list stay in its filter: a false positive,
looked up and not found. A load stamps its contacts with the version its filters reached
(contacts.suppressions_version): the claim looks up whatever was added after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from campaign import queries

_M64 = (1 << 64) - 1
# Keys are taken modulo this prime (a Mersenne prime: every byte of the text counts).
_P61 = (1 << 61) - 1
# The two hashes' multipliers (odd; the first is 2**64 over the golden ratio).
_FIRST = 0x9E3779B97F4A7C15
_SECOND = 0xC2B2AE3D27D4EB4F
# Bits a destination sets.
HASHES = 6
# A new filter's size: 16 to 32 bits a destination, as a power of two from 2**16 bits (8 KiB)
# to 2**27 (16 MiB).
BITS_PER_DESTINATION = 16
MIN_SIZE_LOG2 = 16
MAX_SIZE_LOG2 = 27
# How destinations set bits (suppression_filters.scheme): a filter saved by another scheme is
# built again, never read with this one's hashes.
SCHEME = 1
# A filter that took this many destinations to bring up to date is saved for the next load.
SAVE_AFTER = 10_000
# Destinations read from the cursor at a time while a filter is brought up to date.
FETCH_ROWS = 50_000


def size_log2_for(destinations: int) -> int:
    """The size (log2 of its bits) of a filter built for `destinations` destinations."""
    wanted = (destinations * BITS_PER_DESTINATION).bit_length()
    return max(MIN_SIZE_LOG2, min(MAX_SIZE_LOG2, wanted))


def key_of(destination: str) -> int:
    """The integer a destination's bits are found from."""
    return int.from_bytes(destination.encode(), "little") % _P61


class DestinationFilter:
    """A Bloom filter of a list's destinations: no false negatives."""

    __slots__ = ("bits", "destinations", "size_log2")

    def __init__(
        self, size_log2: int, destinations: int = 0, bits: bytes | bytearray | None = None
    ) -> None:
        if not MIN_SIZE_LOG2 <= size_log2 <= MAX_SIZE_LOG2:
            raise ValueError(f"a filter has 2**{MIN_SIZE_LOG2} to 2**{MAX_SIZE_LOG2} bits")
        self.size_log2 = size_log2
        # How many destinations were put in (one put in twice counts twice).
        self.destinations = destinations
        # As read (bytes) until something is put in.
        self.bits = bytearray(1 << (size_log2 - 3)) if bits is None else bits
        if len(self.bits) << 3 != 1 << size_log2:
            raise ValueError("the bits are not the filter's size")

    @property
    def too_full(self) -> bool:
        """Whether it has 8 bits a destination or fewer (2 % false positives or more: two to
        four times what it was sized for), and a larger one is allowed."""
        return size_log2_for(self.destinations) > self.size_log2 + 1

    def add(self, destinations: Sequence[str]) -> None:
        if not destinations:
            return
        if not isinstance(self.bits, bytearray):  # as read: a copy only when it changes
            self.bits = bytearray(self.bits)
        bits = self.bits
        shift = 64 - self.size_log2
        mask = (1 << self.size_log2) - 1
        for destination in destinations:
            key = key_of(destination)
            bit = ((key * _FIRST) & _M64) >> shift
            step = (((key * _SECOND) & _M64) >> shift) | 1
            for _ in range(HASHES):
                bits[bit >> 3] |= 1 << (bit & 7)
                bit = (bit + step) & mask
        self.destinations += len(destinations)

    def may_hold(self, destination: str) -> bool:
        bits = self.bits
        shift = 64 - self.size_log2
        mask = (1 << self.size_log2) - 1
        key = key_of(destination)
        bit = ((key * _FIRST) & _M64) >> shift
        step = (((key * _SECOND) & _M64) >> shift) | 1
        for _ in range(HASHES):
            if not bits[bit >> 3] >> (bit & 7) & 1:
                return False
            bit = (bit + step) & mask
        return True


@dataclass(frozen=True, slots=True)
class FilterToSave:
    """A list's filter brought up to date with many destinations: worth saving for the next
    load."""

    list_name: str
    version: int
    filter: DestinationFilter


@dataclass(slots=True)
class SuppressionFilters:
    """The filters of a campaign's lists, each holding every destination added up to
    `version`."""

    version: int
    # The lists' filters that hold a destination (an empty list has none).
    filters: list[DestinationFilter] = field(default_factory=list)
    # Those brought up to date with many destinations (save_filters).
    to_save: list[FilterToSave] = field(default_factory=list)

    def maybe_listed(self, destinations: Sequence[str]) -> list[str]:
        """Of `destinations`, those a list may hold (lists that hold nothing: none)."""
        filters = self.filters
        if not filters:
            return []
        if len(filters) > 1:
            return [d for d in destinations if any(each.may_hold(d) for each in filters)]
        # One list (`default` alone, the common case): DestinationFilter.may_hold, inline; most
        # destinations stop at the first bit.
        only = filters[0]
        bits = only.bits
        shift = 64 - only.size_log2
        mask = (1 << only.size_log2) - 1
        from_bytes = int.from_bytes
        maybe = []
        for destination in destinations:
            key = from_bytes(destination.encode(), "little") % _P61
            bit = ((key * _FIRST) & _M64) >> shift
            if not bits[bit >> 3] >> (bit & 7) & 1:
                continue
            step = (((key * _SECOND) & _M64) >> shift) | 1
            for _ in range(HASHES - 1):
                bit = (bit + step) & mask
                if not bits[bit >> 3] >> (bit & 7) & 1:
                    break
            else:
                maybe.append(destination)
        return maybe


async def read_filters(connection: queries.Connection, lists: Sequence[str]) -> SuppressionFilters:
    """The filters of `lists` as saved, brought up to date with the destinations added since
    (built, for a list without one or one too full), and the lists' version they reached (the
    lowest of the lists': each list is read in a snapshot of its own, in READ COMMITTED). In a
    transaction: the destinations are read through a cursor."""
    filters = SuppressionFilters(version=0)
    versions = []
    for list_name in dict.fromkeys(lists):
        saved = await queries.suppression_filter(connection, list_name)
        list_filter = None
        if (
            saved is not None
            and saved.scheme == SCHEME
            and MIN_SIZE_LOG2 <= saved.size_log2 <= MAX_SIZE_LOG2
        ):
            list_filter = DestinationFilter(saved.size_log2, saved.destinations, saved.bits)
            reached, added = await _catch_up(connection, list_name, list_filter, saved.version)
        if list_filter is None or list_filter.too_full:
            count = await queries.count_suppressions(connection, list_name)
            list_filter = DestinationFilter(size_log2_for(count))
            reached, added = await _catch_up(connection, list_name, list_filter, -1)
        versions.append(reached)
        if list_filter.destinations:
            filters.filters.append(list_filter)
        if added >= SAVE_AFTER:
            filters.to_save.append(FilterToSave(list_name, reached, list_filter))
    if versions:
        filters.version = min(versions)
    else:
        filters.version = await queries.suppression_lists_version(connection)
    return filters


async def _catch_up(
    connection: queries.Connection, list_name: str, list_filter: DestinationFilter, since: int
) -> tuple[int, int]:
    """Put in `list_filter` the destinations of `list_name` added after version `since` (-1:
    all); the lists' version that reached, and how many were put in."""
    reached = since
    added = 0
    async for seen_at, destinations in queries.suppressions_added_since(
        connection, list_name, since, FETCH_ROWS
    ):
        reached = seen_at
        list_filter.add(destinations)
        added += len(destinations)
    return reached, added


async def save_filters(connection: queries.Connection, filters: SuppressionFilters) -> None:
    """Keep the filters worth saving (each unless a later one is kept already)."""
    for each in filters.to_save:
        await queries.save_suppression_filter(
            connection,
            each.list_name,
            each.version,
            each.filter.size_log2,
            each.filter.destinations,
            SCHEME,
            each.filter.bits,
        )
    filters.to_save.clear()


async def refresh_filters(connection: queries.Connection, lists: Sequence[str]) -> None:
    """Bring `lists`' saved filters up to date, and save those that took many destinations
    (after `campaign suppress add`, so the next load need not)."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        filters = await read_filters(connection, lists)
    await save_filters(connection, filters)
