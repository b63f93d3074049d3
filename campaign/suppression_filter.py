"""Bloom filters of the suppression lists: a load looks up only the numbers a list may hold.

A load looks every number it stores up in the lists its campaign honours. With 10M numbers
listed, that costs PostgreSQL about 1.2 µs a number by the integers' index (migration 0020),
and reading that big an index through the shared buffers pushes the load's own pages out:
+11 to +13 % on a 1M-row load (bench/suppression.py). A Bloom filter of a list's E.164 numbers
answers "surely not on the list" for all but a few per cent of them in a fraction of that, in
the loader; only its positives, and the destinations that are not E.164 numbers (SIP URIs, which
filters do not hold), are looked up.

Each number sets two bits, the top bits of its integer (`destinations.e164_number`, as the SQL
function gives it) times two odd 64-bit constants (multiply-shift hashing). A filter has 8 to 16
bits a number when built (5 % false positives at most), at most 2**26 bits (8 MiB; 6.6 % false
positives with 10M numbers); it is built again, larger, once it has 4 bits a number or fewer.

Kept in `suppression_filters` (one row a list: its bits, and the lists' version up to which every
number added is in them, `suppressions.added_version`), so that a load reads 8 MiB rather than
10M rows. Whoever adds numbers (`campaign suppress add`, a script writing the public table), a
load or `suppress add` brings the filter up to date with the rows added since its version, in
one snapshot with the version it reaches; a filter that took many numbers to bring up to date
is saved for the next. Numbers taken off a list stay in its filter: a false positive, looked up
and not found. A load stamps its contacts with the version its filters reached
(contacts.suppressions_version): the claim looks up whatever was added after.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from campaign import queries
from campaign.destinations import e164_number

_M64 = (1 << 64) - 1
# The two hashes' multipliers (odd; the first is 2**64 over the golden ratio).
_FIRST = 0x9E3779B97F4A7C15
_SECOND = 0xC2B2AE3D27D4EB4F
# A new filter's size: 8 to 16 bits a number (two bits each: 1.4 to 4.9 % false positives), as
# a power of two from 2**16 bits (8 KiB) to 2**26 (8 MiB).
BITS_PER_NUMBER = 8
MIN_SIZE_LOG2 = 16
MAX_SIZE_LOG2 = 26
# How numbers set bits (suppression_filters.scheme): a filter saved by another scheme is built
# again, never read with this one's hashes.
SCHEME = 1
# A filter that took this many numbers to bring up to date is saved for the next load.
SAVE_AFTER_NUMBERS = 10_000
# Numbers read from the cursor at a time while a filter is brought up to date.
FETCH_ROWS = 50_000


def size_log2_for(numbers: int) -> int:
    """The size (log2 of its bits) of a filter built for `numbers` numbers."""
    return max(MIN_SIZE_LOG2, min(MAX_SIZE_LOG2, (numbers * BITS_PER_NUMBER).bit_length()))


class NumberFilter:
    """A Bloom filter of a list's E.164 numbers as integers (no false negatives), and how many
    of its destinations were not numbers (SIP URIs, which it does not hold)."""

    __slots__ = ("bits", "numbers", "others", "size_log2")

    def __init__(
        self, size_log2: int, numbers: int = 0, bits: bytearray | None = None, others: int = 0
    ) -> None:
        if not MIN_SIZE_LOG2 <= size_log2 <= MAX_SIZE_LOG2:
            raise ValueError(f"a filter has 2**{MIN_SIZE_LOG2} to 2**{MAX_SIZE_LOG2} bits")
        self.size_log2 = size_log2
        # How many numbers were put in (a number put in twice counts twice).
        self.numbers = numbers
        # How many destinations that are not numbers were seen (none: none is looked up).
        self.others = others
        self.bits = bytearray(1 << (size_log2 - 3)) if bits is None else bits
        if len(self.bits) << 3 != 1 << size_log2:
            raise ValueError("the bits are not the filter's size")

    @property
    def too_full(self) -> bool:
        """Whether it has 4 bits a number or fewer (15 % false positives or more: two to four
        times the numbers it was sized for), and a larger one is allowed."""
        return size_log2_for(self.numbers) > self.size_log2 + 1

    def add(self, numbers: Iterable[int]) -> None:
        bits = self.bits
        shift = 64 - self.size_log2
        added = 0
        for number in numbers:
            first = ((number * _FIRST) & _M64) >> shift
            second = ((number * _SECOND) & _M64) >> shift
            bits[first >> 3] |= 1 << (first & 7)
            bits[second >> 3] |= 1 << (second & 7)
            added += 1
        self.numbers += added

    def may_hold(self, number: int) -> bool:
        shift = 64 - self.size_log2
        first = ((number * _FIRST) & _M64) >> shift
        if not self.bits[first >> 3] >> (first & 7) & 1:
            return False
        second = ((number * _SECOND) & _M64) >> shift
        return bool(self.bits[second >> 3] >> (second & 7) & 1)


@dataclass(frozen=True, slots=True)
class FilterToSave:
    """A list's filter brought up to date with many numbers: worth saving for the next load."""

    list_name: str
    version: int
    filter: NumberFilter


@dataclass(slots=True)
class SuppressionFilters:
    """The filters of a campaign's lists, each holding every number added up to `version`."""

    version: int
    # The lists' filters that hold a number (an empty list has none).
    filters: list[NumberFilter] = field(default_factory=list)
    # Whether a list holds (or held) a destination that is not a number, a SIP URI.
    others: bool = False
    # Those brought up to date with many numbers (save_filters).
    to_save: list[FilterToSave] = field(default_factory=list)

    def maybe_listed(self, destinations: Sequence[str]) -> list[str]:
        """Of `destinations`, those a list may hold: the E.164 numbers a filter may hold, and
        when a list holds destinations that are not numbers, every other destination (a SIP
        URI: filters hold only numbers). Lists that hold nothing: none."""
        filters = self.filters
        others = self.others
        if not filters:
            if not others:
                return []
            return [destination for destination in destinations if e164_number(destination) is None]
        maybe = []
        if len(filters) == 1:
            only = filters[0]
            bits = only.bits
            shift = 64 - only.size_log2
            for destination in destinations:
                number = e164_number(destination)
                if number is None:
                    if others:
                        maybe.append(destination)
                    continue
                first = ((number * _FIRST) & _M64) >> shift
                if bits[first >> 3] >> (first & 7) & 1:
                    second = ((number * _SECOND) & _M64) >> shift
                    if bits[second >> 3] >> (second & 7) & 1:
                        maybe.append(destination)
            return maybe
        for destination in destinations:
            number = e164_number(destination)
            if number is None:
                if others:
                    maybe.append(destination)
            elif any(each.may_hold(number) for each in filters):
                maybe.append(destination)
        return maybe


async def read_filters(connection: queries.Connection, lists: Sequence[str]) -> SuppressionFilters:
    """The filters of `lists` as saved, brought up to date with the numbers added since (built,
    for a list without one or one too full), and the lists' version they reached (the lowest
    of the lists': each list is read in a snapshot of its own, in READ COMMITTED). In a
    transaction: the numbers are read through a cursor."""
    filters = SuppressionFilters(version=0)
    versions = []
    for list_name in dict.fromkeys(lists):
        saved = await queries.suppression_filter(connection, list_name)
        number_filter = None
        if (
            saved is not None
            and saved.scheme == SCHEME
            and (MIN_SIZE_LOG2 <= saved.size_log2 <= MAX_SIZE_LOG2)
        ):
            number_filter = NumberFilter(
                saved.size_log2, saved.numbers, bytearray(saved.bits), saved.others
            )
            reached, added = await _catch_up(connection, list_name, number_filter, saved.version)
        if number_filter is None or number_filter.too_full:
            count = await queries.count_suppressions(connection, list_name)
            number_filter = NumberFilter(size_log2_for(count))
            reached, added = await _catch_up(connection, list_name, number_filter, -1)
        versions.append(reached)
        if number_filter.numbers:
            filters.filters.append(number_filter)
        if number_filter.others:
            filters.others = True
        if added >= SAVE_AFTER_NUMBERS:
            filters.to_save.append(FilterToSave(list_name, reached, number_filter))
    if versions:
        filters.version = min(versions)
    else:
        filters.version = await queries.suppression_lists_version(connection)
    return filters


async def _catch_up(
    connection: queries.Connection, list_name: str, number_filter: NumberFilter, since: int
) -> tuple[int, int]:
    """Put in `number_filter` the numbers of `list_name` added after version `since` (-1: all),
    and count its other destinations; the lists' version that reached, and how many
    destinations were read."""
    reached = since
    added = 0
    async for seen_at, numbers, others in queries.suppressions_added_since(
        connection, list_name, since, FETCH_ROWS
    ):
        reached = seen_at
        number_filter.add(numbers)
        number_filter.others += others
        added += len(numbers) + others
    return reached, added


async def save_filters(connection: queries.Connection, filters: SuppressionFilters) -> None:
    """Keep the filters worth saving (each unless a later one is kept already)."""
    for each in filters.to_save:
        await queries.save_suppression_filter(
            connection,
            each.list_name,
            each.version,
            each.filter.size_log2,
            each.filter.numbers,
            each.filter.others,
            SCHEME,
            bytes(each.filter.bits),
        )
    filters.to_save.clear()


async def refresh_filters(connection: queries.Connection, lists: Sequence[str]) -> None:
    """Bring `lists`' saved filters up to date, and save those that took many numbers (after
    `campaign suppress add`, so the next load need not)."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        filters = await read_filters(connection, lists)
    await save_filters(connection, filters)
