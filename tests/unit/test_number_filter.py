"""The suppression lists' Bloom filter (campaign/suppression_filter.py): never a false negative,
few false positives (on random numbers, ranges of numbers and SIP URIs alike), and the bits of
filters saved in the field never change unnoticed."""

from __future__ import annotations

import random

import pytest

from campaign import suppression_filter
from campaign.suppression_filter import (
    MAX_SIZE_LOG2,
    MIN_SIZE_LOG2,
    DestinationFilter,
    SuppressionFilters,
    size_log2_for,
)


def us_numbers(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"+{rng.randrange(12_000_000_000, 20_000_000_000)}" for _ in range(count)]


@pytest.mark.parametrize(
    ("listed", "others"),
    [
        # Random numbers, and others.
        (us_numbers(100_000, seed=1), us_numbers(100_000, seed=2)),
        # A range of numbers (lists often hold whole blocks), and the block after it.
        (
            [f"+1415{line:07d}" for line in range(100_000)],
            [f"+1415{line:07d}" for line in range(100_000, 200_000)],
        ),
        # SIP URIs, long and alike.
        (
            [f"sip:agent-{index}@clinic.example.com" for index in range(100_000)],
            [f"sip:agent-{index}@clinic.example.org" for index in range(100_000)],
        ),
    ],
    ids=["random", "range", "sip"],
)
def test_what_is_put_in_is_always_held_and_few_others_are(
    listed: list[str], others: list[str]
) -> None:
    """Every one of 100,000 destinations put in a filter sized for them is held (a false
    negative would dial a listed number); of 100,000 others, under 0.5 % seem held (16 to 32
    bits a destination, six bits each: 0.002 to 0.09 %)."""
    list_filter = DestinationFilter(size_log2_for(len(listed)))
    list_filter.add(listed)
    assert list_filter.destinations == len(listed)
    assert all(list_filter.may_hold(destination) for destination in listed)
    filters = SuppressionFilters(version=1, filters=[list_filter])
    assert filters.maybe_listed(listed) == listed
    unlisted = sorted(set(others) - set(listed))
    false_positives = filters.maybe_listed(unlisted)
    assert false_positives == [d for d in unlisted if list_filter.may_hold(d)]
    assert len(false_positives) / len(unlisted) < 0.005


def test_sizes_are_powers_of_two_within_bounds() -> None:
    """A filter gets 16 to 32 bits a destination, from 2**16 bits up to 2**27 (16 MiB); it is
    too full once it has 8 bits a destination or fewer (2 % false positives), unless it is as
    large as allowed."""
    assert size_log2_for(0) == MIN_SIZE_LOG2
    assert size_log2_for(1_000_000) == 24  # 16M bits: 16.8 bits a number
    assert size_log2_for(10_000_000) == MAX_SIZE_LOG2 == 27  # 13.4 bits a number
    assert not DestinationFilter(20, destinations=(1 << 20) // 8 - 1).too_full
    assert DestinationFilter(20, destinations=(1 << 20) // 8).too_full
    assert not DestinationFilter(MAX_SIZE_LOG2, destinations=10**9).too_full
    with pytest.raises(ValueError, match="a filter has 2"):
        DestinationFilter(MAX_SIZE_LOG2 + 1)
    with pytest.raises(ValueError, match="not the filter's size"):
        DestinationFilter(16, bits=bytearray(10))


def test_several_lists_and_none() -> None:
    """With several lists, a destination any of them may hold is looked up; lists that hold
    nothing: nothing is looked up."""
    first = DestinationFilter(MIN_SIZE_LOG2)
    first.add(["+14155550001", "sip:bob@example.com"])
    second = DestinationFilter(MIN_SIZE_LOG2 + 1)
    second.add(["+442079460002"])
    asked = ["sip:alice@example.com", "+14155550001", "+14155550009", "+442079460002"]
    assert SuppressionFilters(version=1, filters=[first]).maybe_listed(asked) == ["+14155550001"]
    both = SuppressionFilters(version=1, filters=[first, second])
    assert both.maybe_listed(asked) == ["+14155550001", "+442079460002"]
    assert both.maybe_listed(["sip:bob@example.com"]) == ["sip:bob@example.com"]
    assert SuppressionFilters(version=1).maybe_listed(asked) == []


def test_the_bits_a_destination_sets_are_those_of_filters_saved_before() -> None:
    """Filters are saved in the database (suppression_filters) and read back by later releases:
    the bits a destination sets are pinned here, so that a change of hashes (which would make
    saved filters miss listed numbers) cannot pass unnoticed; it needs a new SCHEME. A filter
    read as bytes is copied only when something is put in."""
    list_filter = DestinationFilter(MIN_SIZE_LOG2, bits=bytes(1 << (MIN_SIZE_LOG2 - 3)))
    list_filter.add([])
    assert isinstance(list_filter.bits, bytes)
    list_filter.add(["+14155550123"])
    assert isinstance(list_filter.bits, bytearray)
    set_bits = [
        index * 8 + bit
        for index, byte in enumerate(list_filter.bits)
        for bit in range(8)
        if byte >> bit & 1
    ]
    assert set_bits == PINNED_BITS
    assert suppression_filter.SCHEME == 1


# The key: b"+14155550123" as a little-endian integer, modulo 2**61 - 1; the first bit, the
# top 16 bits of key * 0x9E3779B97F4A7C15 modulo 2**64, and five more at the step of the top 16
# bits of key * 0xC2B2AE3D27D4EB4F (made odd), modulo 2**16.
PINNED_BITS = [18946, 21669, 38976, 41699, 61729, 64452]
