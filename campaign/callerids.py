"""A campaign's pool of caller IDs (`--from A,B,C` or `--from-file`), and local presence.

With several numbers, calls are spread over them (`rotate`: the claim takes the number with the
fewest calls in the last day, see schema.sql choose_caller_id), or matched to the callee
(`local`): a number of the callee's area code, else of its country code, else any. The match
is by prefix, in the database (caller_id_group): each number of the pool carries its keys,
`area:+1415` (country code and area code) and `country:+1`. A number whose country has no
geographic area codes (most mobile ranges) has only its country key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import phonenumbers

# A pool this large is a list of numbers, not a typo; far larger is a file given by mistake.
MAX_POOL_SIZE = 10_000
# North American numbers all have a three-digit area code (NPA), whatever phonenumbers knows
# of the exchange (its metadata calls many valid-looking 555 numbers unknown).
NANP_AREA_CODE_DIGITS = 3


class CallerIdMode(StrEnum):
    """How a pool's numbers are given to calls (campaigns.caller_id_mode)."""

    ROTATE = "rotate"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class PoolNumber:
    """One caller ID of a pool, with the keys local presence matches callees by."""

    number: str
    area_key: str | None
    country_key: str


def presence_keys(e164: str) -> tuple[str | None, str]:
    """(`area:+<country code><area code>` or None, `country:+<country code>`) of a number."""
    number = phonenumbers.parse(e164, None)
    country = f"+{number.country_code}"
    national = phonenumbers.national_significant_number(number)
    if number.country_code == 1:
        digits = NANP_AREA_CODE_DIGITS
    else:
        digits = phonenumbers.length_of_geographical_area_code(number)
    area = f"area:{country}{national[:digits]}" if digits > 0 else None
    return area, f"country:{country}"


def pool_number(e164: str) -> PoolNumber:
    """A checked E.164 caller ID as a member of a pool."""
    area, country = presence_keys(e164)
    return PoolNumber(e164, area, country)


def read_pool_file(path: Path) -> list[str]:
    """The numbers of a `--from-file`: one per line; blank lines and `#` comments ignored; a
    CSV's first column taken, a header line without digits skipped. Raises OSError,
    UnicodeDecodeError."""
    numbers = []
    for index, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines()):
        text = line.split("#", 1)[0].strip()
        if "," in text:
            text = text.split(",", 1)[0].strip().strip('"')
        if not text:
            continue
        if index == 0 and not any(character.isdigit() for character in text):
            continue  # a header such as "number"
        numbers.append(text)
    return numbers
