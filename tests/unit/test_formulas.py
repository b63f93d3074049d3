"""Cells a spreadsheet would run as formulas are written as text (OWASP's CSV injection rule)."""

from __future__ import annotations

import pytest

from campaign.formulas import neutralise, neutralise_phone


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Ada", "Ada"),
        ("x=1", "x=1"),
        (" =1", " =1"),
        ("", ""),
    ],
)
def test_a_cell_that_starts_like_a_formula_gets_a_quote(cell: str, written: str) -> None:
    """A leading = + - @ tab or CR is prefixed with '; anything else is written as it is."""
    assert neutralise(cell) == written


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("+1 415 555 0123", "+1 415 555 0123"),
        ("+1 (415) 555-0123", "+1 (415) 555-0123"),
        ("-415.555.0123", "-415.555.0123"),
        ("415 555 0123", "415 555 0123"),
        ("=1+2", "'=1+2"),
        ("+1 415 555 0123 =cmd", "'+1 415 555 0123 =cmd"),
        ("+", "'+"),
        ("-", "'-"),
        ("+-", "'+-"),
        ("@", "'@"),
        ("sip:alice@example.com", "sip:alice@example.com"),
    ],
)
def test_a_phone_written_as_a_plain_number_is_kept(cell: str, written: str) -> None:
    """Digits with spaces and + - . ( ) can hold no formula and stay as written; anything more
    that starts like a formula gets its quote."""
    assert neutralise_phone(cell) == written
