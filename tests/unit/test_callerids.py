"""Caller-ID pools: the keys local presence matches callees by, and --from-file."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign.callerids import presence_keys, read_pool_file


@pytest.mark.parametrize(
    ("number", "keys"),
    [
        ("+14155550100", ("area:+1415", "country:+1")),
        ("+16475550100", ("area:+1647", "country:+1")),
        ("+442071234567", ("area:+4420", "country:+44")),
        ("+441614960000", ("area:+44161", "country:+44")),
        ("+33142685300", ("area:+331", "country:+33")),
        # A mobile number has no area code in most countries: its country alone.
        ("+447400123456", (None, "country:+44")),
    ],
)
def test_presence_keys(number: str, keys: tuple[str | None, str]) -> None:
    """Area key = country code + geographic area code (three digits in North America, whatever
    phonenumbers knows of the exchange); country key = country code."""
    assert presence_keys(number) == keys


def test_pool_file_reads_one_number_per_line(tmp_path: Path) -> None:
    """Blank lines and # comments are skipped, a header without digits too, and a CSV's first
    column is the number."""
    path = tmp_path / "pool.csv"
    path.write_text(
        'number,label\n+14155550100,SF\n\n# New York\n+12125550100 # main line\n"+16465550100",x\n',
        encoding="utf-8",
    )
    assert read_pool_file(path) == ["+14155550100", "+12125550100", "+16465550100"]
