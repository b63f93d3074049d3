"""The sample campaign of `campaign demo`: a CSV with the quirks real contact lists have."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import phonenumbers

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")


def _valid_us_number(rng: random.Random) -> str:
    while True:
        candidate = f"+1{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


def _written_as(number: str, rng: random.Random) -> str:
    digits = number[2:]
    styles = (
        number,
        f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
        f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
        f"1{digits}",
        f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}",
    )
    return rng.choice(styles)


def write_sample_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Write `rows` contacts: mixed number formats, a few invalid rows and a duplicate."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    numbers = [_valid_us_number(rng) for _ in range(rows)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "phone", "appointment"])
        for index, number in enumerate(numbers):
            value = _written_as(number, rng)
            if rows >= 10 and index % 10 == 9:
                value = rng.choice(("555-01", "not a number", "+999 123"))
            elif rows >= 10 and index % 10 == 4:
                value = _written_as(numbers[index - 1], rng)
            day = 1 + index % 28
            writer.writerow([rng.choice(FIRST_NAMES), value, f"2026-12-{day:02d} 10:00"])
