"""Compare a candidate phone number library with phonenumbers: speed, and every difference.

    .venv/bin/pip install rphonenumbers
    .venv/bin/python bench/validators.py
    .venv/bin/python bench/validators.py --by-country       # country codes that differ
    .venv/bin/python bench/validators.py --metadata-of DIR  # regions whose metadata differs

The loader (campaign/destinations.py `_parsed_number`) may only read numbers with another
library if it gives phonenumbers' answers. This reads a large and varied corpus (every region's
example of every type in four formats, mutations of their digits, random digit strings with and
without a default region, malformed values) with both, as `_parsed_number` would (E.164 and
type, or the reason a value is refused), and prints the time per value and each difference.

The loader's hybrid (campaign/fast_numbers.py) leaves to phonenumbers every country code in
`DIFFERING_COUNTRY_CODES`. `--metadata-of DIR` derives that set from the metadata: DIR is the
`phonenumbers` package folder of the release the candidate ports (for rphonenumbers 0.1.0,
phonenumbers 9.0.41: `pip download phonenumbers==9.0.41 --no-deps`, then unzip the wheel); it
lists every region whose metadata file differs from the installed release's, and their country
codes. `--by-country` checks it by behaviour: random numbers near every example of every
region (valid and not) read by both libraries, and the country codes where any answer differs.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
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


def differing_metadata(folder: Path) -> dict[str, int]:
    """Regions whose metadata file differs between the phonenumbers package in `folder` and the
    installed one (or is only in one of them), with their country codes."""
    installed = Path(phonenumbers.__file__).parent / "data"
    other = folder / "data"
    names = {path.name for path in installed.glob("region_*.py")} | {
        path.name for path in other.glob("region_*.py")
    }
    regions = {}
    for name in sorted(names):
        ours, theirs = installed / name, other / name
        if ours.exists() and theirs.exists() and filecmp.cmp(ours, theirs, shallow=False):
            continue
        region = name.removeprefix("region_").removesuffix(".py")
        if region.isdigit():
            regions[region] = int(region)  # a non-geographical entity: named by its code
        else:
            regions[region] = phonenumbers.country_code_for_region(region)
    return regions


def by_country(
    candidate: ModuleType, near: int, rng: random.Random
) -> tuple[Counter[int], Counter[int]]:
    """Per country code of the value (phonenumbers' parse), over `near` random numbers (the
    first digits of an example kept) per example of every region and type, read with and
    without its region: how many answers differ where the candidate calls the number valid
    (those the hybrid would take), and how many differ at all (an invalid number's reason
    included, which the hybrid takes from phonenumbers)."""
    taken: Counter[int] = Counter()
    differing: Counter[int] = Counter()
    for region in REGIONS:
        for number_type in range(12):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
            for _ in range(near):
                keep = rng.randint(2, max(2, len(e164) - 3))
                value = e164[:keep] + "".join(
                    rng.choice("0123456789") for _ in range(len(e164) - keep)
                )
                for library_region in (None, region):
                    ours = reading(phonenumbers, value, library_region)
                    theirs = reading(candidate, value, library_region)
                    if ours == theirs:
                        continue
                    try:
                        country_code = phonenumbers.parse(value, library_region).country_code
                    except phonenumbers.NumberParseException:
                        country_code = 0
                    differing[country_code or 0] += 1
                    if isinstance(theirs, tuple):
                        taken[country_code or 0] += 1
    return taken, differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", default="rphonenumbers", help="the candidate's module name")
    parser.add_argument("--random", type=int, default=50_000, help="random values in the corpus")
    parser.add_argument(
        "--metadata-of", type=Path, help="a phonenumbers package folder to compare metadata with"
    )
    parser.add_argument(
        "--by-country", action="store_true", help="list the country codes whose answers differ"
    )
    arguments = parser.parse_args()
    if arguments.metadata_of is not None:
        regions = differing_metadata(arguments.metadata_of)
        print(f"{len(regions)} regions' metadata differ: {' '.join(regions)}")
        print(f"country codes: {sorted(set(regions.values()))}")
        return
    candidate = importlib.import_module(arguments.library)
    if arguments.by_country:
        taken, per_code = by_country(candidate, 100, random.Random(2026))
        print(
            f"country codes where the candidate calls valid what phonenumbers does not read "
            f"the same: {sorted(taken)}"
        )
        print(f"country codes with any difference: {sorted(per_code)}")
        for country_code, count in sorted(per_code.items()):
            print(
                f"  +{country_code}: {count} ({taken[country_code]} called valid by the candidate)"
            )
        return
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
