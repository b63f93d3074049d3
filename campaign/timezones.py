"""Time zones: of a phone number (phonenumbers' data, by prefix), and as the database names them.

A number's zones are exactly phonenumbers' `time_zones_for_number`: a fixed-line or (in the
countries where mobile ranges are geographic) mobile number gets the zones of its longest known
prefix, any other type (toll-free, most mobile ranges, …) the zones of its whole country code.
This module computes the same answer without phonenumbers' second look-up of the number's type
when the caller already has it (the validation computes it), and without any look-up at all
when the prefix and the country code tell the same zones. tests/unit/test_timezones.py holds it
equal to phonenumbers over a large corpus.

Pure and light (phonenumbers only): the loader's validating processes import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType
from phonenumbers.tzdata import TIMEZONE_DATA

# phonenumbers' answer for a number it knows no zone of.
UNKNOWN_ZONE = "Etc/Unknown"


# phonenumbers' zones by prefix, without its "unknown" marker (filtered once, not per number).
_ZONES_BY_PREFIX: dict[str, tuple[str, ...]] = {
    prefix: tuple(zone for zone in zones if zone != UNKNOWN_ZONE)
    for prefix, zones in TIMEZONE_DATA.items()
}


def _prefix_lengths() -> dict[str, tuple[int, ...]]:
    """By the first two digits of a number: the lengths of the prefixes in phonenumbers' data
    it can start with, longest first (the others need no look-up: most of +1's are 7 or 4
    digits long, so a US number takes two or three look-ups, not six)."""
    lengths: dict[str, set[int]] = {}
    for prefix in _ZONES_BY_PREFIX:
        starts = [prefix[:2]] if len(prefix) >= 2 else [prefix + digit for digit in "0123456789"]
        for start in starts:
            lengths.setdefault(start, set()).add(len(prefix))
    return {start: tuple(sorted(found, reverse=True)) for start, found in lengths.items()}


_PREFIX_LENGTHS = _prefix_lengths()


def _by_prefix(digits: str) -> tuple[str, ...]:
    """The zones of the longest prefix of `digits` in phonenumbers' data (none: unknown)."""
    if len(digits) < 2:
        return _ZONES_BY_PREFIX.get(digits, ())
    for length in _PREFIX_LENGTHS.get(digits[:2], ()):
        if length <= len(digits):
            zones = _ZONES_BY_PREFIX.get(digits[:length])
            if zones is not None:
                return zones
    return ()


def zones_of_number(
    number: PhoneNumber, e164: str, number_type: int | None = None
) -> tuple[str, ...]:
    """The time zones of a valid number, as phonenumbers' `time_zones_for_number` gives them
    (without `Etc/Unknown`: an empty tuple when no zone is known).

    `e164` is the number formatted in E.164; `number_type` its type when already known.
    """
    country_code = number.country_code or 0
    of_country = _by_prefix(str(country_code))
    of_prefix = _by_prefix(e164[1:])
    if of_prefix == of_country:
        return of_prefix
    if number_type is None:
        number_type = phonenumbers.number_type(number)
    return _zones_by_type(country_code, of_prefix, of_country, number_type)


def zones_of_valid(country_code: int, e164: str, number_type: int) -> tuple[str, ...]:
    """zones_of_number's answer from a valid number's country code, E.164 form and type (as
    campaign/fast_numbers.py reads them, without a phonenumbers object)."""
    of_country = _by_prefix(str(country_code))
    of_prefix = _by_prefix(e164[1:])
    if of_prefix == of_country:
        return of_prefix
    return _zones_by_type(country_code, of_prefix, of_country, number_type)


def _zones_by_type(
    country_code: int, of_prefix: tuple[str, ...], of_country: tuple[str, ...], number_type: int
) -> tuple[str, ...]:
    if number_type == PhoneNumberType.UNKNOWN:
        return ()
    geographical = phonenumbers.is_number_type_geographical(number_type, country_code)
    return of_prefix if geographical else of_country


def zones_of_e164(e164: str) -> tuple[str, ...]:
    """The time zones of a valid number written with its country code (see zones_of_number)."""
    number = phonenumbers.parse(e164, None)
    return zones_of_number(
        number, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    )


# Names that read like zones but are not a place's rules: fixed offsets that ignore daylight
# saving time (EST is 5 hours behind UTC all year, while New York is 4 in summer), the server's
# own zone, and copies of the tree. A contact's zone must be a place (Area/Location) or UTC.
_NOT_A_PLACE_PREFIXES = ("posix/", "right/", "posixrules", "localtime", "factory")
# What people write for a zone, and the place they most likely mean.
_ABBREVIATIONS = {
    "est": "America/New_York", "edt": "America/New_York", "et": "America/New_York",
    "cst": "America/Chicago", "cdt": "America/Chicago", "ct": "America/Chicago",
    "mst": "America/Denver (or America/Phoenix, which keeps no summer time)",
    "mdt": "America/Denver", "mt": "America/Denver",
    "pst": "America/Los_Angeles", "pdt": "America/Los_Angeles", "pt": "America/Los_Angeles",
    "akst": "America/Anchorage", "hst": "Pacific/Honolulu",
    "gmt": "Europe/London", "bst": "Europe/London", "ist": "Asia/Kolkata",
    "cet": "Europe/Paris", "eet": "Europe/Athens", "aest": "Australia/Sydney",
}  # fmt: skip


def is_place_zone(name: str) -> bool:
    """Whether a zone name of the database is a place's rules (`America/New_York`) or UTC, not
    a fixed offset that skips daylight saving time (`EST`, `MST7MDT`) or an alias of the tree."""
    key = name.lower()
    if key in ("utc", "etc/utc"):
        return True
    return "/" in key and not key.startswith(_NOT_A_PLACE_PREFIXES)


class ZoneNames:
    """The time zone names a database knows (`pg_timezone_names`) that are places (see
    is_place_zone), looked up without regard to case and answered in the database's spelling."""

    def __init__(self, names: Iterable[str]) -> None:
        self._by_key: Mapping[str, str] = {
            name.lower(): name for name in names if is_place_zone(name)
        }

    def __len__(self) -> int:
        return len(self._by_key)

    def canonical(self, name: str) -> str | None:
        """`name` as the database spells it, or None if it knows no such zone."""
        return self._by_key.get(name.strip().lower())

    def suggestion(self, name: str) -> str:
        """`; did you mean America/New_York?` for an abbreviation or a near miss, else ``."""
        meant = _ABBREVIATIONS.get(name.strip().lower())
        if meant is not None:
            return f"; an abbreviation is not a place's rules: did you mean {meant}?"
        close = difflib.get_close_matches(name.strip().lower(), self._by_key, n=1, cutoff=0.75)
        return f"; did you mean {self._by_key[close[0]]}?" if close else ""

    def __reduce__(self) -> tuple[type[ZoneNames], tuple[list[str]]]:
        return (ZoneNames, (sorted(self._by_key.values()),))
