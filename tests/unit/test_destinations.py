"""Reading destinations: number normalisation, SIP URIs, finding the phone column, and the
bare form Plivo writes numbers in."""

from __future__ import annotations

import json
import pickle

import pytest

from campaign.destinations import (
    CsvLayout,
    InvalidDestination,
    LoadError,
    ZoneRule,
    array_copy_text,
    bare_number,
    copy_line_number,
    copy_raw_value,
    copy_text,
    destination_of,
    fields_json,
    normalise_destination,
    validate_rows,
    validate_rows_for_copy,
)
from campaign.timezones import ZoneNames


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+1 415 555 0123", None, "+14155550123"),
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "US", "+14155550123"),
        ("1-415-555-0123", "US", "+14155550123"),
        ("14155550123", None, "+14155550123"),
        ("  +44 20 7946 0000 ", "US", "+442079460000"),
        ("020 7946 0000", "GB", "+442079460000"),
        ("+91 98765 43210", None, "+919876543210"),
    ],
)
def test_numbers_become_e164(raw: str, region: str | None, e164: str) -> None:
    """Numbers in national or international formats are stored as E.164 with a leading +."""
    assert normalise_destination(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sip:john1234@phone.plivo.com", "sip:john1234@phone.plivo.com"),
        ("SIP:alice@example.com:5060", "sip:alice@example.com:5060"),
    ],
)
def test_sip_uris_are_kept(raw: str, expected: str) -> None:
    """SIP destinations are kept as they are (only the scheme is lower-cased)."""
    assert normalise_destination(raw, None) == expected


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "US", "empty"),
        ("   ", "US", "empty"),
        ("not a number", "US", "not a phone number"),
        ("555-01", "US", "too short"),
        ("(415) 555-0123", None, "no country code"),
        ("+999 1234567", None, "unknown country code"),
        ("+1 415 555 01234567", None, "too long"),
        ("+1 099 555 0123", None, "not an assigned number range"),
        ("sip:nobody", None, "SIP URI"),
        ("sip:a<b@example.com", None, "SIP URI"),
        ("+14155550123<+14155550124", None, "separator"),
    ],
)
def test_invalid_destinations_say_why(raw: str, region: str | None, reason: str) -> None:
    """Each rejected value carries a reason a person can act on."""
    with pytest.raises(InvalidDestination) as raised:
        normalise_destination(raw, region)
    assert reason in str(raised.value)


@pytest.mark.parametrize(
    ("header", "index"),
    [
        (["name", "Phone"], 1),
        (["Mobile Number", "name"], 0),
        (["id", "TO", "city"], 1),
        (["destination", "phone"], 0),
        (["first-name", "cell phone"], 1),
        (["MSISDN"], 0),
    ],
)
def test_phone_column_found_by_header(header: list[str], index: int) -> None:
    """The phone column is found by its header name in any case, spaces or hyphens."""
    layout = CsvLayout.detect(header, None, "f.csv")
    assert layout.phone_index == index
    assert layout.header == tuple(header)


def test_column_option_names_the_phone_column() -> None:
    """--column picks the column even when another header looks like a phone column."""
    layout = CsvLayout.detect(["phone", "Work Number"], "work number", "f.csv")
    assert layout.phone_index == 1


def test_unknown_column_lists_the_headers() -> None:
    """--column naming a missing header fails with the headers the file has."""
    with pytest.raises(LoadError, match=r"no column 'fax' in the header \(name, phone\)"):
        CsvLayout.detect(["name", "phone"], "fax", "f.csv")


def test_no_phone_column_asks_for_column_option() -> None:
    """A multi-column file with no recognisable phone header asks for --column."""
    with pytest.raises(LoadError, match="--column"):
        CsvLayout.detect(["name", "city"], None, "f.csv")


@pytest.mark.parametrize(
    ("header", "column", "message"),
    [
        (["name", "phone", "name"], None, "columns 1 and 3 of the header are both named 'name'"),
        (
            ["phone", "notes", " phone"],
            None,
            "columns 1 and 3 of the header are both named 'phone'",
        ),
        (["a", "b", "a"], "b", "columns 1 and 3 of the header are both named 'a'"),
    ],
)
def test_a_duplicated_header_is_refused_naming_both_columns(
    header: list[str], column: str | None, message: str
) -> None:
    """Two columns with one name would keep only one of them in `fields`: the file is refused
    with one line naming both columns and the fix."""
    with pytest.raises(LoadError) as raised:
        CsvLayout.detect(header, column, "f.csv")
    assert str(raised.value) == f"f.csv: {message}, so one would be lost; rename one of them"


def test_unnamed_columns_and_other_cases_are_not_duplicates() -> None:
    """Empty header cells are stored as columnN, and `Name` and `name` are two keys of
    `fields`: such headers are accepted."""
    assert CsvLayout.detect(["phone", "", ""], None, "f.csv").header == ("phone", "", "")
    assert CsvLayout.detect(["phone", "Name", "name"], None, "f.csv").phone_index == 0


def test_a_nul_byte_in_the_header_is_refused() -> None:
    """PostgreSQL cannot store a NUL: a header holding one is one line, not a traceback."""
    with pytest.raises(LoadError) as raised:
        CsvLayout.detect(["phone", "no\x00tes"], None, "f.csv")
    assert str(raised.value) == (
        "f.csv: the header holds a NUL byte (\\0), which no column name can hold; remove it "
        "and load the file again"
    )


def test_a_nul_byte_in_any_field_rejects_its_row() -> None:
    """A NUL in the phone or in any other column rejects that row, naming the column; the
    other rows load."""
    layout = CsvLayout(1, ("name", "phone", "notes"))
    rows = [
        (2, ["Ada\x00", "+14155550123", "x"]),
        (3, ["Bob", "+1415555\x000124", "y"]),
        (4, ["Cy", "+14155550125", "z", "\x00"]),
        (5, ["Di", "+14155550126", "fine"]),
    ]
    valid, rejected = validate_rows(rows, layout, None, None)
    assert [record[0] for record in valid] == [5]
    assert [(row.line_number, row.reason) for row in rejected] == [
        (2, "column 'name' holds a NUL byte (\\0), which the database cannot store; remove it"),
        (3, "column 'phone' holds a NUL byte (\\0), which the database cannot store; remove it"),
        (4, "column 4 holds a NUL byte (\\0), which the database cannot store; remove it"),
    ]


def test_one_column_without_header_is_all_data() -> None:
    """A one-column file whose first row is a number has no header."""
    assert CsvLayout.detect(["+14155550123"], None, "f.csv") == CsvLayout(0, None)
    assert CsvLayout.detect(["Numbers"], None, "f.csv") == CsvLayout(0, ("Numbers",))


def test_validate_rows_keeps_other_columns_and_rejects_from_number() -> None:
    """Other columns go to fields by header; the campaign's own from number is rejected."""
    layout = CsvLayout(1, ("name", "phone", "slot"))
    rows = [
        (2, ["Ada", "(415) 555-0123", "10:00"]),
        (3, ["Bob", "+1 415 555 0100", "11:00"]),
        (4, ["Cy"]),
        (5, ["Di", "+1 415 555 0124", "12:00", "extra"]),
    ]
    valid, rejected = validate_rows(rows, layout, "US", "+14155550100")
    assert valid[0] == (
        2,
        "(415) 555-0123",
        "+14155550123",
        '{"name": "Ada", "slot": "10:00"}',
        [],
    )
    assert valid[1][3] == '{"name": "Di", "slot": "12:00", "column4": "extra"}'
    assert [(row.line_number, row.reason) for row in rejected] == [
        (3, "is the campaign's own from number"),
        (4, "empty phone number"),
    ]


def test_fields_json_is_json_dumps_character_for_character() -> None:
    """The loader's JSON of a row's fields is json.dumps(ensure_ascii=False)'s, for quotes,
    backslashes, control characters, non-ASCII text, emoji and empty values; a chunk of rows
    pickles to the validating processes and back unchanged."""
    samples = [
        {},
        {"name": "Ada"},
        {'a "quoted"': "back\\slash", "tab\t": "line\nbreak\r\x01\x1f"},
        {"ñame": "Zo\u00eb \u2013 \u201ccurly\u201d \u260e \U0001f600", "": "", "column4": "<>&'"},
    ]
    for fields in samples:
        assert fields_json(fields) == json.dumps(fields, ensure_ascii=False)
        assert json.loads(fields_json(fields)) == fields
    rows = [(2, ["Ada", "+14155550123"]), (5, ["Bob", "x"])]
    assert pickle.loads(pickle.dumps(rows)) == rows  # noqa: S301  # our own bytes


@pytest.mark.parametrize(
    ("stored", "bare"),
    [
        ("+14155550123", "14155550123"),
        ("14155550123", "14155550123"),
        ("sip:john1234@phone.plivo.com", "sip:john1234@phone.plivo.com"),
    ],
)
def test_bare_number_drops_only_the_plus(stored: str, bare: str) -> None:
    """Plivo's form of a destination is the number without its `+`; SIP URIs stay as they are."""
    assert bare_number(stored) == bare


@pytest.mark.parametrize(
    ("to", "stored"),
    [
        ("14155550123", "+14155550123"),
        ("+14155550123", "+14155550123"),
        (" 14155550123 ", "+14155550123"),
        ("SIP:alice@example.com", "sip:alice@example.com"),
    ],
)
def test_destination_of_restores_the_stored_form(to: str, stored: str) -> None:
    """A number as Plivo writes it reads back as the contact stored it; it undoes bare_number."""
    assert destination_of(to) == stored
    assert destination_of(bare_number(stored)) == stored


def test_a_numbers_zone_the_database_does_not_know_rejects_only_where_hours_apply() -> None:
    """A zone of the number's prefix that the database does not know: with calling hours the
    row is rejected (its hours could not be checked); without, it loads with no zones."""
    layout = CsvLayout(0, ("phone",))
    rows = [(2, ["+14155550123"])]
    names = ZoneNames(["Europe/London"])  # no America/Los_Angeles
    valid, rejected = validate_rows(rows, layout, None, None, ZoneRule(names, required=True))
    assert valid == []
    assert "America/Los_Angeles is unknown to the database" in rejected[0].reason
    valid, rejected = validate_rows(rows, layout, None, None, ZoneRule(names, required=False))
    assert (rejected, [record[4] for record in valid]) == ([], [[]])


def test_rows_for_copy_carry_their_columns_in_copy_s_text_format() -> None:
    """validate_rows_for_copy gives each valid row its columns as COPY's text format reads
    them (tab-separated; backslash, tab, newline and return escaped; zones as a quoted array),
    from which the loader recovers the line and the value as written."""
    layout = CsvLayout.detect(["name", "phone"], None, "f.csv")
    rows = [(2, ["a\tb\\c\nd\re", "(415) 555-0123"]), (3, ["x", "sip:al\\ice@example.com"])]
    names = ZoneNames(["America/Los_Angeles", "Etc/UTC"])
    valid, rejected = validate_rows_for_copy(
        rows, layout, "US", None, ZoneRule(names, None, "Etc/UTC", required=True)
    )
    assert rejected == []
    first, second = valid
    assert first[0] == "+14155550123"
    assert first[2] == (
        '2\t(415) 555-0123\t+14155550123\t{"name": "a\\\\tb\\\\\\\\c\\\\nd\\\\re"}'
        '\t{"America/Los_Angeles"}'
    )
    assert (copy_line_number(first), copy_raw_value(first)) == (2, "(415) 555-0123")
    assert second[2].split("\t")[1] == "sip:al\\\\ice@example.com"
    assert copy_raw_value(second) == "sip:al\\ice@example.com"
    assert copy_text("\\N") == "\\\\N"
    assert array_copy_text(['a"b', "c\\d"]) == '{"a\\\\"b","c\\\\\\\\d"}'
