"""Bare digits: a number written without `+` when no --default-region says whose it is.

Plivo writes numbers as country code + number without a `+` (`14155552671`), and so do many
exports; people also write their own country's numbers without a country code (`4155552671`,
`07911 123456`). Without a region the two cannot always be told apart: `4155552671` is a US
number written nationally, and a Swiss one read as country code + number (+41 55 555 26 71).
Guessing may call a stranger abroad. The rule (README, "The CSV"):

The digits are the number they make as country code + number when that number is valid and

1. it is in the caller ID's own country (`14155552671` from a US caller ID: Plivo's format for
   a domestic call, whatever else the digits could mean), or
2. the same digits are no other number (an *other reading*, below).

Other readings, each a valid number whose E.164 differs from the country-code reading:

a. the digits as dialled in the caller ID's country: a number of its country code written
   with or without the country's trunk prefix (`4155552671` and `14155552671` from the US,
   `07911123456` and `7911123456` from the UK), or any number after the country's exit code
   (`011…` from the US, `00…` from most countries);
b. a number of any country written as its people write it: any number after the country's
   trunk prefix (UK `07911123456`, Russia `84951234567`), or a mobile without it (UK
   `7911123456`, India `9876543210`, China `13912345678`; "mobile" includes the numbers that
   may be mobiles, as in North America). Not a landline without its trunk prefix: some
   countries' landline plans (Germany, Austria, Luxembourg) accept almost any run of digits,
   so counting those would make every value ambiguous, and people rarely drop the prefix of a
   landline.

A value with another reading cannot be loaded without a region (the caller says which); a value
valid in no reading is an ordinary rejected row. This module only finds the readings; the
caller (campaign/destinations.py) decides and words the errors.

A reading is a valid number (phonenumbers' `is_valid_number`) whose national significant
number is exactly the digits written after the prefix. Both readings are found through tables
derived from phonenumbers' constant metadata (per number of digits, one pattern that any form
matches, so most values are cleared by one regular expression), memoised per process
(`functools.cache`, like the `re` module's own cache): built once, they never change.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberType
from phonenumbers.phonemetadata import PhoneNumberDesc

# A value of bare digits: a digit first, then digits and the separators people type.
BARE_DIGITS = re.compile(r"[0-9][0-9 .\-]*", re.ASCII)
_SEPARATORS = re.compile(r"[ .\-]")
# The types a mobile phone can have: phonenumbers says FIXED_LINE_OR_MOBILE where the two share
# their ranges (North America).
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


@dataclass(frozen=True, slots=True, order=True)
class Reading:
    """One number the digits can be: E.164 with its `+`, and its region (`US`; `001` for
    the non-geographical codes)."""

    e164: str
    region: str
    # phonenumbers' parse of it (for its time zones), left out of comparisons.
    number: PhoneNumber | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BareDigits:
    """What a value of bare digits can mean.

    `as_country_code`: the valid number the digits make as country code + number, if any.
    `dialled`: readings (a), the numbers they dial from the caller ID's country (sorted).
    `written`: readings (b), the other numbers they write nationally (sorted).
    No number appears twice, and the last two are not looked for when `as_country_code` is in
    the caller ID's own country (rule 1).
    """

    as_country_code: Reading | None
    dialled: tuple[Reading, ...] = ()
    written: tuple[Reading, ...] = ()


def is_bare_digits(value: str) -> bool:
    """True for digits with spaces, dots or hyphens and nothing else (no `+`)."""
    return BARE_DIGITS.fullmatch(value) is not None


def region_of(from_number: str | None) -> str | None:
    """The region of a campaign's caller ID (`+14155550100` → `US`); None if it has none."""
    if from_number is None or not from_number.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(from_number, None)
    except NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def read_bare_digits(value: str, caller_region: str | None) -> BareDigits:
    """The readings of `value` (bare digits, see is_bare_digits) for a caller ID in
    `caller_region` (None: no caller ID known, so no rule 1 and no reading a)."""
    digits = _SEPARATORS.sub("", value)
    as_country_code = _valid_reading("+" + digits)
    if as_country_code is not None and as_country_code.region == caller_region:
        return BareDigits(as_country_code)
    known = {as_country_code.e164} if as_country_code is not None else set()
    dialled: list[Reading] = []
    if caller_region is not None:
        dialled = sorted(
            reading for reading in dialled_from(digits, caller_region) if reading.e164 not in known
        )
        known.update(reading.e164 for reading in dialled)
    written = sorted(reading for reading in written_nationally(digits) if reading.e164 not in known)
    return BareDigits(as_country_code, tuple(dialled), tuple(written))


def _valid_reading(e164: str) -> Reading | None:
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    return _reading(number)


def _reading(number: PhoneNumber) -> Reading | None:
    # A valid number has a possible length; checking that first spares the region look-up,
    # which tries each region of the country code (25 for +1) on most values.
    if not phonenumbers.is_possible_number(number):
        return None
    region = phonenumbers.region_code_for_number(number)
    if region is None or not phonenumbers.is_valid_number_for_region(number, region):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Reading(e164, region, number)


def dialled_from(digits: str, region: str) -> set[Reading]:
    """Every number (reading a) that `digits` dials from `region`: after its exit code, or a
    number of its country code with or without its trunk prefix."""
    readings = _readings(digits, _national_forms(len(digits), region))
    metadata = PhoneMetadata.metadata_for_region(region)
    exit_code = metadata.international_prefix if metadata is not None else None
    if exit_code:
        dialled_abroad = re.match(exit_code, digits)
        if dialled_abroad is not None and dialled_abroad.end() < len(digits):
            reading = _valid_reading("+" + digits[dialled_abroad.end() :])
            if reading is not None:
                readings.add(reading)
    return readings


def written_nationally(digits: str) -> set[Reading]:
    """Every number (reading b) that `digits` writes nationally, in any country."""
    return _readings(digits, _national_forms(len(digits), None))


def _readings(digits: str, forms: _NationalForms) -> set[Reading]:
    if forms.any_form is None or forms.any_form.fullmatch(digits) is None:
        return set()
    readings: set[Reading] = set()
    for form in forms.forms:
        if not digits.startswith(form.trunk_prefix):
            continue
        national = digits[len(form.trunk_prefix) :]
        if form.national_pattern.fullmatch(national) is None:
            continue
        # The pattern says it may be one; phonenumbers says whether it is a valid number (of
        # a mobile type, for a form that asks for one).
        try:
            number = phonenumbers.parse(f"+{form.country_code}{national}", None)
        except NumberParseException:
            continue
        # phonenumbers may rewrite a national number (Madagascar's 7-digit local numbers gain
        # their area code); only the number as written counts.
        if phonenumbers.national_significant_number(number) != national:
            continue
        if not form.mobile_only or phonenumbers.number_type(number) in _MOBILE_TYPES:
            reading = _reading(number)
            if reading is not None:
                readings.add(reading)
    return readings


@dataclass(frozen=True, slots=True)
class _NationalForm:
    """One way of writing numbers of a country code: a trunk prefix (or none) then the
    national significant number, which must match `national_pattern` (and be a mobile, if
    `mobile_only`)."""

    country_code: int
    trunk_prefix: str
    national_pattern: re.Pattern[str]
    mobile_only: bool


@dataclass(frozen=True, slots=True)
class _NationalForms:
    """The forms a value of one length can be written in, and one pattern that any of them
    matches (None: no form has that many digits)."""

    any_form: re.Pattern[str] | None
    forms: tuple[_NationalForm, ...]


@functools.cache
def _national_forms(length: int, caller_region: str | None) -> _NationalForms:
    """The forms of reading (a) from `caller_region`, or of reading (b) when it is None."""
    forms: list[_NationalForm] = []
    for region in _regions_read(caller_region):
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.country_code is None:
            continue
        trunk_prefix = metadata.national_prefix or ""
        if caller_region is not None:
            calling = PhoneMetadata.metadata_for_region(caller_region)
            trunk_prefix = (calling.national_prefix if calling is not None else None) or ""
        # (prefix, description, mobile only)
        descriptions: list[tuple[str, PhoneNumberDesc | None, bool]] = []
        if caller_region is not None:
            # (a): any number of the country code, with or without the caller's trunk prefix.
            descriptions.append(("", metadata.general_desc, False))
        else:
            # (b) without the trunk prefix: mobiles (and numbers that may be mobiles) only.
            descriptions.append(("", metadata.mobile, True))
            if metadata.same_mobile_and_fixed_line_pattern:
                descriptions.append(("", metadata.fixed_line, True))
        if trunk_prefix:
            descriptions.append((trunk_prefix, metadata.general_desc, False))
        general = metadata.general_desc
        general_lengths = tuple(general.possible_length or ()) if general is not None else ()
        for prefix, description, mobile_only in descriptions:
            if description is None or not description.national_number_pattern:
                continue
            lengths = tuple(description.possible_length or ()) or general_lengths
            # An empty list of lengths: phonenumbers checks the pattern alone.
            if lengths and length - len(prefix) not in lengths:
                continue
            pattern = re.compile(f"(?:{description.national_number_pattern})")
            forms.append(_NationalForm(metadata.country_code, prefix, pattern, mobile_only))
    if not forms:
        return _NationalForms(None, ())
    any_form = "|".join(
        f"(?:{re.escape(form.trunk_prefix)}{form.national_pattern.pattern})" for form in forms
    )
    return _NationalForms(re.compile(any_form), tuple(forms))


def _regions_read(caller_region: str | None) -> tuple[str, ...]:
    """The regions whose numbers a reading looks at: every one for (b), those of the caller's
    country code for (a) (all of North America for a US caller ID)."""
    if caller_region is None:
        return tuple(sorted(phonenumbers.SUPPORTED_REGIONS))
    country_code = phonenumbers.country_code_for_region(caller_region)
    return tuple(phonenumbers.region_codes_for_country_code(country_code))
