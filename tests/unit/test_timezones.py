"""A number's time zones (campaign.timezones) are exactly phonenumbers' answer, over a large and
varied corpus, and the database's zone names are looked up without regard to case."""

from __future__ import annotations

import pickle
import random

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers.timezone import time_zones_for_number

from campaign.destinations import InvalidDestination, read_destination
from campaign.timezones import UNKNOWN_ZONE, ZoneNames, zones_of_e164, zones_of_number


def _phonenumbers_zones(e164: str) -> tuple[str, ...]:
    zones = time_zones_for_number(phonenumbers.parse(e164, None))
    return tuple(zone for zone in zones if zone != UNKNOWN_ZONE)


def _parsed(candidate: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return None


def corpus(seed: int = 11, per_region: int = 80) -> list[str]:
    """Valid numbers of every region and type: phonenumbers' examples, and random numbers
    near each example (same length, the first digits kept), of which the valid ones count."""
    rng = random.Random(seed)
    numbers: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in range(12):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            numbers.add(e164)
            for _ in range(per_region // 4):
                keep = rng.randint(2, max(2, len(e164) - 3))
                candidate = e164[:keep] + "".join(
                    rng.choice("0123456789") for _ in range(len(e164) - keep)
                )
                parsed = _parsed(candidate)
                if parsed is not None and phonenumbers.is_valid_number(parsed):
                    numbers.add(
                        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                    )
    return sorted(numbers)


def test_zones_equal_phonenumbers_over_every_region_and_type() -> None:
    """Over over 15,000 valid numbers of every region and number type (fixed line,
    mobile, toll-free, …), zones_of_e164 and the loader's reading give phonenumbers' zones."""
    numbers = corpus()
    assert len(numbers) > 15_000
    differing = [e164 for e164 in numbers if zones_of_e164(e164) != _phonenumbers_zones(e164)]
    assert differing == []
    # The loader's path (the number's type from its validation) gives the same.
    sample = numbers[::7]
    assert all(read_destination(e164, None)[1] == _phonenumbers_zones(e164) for e164 in sample)
    # And in Plivo's format (no `+`), from a caller ID of the number's own country.
    for e164 in numbers[::5]:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
        try:
            destination, zones = read_destination(e164[1:], None, region)
        except InvalidDestination:
            continue  # another reading exists: refused, so no zones to compare
        assert (destination, zones) == (e164, _phonenumbers_zones(e164))


def test_valid_means_it_has_a_type() -> None:
    """The loader's validity test (the number has a type) is phonenumbers' is_valid_number, on
    valid and invalid numbers alike (random digits after real prefixes)."""
    rng = random.Random(5)
    for e164 in corpus(per_region=8):
        for candidate in (e164, e164[:-2] + f"{rng.randint(0, 99):02d}", e164 + "1", e164[:-1]):
            parsed = _parsed(candidate)
            if parsed is None:
                continue
            has_type = phonenumbers.number_type(parsed) != PhoneNumberType.UNKNOWN
            assert has_type == phonenumbers.is_valid_number(parsed), candidate


def test_multi_zone_prefixes_and_types() -> None:
    """A US fixed line has its area's zone; a Russian mobile the whole country's zones, as
    phonenumbers says (a number that spans zones is dialled only while all are open)."""
    assert zones_of_e164("+14155550123") == ("America/Los_Angeles",)
    assert zones_of_e164("+442071838750") == ("Europe/London",)
    russian_mobile = zones_of_e164("+79123456789")
    assert len(russian_mobile) > 10
    assert "Europe/Moscow" in russian_mobile
    parsed = phonenumbers.parse("+14155550123", None)
    assert zones_of_number(parsed, "+14155550123", PhoneNumberType.FIXED_LINE_OR_MOBILE) == (
        "America/Los_Angeles",
    )


def test_zone_names_are_looked_up_without_case_and_survive_pickling() -> None:
    """`america/new_york` is America/New_York; an unknown name gets None and a suggestion; the
    names travel to the validating processes (pickle) whole."""
    names = ZoneNames(["America/New_York", "Europe/London", "UTC"])
    assert names.canonical(" america/new_york ") == "America/New_York"
    assert names.canonical("Mars/Olympus") is None
    assert names.suggestion("America/New_Yrok") == "; did you mean America/New_York?"
    assert names.suggestion("Mars/Olympus") == ""
    copy = pickle.loads(pickle.dumps(names))  # noqa: S301  # our own bytes
    assert copy.canonical("utc") == "UTC"
    assert len(copy) == 3


def test_abbreviations_and_fixed_offsets_are_not_zones_of_a_place() -> None:
    """EST is five hours behind UTC all year while New York is four in summer: a row written
    `EST` would be called at 21:00-22:00 local in summer. Such names (and the server's
    `localtime`, the posix/ copies) are refused, with the place they most likely mean."""
    names = ZoneNames(
        ["EST", "MST7MDT", "localtime", "posix/America/New_York", "America/New_York", "UTC"]
    )
    assert names.canonical("EST") is None
    assert names.canonical("MST7MDT") is None
    assert names.canonical("localtime") is None
    assert names.canonical("posix/America/New_York") is None
    assert names.canonical("america/new_york") == "America/New_York"
    assert names.canonical("utc") == "UTC"
    assert names.suggestion("est") == (
        "; an abbreviation is not a place's rules: did you mean America/New_York?"
    )
