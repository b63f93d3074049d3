"""Spreadsheet formulas in the CSV files we write (`campaign export`, `load --rejects`).

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by
Excel, LibreOffice and Google Sheets: `=HYPERLINK("http://…")` from an uploaded contact file
would run in the spreadsheet of whoever opens the export. Such a cell gets a leading single
quote (OWASP's "CSV injection" rule), which every one of them shows as text.

Which cells, decided per column (README, `campaign export`):
- text from outside the engine (the contact's own CSV columns and their names, Plivo's hangup
  causes and errors, a rejected value) is neutralised;
- `destination` is left alone: the engine wrote it, always E.164 (`+` and digits) or
  `sip:…`, so its `+` is the data users expect and it cannot hold a formula;
- the phone as the user wrote it (`raw_destination`, a rejected value) is left alone when it
  is a plain number (digits, spaces and `+ - . ( )` only: arithmetic at most, nothing a
  spreadsheet can run or send anywhere), so `+1 415 555 0123` stays as written;
- numbers, times and booleans are written by the engine and start with a digit or a letter.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+\-]?[0-9 ().\-]*[0-9][0-9 ().\-]*", re.ASCII)


def neutralise(cell: str) -> str:
    """The cell as text a spreadsheet will not run: a leading `'` if it starts like a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def neutralise_phone(cell: str) -> str:
    """A phone value as written: kept when it is a plain number, else neutralised."""
    return cell if _PLAIN_NUMBER.fullmatch(cell) else neutralise(cell)
