"""Bare digits without --default-region: Plivo's format loads, national numbers never dial
abroad (campaign/bare_digits.py, and its use by normalise_destination and validate_rows)."""

from __future__ import annotations

import functools
import random
import re

import phonenumbers
import pytest
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberFormat, PhoneNumberType

from campaign.bare_digits import (
    Reading,
    dialled_from,
    read_bare_digits,
    region_of,
    written_nationally,
)
from campaign.destinations import (
    AmbiguousNumber,
    CsvLayout,
    InvalidDestination,
    LoadError,
    normalise_destination,
    validate_rows,
)

CALLER_IDS = {
    "US": "+14155550100",
    "CA": "+16045550100",
    "GB": "+442079460100",
    "IN": "+911123456789",
    "DE": "+493012345678",
    "AU": "+61298765432",
    "FR": "+33140000000",
    "BR": "+551133334444",
    "JP": "+81312345678",
    "CN": "+861012345678",
    "MX": "+525512345678",
    "NG": "+2348031234567",
}


@pytest.mark.parametrize(
    ("value", "caller_region", "e164"),
    [
        ("14155552671", "US", "+14155552671"),
        ("1-415-555-2671", "US", "+14155552671"),
        ("16045551234", "CA", "+16045551234"),
        ("447911123456", "GB", "+447911123456"),
        ("44 20 7946 0000", "GB", "+442079460000"),
        ("919876543210", "IN", "+919876543210"),
        ("4915112345678", "DE", "+4915112345678"),
        ("493012345678", "DE", "+493012345678"),
        ("61412345678", "AU", "+61412345678"),
        ("33612345678", "FR", "+33612345678"),
        ("5511912345678", "BR", "+5511912345678"),
        ("81312345678", "JP", "+81312345678"),
        ("8613912345678", "CN", "+8613912345678"),
        # Plivo's format for another country than the caller ID's, when nothing else fits.
        ("447911123456", "US", "+447911123456"),
        ("919876543210", "US", "+919876543210"),
        ("33612345678", "US", "+33612345678"),
        ("61412345678", "US", "+61412345678"),
        ("4915112345678", "US", "+4915112345678"),
        ("5511912345678", "US", "+5511912345678"),
        ("14155552671", None, "+14155552671"),
    ],
)
def test_plivo_format_loads_without_a_region(
    value: str, caller_region: str | None, e164: str
) -> None:
    """Country code + number without `+` (Plivo's own format) is read as such."""
    assert normalise_destination(value, None, caller_region) == e164


@pytest.mark.parametrize(
    ("value", "caller_region", "national"),
    [
        ("4155552671", "US", "+14155552671"),
        ("415-555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("6045551234", "CA", "+16045551234"),
        ("7911123456", "GB", "+447911123456"),
        ("07911 123456", "GB", "+447911123456"),
        ("020 7946 0000", "GB", "+442079460000"),
        ("98765 43210", "IN", "+919876543210"),
        ("098765 43210", "IN", "+919876543210"),
        ("030 1234567", "DE", "+49301234567"),
        ("0151 12345678", "DE", "+4915112345678"),
        ("15112345678", "DE", "+4915112345678"),
        ("0412 345 678", "AU", "+61412345678"),
        ("412 345 678", "AU", "+61412345678"),
        ("02 9876 5432", "AU", "+61298765432"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("612345678", "FR", "+33612345678"),
        ("8 495 123-45-67", "RU", "+74951234567"),
    ],
)
def test_national_numbers_of_the_caller_ids_country_are_refused(
    value: str, caller_region: str, national: str
) -> None:
    """A national number of the caller ID's country, written without its country code, refuses
    the load with what it is and the fix (--default-region of that country)."""
    with pytest.raises(AmbiguousNumber) as raised:
        normalise_destination(value, None, caller_region)
    assert national in raised.value.meaning
    assert raised.value.fix.startswith(f"pass --default-region {caller_region} ")
    assert "write every number with + and its country code" in raised.value.fix


def test_digits_that_are_two_numbers_name_both() -> None:
    """4155552671-like digits valid both abroad and at home: both readings, and the fix."""
    with pytest.raises(AmbiguousNumber) as raised:
        normalise_destination("321-234-5678", None, "US")
    assert raised.value.meaning.startswith(
        "'321-234-5678' could be +3212345678 (BE) as country code and number, or +13212345678 "
        "dialled from the caller ID's country (US)"
    )
    assert raised.value.fix == (
        "pass --default-region US if the file holds national numbers, or write every number "
        "with + and its country code"
    )


def test_a_foreign_mobile_written_nationally_makes_plivo_format_ambiguous() -> None:
    """81312345678 is Japan in Plivo's format and an Indonesian mobile without its 0: from a
    caller ID of neither country it is refused, from a Japanese one it is Japan's."""
    with pytest.raises(AmbiguousNumber, match=r"\+6281312345678 \(ID\)"):
        normalise_destination("81312345678", None, "US")
    assert normalise_destination("81312345678", None, "JP") == "+81312345678"


def test_a_foreign_national_number_is_a_rejected_row_naming_its_readings() -> None:
    """A UK number written nationally, with a US caller ID, cannot be Plivo's format (it starts
    with 0): it is rejected (not dialled anywhere), and the reason names what it may be."""
    with pytest.raises(InvalidDestination) as raised:
        normalise_destination("07911 123456", None, "US")
    assert not isinstance(raised.value, AmbiguousNumber)
    assert str(raised.value).startswith("no country code; it could be a number written nation")
    assert "+447911123456" in str(raised.value)


def test_digits_valid_in_no_reading_are_an_ordinary_rejected_row() -> None:
    """Too few digits to be anything: the usual reason, saying how the value was read."""
    with pytest.raises(InvalidDestination) as raised:
        normalise_destination("1234", None, "US")
    assert not isinstance(raised.value, AmbiguousNumber)
    assert str(raised.value) == (
        "too short for a number of its country, read as country code and number "
        "(no --default-region given)"
    )


def test_a_region_reads_national_numbers_as_before() -> None:
    """With --default-region the rule does not apply: national numbers are that region's."""
    assert normalise_destination("4155552671", "US", "US") == "+14155552671"
    assert normalise_destination("14155552671", "US", "GB") == "+14155552671"
    assert normalise_destination("07911 123456", "GB", "US") == "+447911123456"


def test_region_of_the_caller_id() -> None:
    """The caller ID's region; none for a non-geographical number or nothing."""
    assert region_of("+14155550100") == "US"
    assert region_of("+16045550100") == "CA"
    assert region_of("+80012345678") is None
    assert region_of(None) is None


def test_validate_rows_refuses_the_chunk_naming_the_line() -> None:
    """An ambiguous row stops validation with one line: the row's line, value, and the fix."""
    layout = CsvLayout(0, ("phone",))
    rows = [(2, ["14155552671"]), (3, ["4155552671"])]
    with pytest.raises(LoadError) as raised:
        validate_rows(rows, layout, None, "+14155550100")
    assert str(raised.value) == (
        "line 3: '4155552671' has no country code: it is +14155552671 dialled from the caller "
        "ID's country (US); nothing was loaded: pass --default-region US if the file holds "
        "national numbers, or write every number with + and its country code"
    )


# Files of generated numbers: every valid mobile and landline of each country is equally likely.


@functools.cache
def _numbers(region: str, number_type: int, count: int) -> list[PhoneNumber]:
    # phonenumbers' PhoneNumberType is a namespace of int constants, not an enum.
    rng = random.Random(f"{region}-{number_type}")
    metadata = PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    assert metadata.country_code is not None
    description = metadata.mobile if number_type == PhoneNumberType.MOBILE else metadata.fixed_line
    assert description is not None
    lengths = [length for length in description.possible_length if length > 0]
    wanted = (number_type, PhoneNumberType.FIXED_LINE_OR_MOBILE)
    numbers: list[PhoneNumber] = []
    while len(numbers) < count:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice(lengths)))
        number = phonenumbers.parse(f"+{metadata.country_code}{digits}", None)
        if (
            phonenumbers.is_valid_number(number)
            and phonenumbers.region_code_for_number(number) == region
            and phonenumbers.number_type(number) in wanted
        ):
            numbers.append(number)
    return numbers


def _written(number: PhoneNumber, form: str) -> str:
    if form == "plivo":
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]
    if form == "national significant number":
        return phonenumbers.national_significant_number(number)
    return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)


TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE)


@pytest.mark.parametrize("region", sorted(CALLER_IDS))
def test_plivo_format_files_load_from_their_own_country(region: str) -> None:
    """40 mobiles and 40 landlines of each country in Plivo's format, from a caller ID of that
    country: every one is read as the number it is."""
    caller_region = region_of(CALLER_IDS[region])
    for number_type in TYPES:
        for number in _numbers(region, number_type, 40):
            e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            assert normalise_destination(_written(number, "plivo"), None, caller_region) == e164


@pytest.mark.parametrize("form", ["national significant number", "national format"])
@pytest.mark.parametrize("caller", ["US", "GB", "IN", "DE", "CN", "JP"])
@pytest.mark.parametrize("region", ["US", "GB", "IN", "DE", "AU", "CN", "BR", "FR"])
def test_national_files_never_dial_abroad(region: str, caller: str, form: str) -> None:
    """40 mobiles and 40 landlines of a country written nationally (without the trunk prefix:
    7911123456; or as the country writes them: 07911 123456), from a caller ID of any country:
    a load of the file is refused, or it calls no one outside the caller ID's country (rows
    read as another number are in the caller ID's own country: rule 1). From the country's own
    caller ID, the load is refused or loads nothing (US `(415) 555-2671`: rejected rows)."""
    caller_region = region_of(CALLER_IDS[caller])
    refused = False
    loaded = 0
    abroad: list[str] = []
    for number_type in TYPES:
        for number in _numbers(region, number_type, 40):
            value = _written(number, form)
            if not any(character.isdigit() for character in value):
                continue
            try:
                read = normalise_destination(value, None, caller_region)
            except AmbiguousNumber:
                refused = True
                continue
            except InvalidDestination:
                continue
            loaded += 1
            e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            if read != e164 and region_of(read) != caller_region:
                abroad.append(f"{value} → {read}")
    if region == caller:
        assert refused or loaded == 0
    assert refused or not abroad, abroad


def test_written_nationally_agrees_with_phonenumbers_country_by_country() -> None:
    """The one-pattern shortcut misses nothing: for values of every length, the readings are
    those of asking phonenumbers about each country in turn."""
    rng = random.Random(7)
    values = [
        "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 14))) for _ in range(200)
    ]
    values += [_written(number, "plivo") for number in _numbers("US", TYPES[0], 10)]
    values += ["07911123456", "7911123456", "84951234567", "13912345678", "0412345678", "55501"]
    for value in values:
        assert written_nationally(value) == _each_country(value), value


@pytest.mark.parametrize("caller_region", ["US", "GB", "DE", "RU", "IN", "AU", "HU", "IT"])
def test_dialled_from_agrees_with_phonenumbers_number_by_number(caller_region: str) -> None:
    """Reading (a) misses nothing: for each value, the numbers of the caller's country code
    written with or without its trunk prefix, and any number after its exit code."""
    rng = random.Random(caller_region)
    values = [
        "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 14))) for _ in range(150)
    ]
    for region in ("US", "GB", "DE", "RU", "IN", "AU", "HU", "IT", "CA"):
        for number in _numbers(region, TYPES[0], 5) + _numbers(region, TYPES[1], 5):
            values.append(_written(number, "national significant number"))
            values.append("".join(c for c in _written(number, "national format") if c.isdigit()))
            values.append("00" + _written(number, "plivo"))
            values.append("011" + _written(number, "plivo"))
    for value in values:
        assert dialled_from(value, caller_region) == _dialled_by_hand(value, caller_region), value


def _dialled_by_hand(digits: str, caller_region: str) -> set[Reading]:
    caller = PhoneMetadata.metadata_for_region(caller_region)
    assert caller is not None
    readings: set[Reading] = set()
    country_code = phonenumbers.country_code_for_region(caller_region)
    for prefix in ("", caller.national_prefix or ""):
        if digits.startswith(prefix):
            readings |= _valid(f"+{country_code}", digits[len(prefix) :], mobile_only=False)
    exit_code = re.match(caller.international_prefix or "$^", digits)
    if exit_code is not None:
        readings |= _valid("+", digits[exit_code.end() :], mobile_only=False, exact=False)
    return readings


def _valid(start: str, national: str, *, mobile_only: bool, exact: bool = True) -> set[Reading]:
    try:
        number = phonenumbers.parse(start + national)
    except phonenumbers.NumberParseException:
        return set()
    if not phonenumbers.is_valid_number(number):
        return set()
    if exact and phonenumbers.national_significant_number(number) != national:
        return set()
    if mobile_only and phonenumbers.number_type(number) not in (
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return set()
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return {Reading(e164, str(phonenumbers.region_code_for_number(number)))}


def _each_country(digits: str) -> set[Reading]:
    readings: set[Reading] = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        metadata = PhoneMetadata.metadata_for_region(region)
        assert metadata is not None
        for prefix in ("", metadata.national_prefix or ""):
            if not digits.startswith(prefix):
                continue
            national = digits[len(prefix) :]
            try:
                number = phonenumbers.parse(f"+{metadata.country_code}{national}")
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(number):
                continue
            if phonenumbers.national_significant_number(number) != national:
                continue
            mobile = phonenumbers.number_type(number) in (
                PhoneNumberType.MOBILE,
                PhoneNumberType.FIXED_LINE_OR_MOBILE,
            )
            if prefix or mobile:
                readings.add(
                    Reading(
                        phonenumbers.format_number(number, PhoneNumberFormat.E164),
                        str(phonenumbers.region_code_for_number(number)),
                    )
                )
    return readings


def test_read_bare_digits_skips_the_search_for_the_caller_ids_own_country() -> None:
    """Rule 1: a number of the caller ID's country in Plivo's format has no other reading."""
    readings = read_bare_digits("13012345678", "US")
    assert readings.as_country_code == Reading("+13012345678", "US")
    assert (readings.dialled, readings.written) == ((), ())
    other = read_bare_digits("13012345678", "GB")
    assert Reading("+8613012345678", "CN") in other.written
