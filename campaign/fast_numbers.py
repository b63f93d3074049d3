"""A compiled reader of phone numbers, used only where it gives phonenumbers' answers.

`rphonenumbers` (an optional extra: `pip install 'campaign[fast]'`) is phonenumbers' API on a
Rust port of libphonenumber: it reads a valid number with its type several times faster. Its
metadata is an older release than the phonenumbers this project is tested with, so it is not
a drop-in replacement: a number it calls valid may be one phonenumbers does not, and the other
way round (docs/benchmarks.md, issue 11). The loader therefore asks it first and takes its
answer only when all of these hold, else asks phonenumbers (which stays the reference and the
fallback):

- the installed pair of libraries is the one `DIFFERING_COUNTRY_CODES` was derived for
  (`RPHONENUMBERS_VERSION`, `PHONENUMBERS_VERSION`); any other pair: phonenumbers alone;
- the value is written with digits, spaces, `+`, `(`, `)`, `-` and `.` only (no extension,
  letters, `tel:` or other syntax whose reading could differ);
- it calls the number valid (an invalid number's reason words come from phonenumbers);
- neither the number's country code nor the default region's is one whose metadata differs
  between the two releases (`DIFFERING_COUNTRY_CODES`).

Then its E.164 form and its number type are phonenumbers' (tests/unit/test_fast_numbers.py
holds the loader's results equal with and without it over a large, varied corpus), and the
time zones follow from them (campaign/timezones.py).

`DIFFERING_COUNTRY_CODES` holds every country code with a region whose metadata file differs
between phonenumbers 9.0.41 (the release rphonenumbers 0.1.0 ports) and 9.0.43
(`bench/validators.py --metadata-of DIR` lists them), and any country code on which a
per-country comparison of the two libraries finds a difference (`bench/validators.py
--by-country`; it found none outside the list).

Pure and light: the loader's validating processes import it.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import phonenumbers

RPHONENUMBERS_VERSION = "0.1.0"
PHONENUMBERS_VERSION = "9.0.43"

# Country codes of the regions whose metadata differs between the two releases (AU AX BJ BW
# CC CN CO CR CV CX DE DK EC ES ET FI GE GH GY IN KE KW LA PG PY RO RU SH ZW): a country code
# shared by several regions (+61, +358, +7) is left out whole, since a number's region is
# found among all of them.
DIFFERING_COUNTRY_CODES: frozenset[int] = frozenset(
    {7, 34, 40, 45, 49, 57, 61, 86, 91, 229, 233, 238, 251, 254, 263, 267, 290, 358, 506,
     592, 593, 595, 675, 856, 965, 995}
)  # fmt: skip
# Values the compiled reader may read: digits and the separators people type, nothing else.
PLAIN_NUMBER = re.compile(r"\+?[0-9 ().\-]+", re.ASCII)
_UNKNOWN_TYPE = 99  # PhoneNumberType.UNKNOWN
_E164 = 0  # PhoneNumberFormat.E164


def _compiled_library() -> ModuleType | None:
    """rphonenumbers when it is installed, in the version the table above was made for, beside
    the phonenumbers release it was compared with; else None."""
    if phonenumbers.__version__ != PHONENUMBERS_VERSION:
        return None
    try:
        import rphonenumbers  # type: ignore[import-not-found,import-untyped,unused-ignore]  # optional extra
    except ImportError:
        return None
    if getattr(rphonenumbers, "__version__", None) != RPHONENUMBERS_VERSION:
        return None
    library: ModuleType = rphonenumbers
    return library


class FastReader:
    """Reads a value with the compiled library where it is known to agree (see the module
    docstring); None from `read` means: ask phonenumbers."""

    def __init__(self, library: ModuleType | None) -> None:
        self._library = library
        if library is not None:
            self._parse = library.parse
            self._number_type = library.number_type
            self._format = library.format_number
            self._error = library.NumberParseException
            self._region_code_for_number = library.region_code_for_number
        # Default regions whose country code the compiled library reads as phonenumbers does.
        self._regions_read: dict[str | None, bool] = {None: True}

    @property
    def enabled(self) -> bool:
        return self._library is not None

    def _region_allowed(self, default_region: str | None) -> bool:
        allowed = self._regions_read.get(default_region)
        if allowed is None:
            country_code = phonenumbers.country_code_for_region(default_region or "")
            allowed = country_code != 0 and country_code not in DIFFERING_COUNTRY_CODES
            self._regions_read[default_region] = allowed
        return allowed

    def _valid(self, value: str, region: str | None) -> tuple[Any, int, int] | None:
        """The parsed number, its country code and type, when the compiled library reads it
        as valid outside the differing country codes; else None."""
        try:
            number = self._parse(value, region)
        except self._error:
            return None
        country_code: int = number.country_code
        if country_code in DIFFERING_COUNTRY_CODES:
            return None
        number_type = int(self._number_type(number))
        if number_type == _UNKNOWN_TYPE:
            return None
        return number, country_code, number_type

    def read(self, value: str, default_region: str | None) -> tuple[int, str, int] | None:
        """(country code, E.164, number type) of a valid number, as phonenumbers would give
        them; None when the answer must come from phonenumbers."""
        if self._library is None or not self._region_allowed(default_region):
            return None
        if PLAIN_NUMBER.fullmatch(value) is None:
            return None
        read = self._valid(value, default_region)
        if read is None:
            return None
        number, country_code, number_type = read
        return country_code, self._format(number, _E164), number_type

    def region_of_valid(self, e164: str) -> tuple[int, str, str, int] | None:
        """For `+digits`: (country code, E.164, region, number type) of a valid number, as
        phonenumbers would give them; None when the answer must come from phonenumbers."""
        if self._library is None:
            return None
        read = self._valid(e164, None)
        if read is None:
            return None
        number, country_code, number_type = read
        region: str | None = self._region_code_for_number(number)
        if region is None:
            return None
        return country_code, self._format(number, _E164), region, number_type


def fast_reader(enabled: bool = True) -> FastReader:
    """The reader of this process: the compiled library when `enabled` and usable, else none."""
    return FastReader(_compiled_library() if enabled else None)
