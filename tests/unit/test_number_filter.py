"""The suppression lists' Bloom filter (campaign/suppression_filter.py): never a false negative,
few false positives, destinations that are not numbers always looked up, and the hashes of
filters saved in the field never change unnoticed."""

from __future__ import annotations

import random

import pytest

from campaign import suppression_filter
from campaign.suppression_filter import (
    MAX_SIZE_LOG2,
    MIN_SIZE_LOG2,
    NumberFilter,
    SuppressionFilters,
    size_log2_for,
)


def us_numbers(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(12_000_000_000, 20_000_000_000) for _ in range(count)]


def test_a_number_put_in_is_always_held_and_few_others_are() -> None:
    """Every one of 100,000 numbers put in a filter sized for them is held (a false negative
    would dial a listed number); of 100,000 others, at most 5 % seem held (8 to 16 bits a
    number, two hashes: 1.4 to 4.9 %)."""
    listed = us_numbers(100_000, seed=1)
    number_filter = NumberFilter(size_log2_for(len(listed)))
    number_filter.add(listed)
    assert number_filter.numbers == len(listed)
    assert all(number_filter.may_hold(number) for number in listed)
    others = set(us_numbers(100_000, seed=2)) - set(listed)
    false_positives = sum(number_filter.may_hold(number) for number in others)
    assert false_positives / len(others) < 0.05


def test_sizes_are_powers_of_two_within_bounds() -> None:
    """A filter gets 8 to 16 bits a number, from 2**16 bits up to 2**26 (8 MiB); it is too full
    once it has 4 bits a number or fewer (15 % false positives), unless it is as large as
    allowed."""
    assert size_log2_for(0) == MIN_SIZE_LOG2
    assert size_log2_for(1_000_000) == 23  # 8M bits: 8.4 bits a number
    assert size_log2_for(10_000_000) == MAX_SIZE_LOG2
    assert not NumberFilter(20, numbers=(1 << 20) // 4 - 1).too_full
    assert NumberFilter(20, numbers=(1 << 20) // 4).too_full
    assert not NumberFilter(MAX_SIZE_LOG2, numbers=10**9).too_full
    with pytest.raises(ValueError, match="a filter has 2"):
        NumberFilter(MAX_SIZE_LOG2 + 1)
    with pytest.raises(ValueError, match="not the filter's size"):
        NumberFilter(16, bits=bytearray(10))


def test_destinations_that_are_not_numbers_are_looked_up_when_a_list_holds_some() -> None:
    """Filters hold only E.164 numbers: a SIP URI (or any destination that is not one) is
    looked up when a list holds such a destination, and not otherwise; with one filter or
    several, a listed number is looked up and an unlisted one is not (these miss); lists that
    hold nothing at all: nothing is looked up."""
    first = NumberFilter(MIN_SIZE_LOG2)
    first.add([14155550001])
    second = NumberFilter(MIN_SIZE_LOG2 + 1)
    second.add([442079460002])
    asked = ["sip:alice@example.com", "+14155550001", "+14155550009", "+442079460002", "+0123"]
    one = SuppressionFilters(version=1, filters=[first])
    assert one.maybe_listed(asked) == ["+14155550001"]
    one.others = True
    assert one.maybe_listed(asked) == ["sip:alice@example.com", "+14155550001", "+0123"]
    both = SuppressionFilters(version=1, filters=[first, second])
    assert both.maybe_listed(asked) == ["+14155550001", "+442079460002"]
    both.others = True
    assert both.maybe_listed(asked) == [
        "sip:alice@example.com",
        "+14155550001",
        "+442079460002",
        "+0123",
    ]
    assert SuppressionFilters(version=1).maybe_listed(asked) == []
    only_others = SuppressionFilters(version=1, others=True)
    assert only_others.maybe_listed(asked) == ["sip:alice@example.com", "+0123"]


def test_the_bits_a_number_sets_are_those_of_filters_saved_before() -> None:
    """Filters are saved in the database (suppression_filters) and read back by later releases:
    the bits a number sets are pinned here, so that a change of hashes (which would make saved
    filters miss listed numbers) cannot pass unnoticed; it needs a new SCHEME."""
    number_filter = NumberFilter(MIN_SIZE_LOG2)
    number_filter.add([14155550123])
    set_bits = [
        index * 8 + bit
        for index, byte in enumerate(number_filter.bits)
        for bit in range(8)
        if byte >> bit & 1
    ]
    assert set_bits == PINNED_BITS
    assert suppression_filter.SCHEME == 1


# (14155550123 times 0x9E3779B97F4A7C15 and 0xC2B2AE3D27D4EB4F, modulo 2**64, top 16 bits.)
PINNED_BITS = [30589, 52837]
