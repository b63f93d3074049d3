"""The compiled reader of numbers (campaign/fast_numbers.py) changes nothing a load decides: over
a large, varied corpus, the loader's reading of every value with it (accept or reject, the
normalised number, the reason's words, the time zones) equals its reading with phonenumbers
alone. Runs when rphonenumbers is installed (the `fast` and `dev` extras)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat

from campaign.destinations import (
    AmbiguousNumber,
    InvalidDestination,
    loader_reader,
    read_destination,
)
from campaign.fast_numbers import DIFFERING_COUNTRY_CODES, FastReader, fast_reader

FAST = fast_reader()
PURE = FastReader(None)
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
# Default regions and caller ID regions of the corpus: common ones, and some whose metadata
# differs between the two libraries' releases (which the fast path must leave to phonenumbers).
SOME_REGIONS = ("US", "GB", "IN", "AU", "DE", "FR", "BR", "CN", "JP", "RU", "MX", "NG", "CA",
                "BJ", "ZW", "RO", "SH", "BW", "IT", "ES", "KE", "ZA", "PH", "SG")  # fmt: skip
JUNK = ("", " ", "+", "++1", "abc", "1-800-FLOWERS", "+1 (415) 555-0123 x12", "tel:+14155550123",
        "0000000", "+0 123 456", "+999 1234567", "+1" + "9" * 30, "(((", "+44 (0) 20 7183 8750",
        "+44 020 7183 8750", "00 44 20 7183 8750", "011 44 20 7183 8750", "+1-415-555-0123;ext=5",
        "+49 30 123456 #7", "+7 (912) 345-67-89", "8 912 345 67 89", "+1 415 555 2671",
        "1 415 555 2671", "415-555-2671", "+1..415..555..2671", "+(1) 415 555 2671", "+ 1 415",
        "١٤١٥٥٥٥٢٦٧١", "+\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff12\uff16\uff17\uff11",
        "sip:alice@example.com", "sip:bad", "+1 415<5",
        "0", "00", "+00", "-", ".", "()", "+1()", "1" * 17, "+" + "1" * 17,
        "+1" + " " * 260 + "4155552671", "+1 415" + "-" * 300 + "555 2671",
        "(" * 300 + "+14155552671", "+1 ((415)) 555 2671", "+1 415 555 2671.", "+.1 415 555 2671",
        "+1 0415 555 2671", "+11 415 555 2671", "+001 415 555 2671", "+1+4155552671")  # fmt: skip


def _examples() -> Iterator[tuple[str, phonenumbers.PhoneNumber]]:
    for region in REGIONS:
        for number_type in range(12):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is not None:
                yield region, example
    for country_code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(country_code)
        if example is not None:
            yield "001", example


def corpus(
    seed: int = 2026, near: int = 6, randoms: int = 12_000
) -> list[tuple[str, str | None, str | None]]:
    """(value, default region, caller ID region): every region's example of every type in five
    formats, with and without a region and as bare digits, numbers near each example (random
    digits after its first ones: valid and not), mutations of their digits, random digit
    strings, and malformed values."""
    rng = random.Random(seed)
    values: list[tuple[str, str | None, str | None]] = []
    for region, example in _examples():
        own = region if region != "001" else None
        other = rng.choice(SOME_REGIONS)
        e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
        numbers = [e164]
        for _ in range(near):
            keep = rng.randint(2, max(2, len(e164) - 3))
            numbers.append(
                e164[:keep] + "".join(rng.choice("0123456789") for _ in range(len(e164) - keep))
            )
        for position, number in enumerate(numbers):
            try:
                parsed = phonenumbers.parse(number, None)
            except phonenumbers.NumberParseException:
                values.append((number, None, other))
                continue
            international = phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
            national = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
            digits = number[1:]
            # A caller ID of the number's own country where rule 1 takes the number at once;
            # otherwise one of SOME_REGIONS (each caller's country builds tables for the other
            # readings once per length, which for all 245 would take a minute).
            rule_one = phonenumbers.is_valid_number(parsed) and (
                phonenumbers.region_code_for_number(parsed) == own
            )
            caller = own if rule_one or own in SOME_REGIONS else other
            values += [
                (number, None, other),
                (international, None, None),
                (international, other, other),
                (national, own, own),
                (national, other, None),
                (phonenumbers.format_number(parsed, PhoneNumberFormat.RFC3966), None, None),
                # Bare digits (campaign/bare_digits.py) with a region, and without one from a
                # caller ID of the number's own country (rule 1 takes a valid one at once).
                (digits, own, own),
                (digits, None, caller),
            ]
            if position == 0:
                # Bare digits that phonenumbers must search for other readings (about 1 ms
                # each): one form per example, from another country's caller ID, from none, or
                # written nationally.
                values.append(
                    rng.choice(
                        (
                            (digits, None, other),
                            (digits, None, None),
                            (phonenumbers.national_significant_number(parsed), None, caller),
                            ("".join(ch for ch in national if ch.isdigit()), None, other),
                        )
                    )
                )
        at = rng.randrange(1, len(e164))
        values += [
            (e164[:at] + rng.choice("0123456789") + e164[at + 1 :], None, other),
            (e164 + rng.choice("0123456789"), None, other),
            (e164[:-1], None, other),
            (e164[:-2], own, None),
            ("00" + e164[1:], rng.choice(SOME_REGIONS), None),
            ("011 " + e164[1:], "US", "US"),
            (e164[:3] + " " + e164[3:6] + "-" + e164[6:], None, None),
            (e164.replace("+", "+ ("), None, None),
        ]
    for _ in range(randoms):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 17)))
        separator = rng.choice(("", " ", "-", ".", ""))
        if separator and len(digits) > 4:
            digits = separator.join((digits[:3], digits[3:6], digits[6:]))
        default_region = rng.choice((None, None, *SOME_REGIONS))
        values.append(
            (
                rng.choice(("+", "", "", "00", "(")) + digits,
                default_region,
                rng.choice((None, "US", "GB", "IN", "BJ")),
            )
        )
    for value in JUNK:
        for junk_region in (None, "US", "GB", "BJ", "DE"):
            values.append((value, junk_region, "US"))
    return values


def _reading(
    reader: FastReader, value: str, region: str | None, caller_region: str | None
) -> tuple[str, object]:
    try:
        return "loaded", read_destination(value, region, caller_region, reader=reader)
    except AmbiguousNumber as error:
        return "ambiguous", (error.meaning, error.fix)
    except InvalidDestination as error:
        return "rejected", str(error)


@pytest.mark.skipif(not FAST.enabled, reason="rphonenumbers 0.1.0 (the `fast` extra) not installed")
def test_fast_reader_gives_phonenumbers_results_over_a_large_corpus() -> None:
    """Over more than 100,000 values of every region (all example numbers of every type in
    E.164, international, national, RFC 3966 and bare-digit forms, with and without a default
    region and a caller ID's region; numbers near them, mutated digits, random digit strings,
    malformed values), the loader's reading with the compiled reader equals phonenumbers'
    alone: accepted or not, the same E.164, the same reason and the same time zones. And the
    compiled reader does answer for most valid numbers, so it is not a no-op."""
    values = corpus()
    assert len(values) > 100_000, len(values)
    differing = []
    answered = 0
    for value, region, caller_region in values:
        expected = _reading(PURE, value, region, caller_region)
        actual = _reading(FAST, value, region, caller_region)
        if actual != expected:
            differing.append((value, region, caller_region, expected, actual))
        if expected[0] == "loaded" and FAST.read(value, region) is not None:
            answered += 1
    assert differing == []
    assert answered > 20_000, answered


@pytest.mark.skipif(not FAST.enabled, reason="rphonenumbers 0.1.0 (the `fast` extra) not installed")
def test_fast_reader_leaves_differing_country_codes_and_unusual_syntax_to_phonenumbers() -> None:
    """The compiled reader gives no answer for a number of a country code whose metadata
    differs between the two releases (Benin, China, …), for a default region of such a code,
    for an invalid number, or for a value with letters, an extension or `tel:`."""
    assert FAST.read("+22901900000000", None) is None  # Benin
    assert FAST.read("+8613912345678", None) is None  # China
    assert FAST.read("0171 2345678", "DE") is None
    assert FAST.read("+1 415 555 0123", "CN") is None
    assert FAST.read("+1 415 555 012", None) is None  # invalid: phonenumbers says why
    assert FAST.read("+1 800 FLOWERS", None) is None
    assert FAST.read("+1 415 555 2671 x12", None) is None
    assert FAST.read("tel:+14155552671", None) is None
    assert FAST.read("+1 415 555 2671", None) == (1, "+14155552671", 2)
    assert {86, 229, 263, 267, 290, 40} <= DIFFERING_COUNTRY_CODES


def test_without_the_compiled_library_phonenumbers_reads_alone() -> None:
    """A reader without the compiled library never answers: every value goes to phonenumbers;
    the loader's rows are read with the compiled library exactly when it is usable."""
    assert loader_reader().enabled == FAST.enabled
    assert not PURE.enabled
    assert PURE.read("+1 415 555 2671", None) is None
    assert PURE.region_of_valid("+14155552671") is None
