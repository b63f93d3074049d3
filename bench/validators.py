"""Compare a candidate phone number library with phonenumbers: speed, and every difference.

    .venv/bin/pip install rphonenumbers
    .venv/bin/python bench/validators.py

The loader (campaign/destinations.py `_parsed_number`) may only read numbers with another
library if it gives phonenumbers' answers. This reads a large and varied corpus (every region's
example of every type in four formats, mutations of their digits, random digit strings with and
without a default region, malformed values) with both, as `_parsed_number` would (E.164 and
type, or the reason a value is refused), and prints the time per value and each difference.
"""

from __future__ import annotations

import argparse
import importlib
import random
import time
from collections.abc import Iterator
from types import ModuleType

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
DEFAULT_REGIONS = (None, "US", "GB", "IN", "AU", "DE", "FR", "BR", "CN", "JP", "RU", "MX", "NG")
JUNK = ("", " ", "+", "++1", "abc", "1-800-FLOWERS", "+1 (415) 555-0123 x12", "tel:+14155550123",
        "0000000", "+0 123 456", "+999 1234567", "+1" + "9" * 30, "(((", "+44 (0) 20 7183 8750",
        "+44 020 7183 8750", "00 44 20 7183 8750", "011 44 20 7183 8750", "+1-415-555-0123;ext=5",
        "+49 30 123456 #7", "+7 (912) 345-67-89", "8 912 345 67 89")  # fmt: skip


def reading(library: ModuleType, value: str, region: str | None) -> tuple[str, int] | str:
    """(E.164, type) of a valid number, else why not, as `_parsed_number` decides."""
    try:
        number = library.parse(value, region)
    except library.NumberParseException as error:
        return f"parse error {error.error_type}"
    number_type = int(library.number_type(number))
    e164 = library.format_number(number, PhoneNumberFormat.E164)
    if number_type != PhoneNumberType.UNKNOWN:
        return e164, number_type
    return f"invalid ({int(library.is_possible_number_with_reason(number))}) {e164}"


def corpus(rng: random.Random, randoms: int) -> Iterator[tuple[str, str | None]]:
    for region in REGIONS:
        for number_type in range(12):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
            yield e164, None
            yield phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL), None
            yield phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL), region
            yield phonenumbers.format_number(example, PhoneNumberFormat.RFC3966), None
            digits = e164[1:]
            at = rng.randrange(len(digits))
            yield "+" + digits[:at] + rng.choice("0123456789") + digits[at + 1 :], None
            yield "+" + digits + rng.choice("0123456789"), None
            yield "+" + digits[:-1], None
            yield digits, rng.choice(DEFAULT_REGIONS[1:])
    for _ in range(randoms):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        separator = rng.choice(("", " ", "-", ".", ""))
        if separator and len(digits) > 4:
            digits = separator.join((digits[:3], digits[3:6], digits[6:]))
        yield rng.choice(("+", "", "00", "(")) + digits, rng.choice(DEFAULT_REGIONS)
    for value in JUNK:
        for default_region in DEFAULT_REGIONS:
            yield value, default_region


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", default="rphonenumbers", help="the candidate's module name")
    parser.add_argument("--random", type=int, default=50_000, help="random values in the corpus")
    arguments = parser.parse_args()
    candidate = importlib.import_module(arguments.library)
    values = list(corpus(random.Random(2026), arguments.random))
    timings = {}
    answers = {}
    for library in (phonenumbers, candidate):
        started = time.perf_counter()
        answers[library.__name__] = [reading(library, value, region) for value, region in values]
        timings[library.__name__] = (time.perf_counter() - started) / len(values) * 1e6
    print(f"{len(values):,} values")
    for name, microseconds in timings.items():
        print(f"  {name:<16} {microseconds:6.1f} µs per value")
    differing = [
        (value, region, ours, theirs)
        for (value, region), ours, theirs in zip(
            values, answers["phonenumbers"], answers[candidate.__name__], strict=True
        )
        if ours != theirs
    ]
    print(f"{len(differing)} differ (phonenumbers | {candidate.__name__}):")
    for value, region, ours, theirs in differing:
        print(f"  {value!r} (region {region}): {ours} | {theirs}")


if __name__ == "__main__":
    main()
