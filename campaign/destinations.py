"""Destinations: reading them from CSV rows (normalisation, SIP URIs, the phone column) and
the two ways they are written.

Contacts store a number in E.164 with its `+`; Plivo writes numbers without it (in a reply's
`invalid_numbers`, a callback's `To`, a call record's `to_number`). `bare_number` and
`destination_of` turn one into the other, so that rule has one home. SIP URIs are the same in
both.

Pure and light (phonenumbers only): the loader's worker processes import just this module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)

from campaign.bare_digits import Reading, is_bare_digits, read_bare_digits, region_of
from campaign.fast_numbers import FastReader, fast_reader
from campaign.timezones import ZoneNames, zones_of_e164, zones_of_number, zones_of_valid

# Header names that mark the phone column, most specific first; compared case-insensitively
# with spaces and hyphens read as underscores.
PHONE_HEADERS: tuple[str, ...] = (
    "destination",
    "phone_number",
    "phone",
    "phonenumber",
    "mobile_number",
    "mobile",
    "cell_phone",
    "cellphone",
    "cell",
    "msisdn",
    "e164",
    "telephone",
    "tel",
    "number",
    "to",
    "contact_number",
    "sip_uri",
    "sip",
)
# PostgreSQL text and jsonb cannot hold a NUL character: a row with one is rejected.
NUL = "\x00"
# A reader that leaves every value to phonenumbers (single values: options, the API, tests).
PHONENUMBERS_ONLY = FastReader(None)
_SEPARATORS = re.compile(r"[ .\-]")
SIP_URI = re.compile(r"^sip:[^\s@<>]+@[A-Za-z0-9.\-]+(:[0-9]{1,5})?(;[^\s<>]*)?$", re.IGNORECASE)


class LoadError(Exception):
    """The load cannot go on; nothing was written. The message names the file or row and the fix."""


class InvalidDestination(ValueError):
    """A CSV value is not a phone number or SIP URI we can dial; the message is the reason."""


def bare_number(destination: str) -> str:
    """A destination as Plivo writes numbers: without the leading `+` (SIP URIs unchanged)."""
    return destination.removeprefix("+")


def e164_number(destination: str) -> int | None:
    """A destination in E.164 (a `+` and 1 to 15 ASCII digits, the first not 0) as the integer of
    its digits, else None: the SQL function e164_number, by which a load looks numbers up in the
    suppression lists (an integer this gives and SQL would not would miss a listed number)."""
    digits = destination[1:]
    if (
        destination[:1] == "+"
        and 0 < len(digits) <= 15
        and digits.isascii()
        and digits.isdigit()
        and digits[0] != "0"
    ):
        return int(digits)
    return None


def destination_of(to: str) -> str:
    """A number as Plivo writes it (a callback's `To`) as contacts store it: with its `+`.

    A SIP URI keeps its form, its scheme in lower case.
    """
    value = to.strip()
    if value.lower().startswith("sip:"):
        return "sip:" + value[4:]
    return value if value.startswith("+") else f"+{value}"


def _header_key(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


def normalise_destination(
    raw: str,
    default_region: str | None,
    caller_region: str | None = None,
    reader: FastReader = PHONENUMBERS_ONLY,
) -> str:
    """E.164 with a leading + for a number, `sip:user@host` as is; else InvalidDestination.

    Without `default_region`, bare digits are read by the rule of campaign/bare_digits.py for
    a caller ID in `caller_region`; digits that could be two numbers raise AmbiguousNumber.
    """
    return read_destination(raw, default_region, caller_region, zones=False, reader=reader)[0]


@functools.cache
def loader_reader() -> FastReader:
    """The reader validate_rows reads numbers with: the compiled library where it gives
    phonenumbers' answers (campaign/fast_numbers.py), when installed. Made on first use, so
    only the validating processes load it (about 6 MiB each), not the loader's own."""
    return fast_reader()


def read_destination(
    raw: str,
    default_region: str | None,
    caller_region: str | None = None,
    *,
    zones: bool = True,
    reader: FastReader = PHONENUMBERS_ONLY,
) -> tuple[str, tuple[str, ...]]:
    """normalise_destination's destination, with the number's time zones (campaign.timezones;
    none for a SIP URI or a number whose zone phonenumbers does not know, or when not `zones`).

    `reader` answers first where it gives phonenumbers' answers (campaign/fast_numbers.py).
    """
    value = raw.strip()
    if not value:
        raise InvalidDestination("empty phone number")
    if value[:4].lower() == "sip:":
        if not SIP_URI.match(value):
            raise InvalidDestination("not a SIP URI of the form sip:user@host")
        return "sip:" + value[4:], ()
    if "<" in value:
        raise InvalidDestination("contains <, which Plivo reads as a separator of destinations")
    if default_region is None and is_bare_digits(value):
        if caller_region is not None and reader.enabled:
            # Rule 1 of campaign/bare_digits.py: a valid number of the caller ID's country.
            found = reader.region_of_valid("+" + _SEPARATORS.sub("", value))
            if found is not None and found[2] == caller_region:
                country_code, e164, _region, number_type = found
                return e164, zones_of_valid(country_code, e164, number_type) if zones else ()
        reading = _bare_digits_number(value, caller_region)
        if not zones:
            return reading.e164, ()
        if reading.number is None:  # pragma: no cover  # every reading carries its parse
            return reading.e164, zones_of_e164(reading.e164)
        return reading.e164, zones_of_number(reading.number, reading.e164)
    fast = reader.read(value, default_region)
    if fast is not None:
        country_code, e164, number_type = fast
        return e164, zones_of_valid(country_code, e164, number_type) if zones else ()
    number, e164, number_type = _parsed_number(value, default_region)
    return e164, zones_of_number(number, e164, number_type) if zones else ()


class AmbiguousNumber(InvalidDestination):
    """Bare digits without a region that may be another number than the one they make as
    country code + number, or that are a national number of the caller ID's country: a load
    refuses the whole file rather than guess. `meaning` says what the value could be, `fix`
    what to do."""

    def __init__(self, meaning: str, fix: str) -> None:
        super().__init__(f"{meaning}; {fix}")
        self.meaning = meaning
        self.fix = fix


def _bare_digits_number(value: str, caller_region: str | None) -> Reading:
    """Plivo's own format (country code + number, no `+`) when it is the only reading."""
    readings = read_bare_digits(value, caller_region)
    number = readings.as_country_code
    if number is not None and not readings.dialled and not readings.written:
        return number
    meanings = []
    if number is not None:
        meanings.append(f"{number.e164} ({number.region}) as country code and number")
    if readings.dialled:
        meanings.append(
            f"{_listed(readings.dialled, regions=False)} dialled from the caller ID's country "
            f"({caller_region})"
        )
    if readings.written:
        meanings.append(f"a number written nationally: {_listed(readings.written)}")
    if meanings:
        regions = {other.region for other in readings.written}
        if readings.dialled:
            region = str(caller_region)
        elif len(regions) == 1:
            region = regions.pop()
        else:
            region = "<its country>"
        fix = (
            f"pass --default-region {region} if the file holds national numbers, or write "
            "every number with + and its country code"
        )
        if number is not None:
            raise AmbiguousNumber(f"{value!r} could be {', or '.join(meanings)}", fix)
        if readings.dialled:
            # A national number of the caller ID's own country: the file is national.
            raise AmbiguousNumber(f"{value!r} has no country code: it is {meanings[0]}", fix)
        raise InvalidDestination(f"no country code; it could be {meanings[0]}; {fix}")
    try:
        _parsed_number("+" + value, None)
    except InvalidDestination as error:
        raise InvalidDestination(
            f"{error}, read as country code and number (no --default-region given)"
        ) from None
    # read_bare_digits found +digits invalid, so phonenumbers raised above.
    raise InvalidDestination("not a phone number")  # pragma: no cover


def _listed(readings: Sequence[Reading], *, regions: bool = True) -> str:
    """`+14155552671 (US), +3584155552671 (FI), …`: the first three."""
    listed = ", ".join(
        f"{reading.e164} ({reading.region})" if regions else reading.e164
        for reading in readings[:3]
    )
    return listed + (", …" if len(readings) > 3 else "")


def _parsed_number(value: str, default_region: str | None) -> tuple[PhoneNumber, str, int]:
    """phonenumbers' reading of a value, in E.164, with its type; InvalidDestination with the
    reason if it is not valid."""
    try:
        number = phonenumbers.parse(value, default_region)
    except NumberParseException as error:
        if error.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if value.startswith("+"):
                raise InvalidDestination("unknown country code") from None
            raise InvalidDestination(
                "no country code: write it as +<country code><number> or pass --default-region"
            ) from None
        if error.error_type == NumberParseException.NOT_A_NUMBER:
            raise InvalidDestination("not a phone number") from None
        if error.error_type in (
            NumberParseException.TOO_SHORT_NSN,
            NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            raise InvalidDestination("too short to be a phone number") from None
        raise InvalidDestination("too long to be a phone number") from None
    # A number is valid when it has a type (phonenumbers' is_valid_number computes the same
    # type and drops it; the time zones need it).
    number_type = phonenumbers.number_type(number)
    if number_type != PhoneNumberType.UNKNOWN:
        return number, phonenumbers.format_number(number, PhoneNumberFormat.E164), number_type
    reason = phonenumbers.is_possible_number_with_reason(number)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if reason == ValidationResult.TOO_SHORT:
        raise InvalidDestination("too short for a number of its country")
    if reason == ValidationResult.TOO_LONG:
        raise InvalidDestination("too long for a number of its country")
    if reason == ValidationResult.INVALID_LENGTH:
        raise InvalidDestination(f"wrong length for a number of its country ({e164})")
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        raise InvalidDestination("unknown country code")
    raise InvalidDestination(f"not an assigned number range ({e164})")


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """Where the phone number is in each row, and what the other columns are called."""

    phone_index: int
    header: tuple[str, ...] | None

    @classmethod
    def detect(cls, first_row: Sequence[str], column: str | None, source: str) -> CsvLayout:
        """Decide from the first non-blank row whether it is a header and which column to dial."""
        cells = [cell.strip() for cell in first_row]
        if column is not None:
            wanted = _header_key(column)
            for index, cell in enumerate(cells):
                if _header_key(cell) == wanted:
                    return cls._with_header(index, cells, source)
            raise LoadError(
                f"{source}: no column {column!r} in the header ({', '.join(cells)}); "
                "give --column one of these names"
            )
        keys = [_header_key(cell) for cell in cells]
        for name in PHONE_HEADERS:
            if name in keys:
                return cls._with_header(keys.index(name), cells, source)
        if len(cells) == 1:
            looks_dialable = any(ch.isdigit() for ch in cells[0]) or keys[0].startswith("sip:")
            # A lone column is the phone column; its first row is data unless it reads as a title.
            return cls(0, None) if looks_dialable else cls._with_header(0, cells, source)
        raise LoadError(
            f"{source}: no phone column found in the header ({', '.join(cells)}); "
            "name it with --column HEADER"
        )

    @classmethod
    def _with_header(cls, phone_index: int, cells: list[str], source: str) -> CsvLayout:
        """The layout of a file with this header, once nothing in it would lose a column."""
        if any(NUL in cell for cell in cells):
            raise LoadError(
                f"{source}: the header holds a NUL byte (\\0), which no column name can hold; "
                "remove it and load the file again"
            )
        first_of: dict[str, int] = {}
        for index, cell in enumerate(cells):
            if not cell:
                continue  # an unnamed column is stored as columnN, which cannot clash
            if cell in first_of:
                raise LoadError(
                    f"{source}: columns {first_of[cell] + 1} and {index + 1} of the header are "
                    f"both named {cell!r}, so one would be lost; rename one of them"
                )
            first_of[cell] = index
        return cls(phone_index, tuple(cells))


# One CSV record: the line it starts on and its cells. A plain tuple: chunks of them go to the
# validating processes, and the loader's process makes and pickles every one (a named tuple
# cost 1.7 µs a row to make and pickle there, a plain one a fraction of it).
SourceRow = tuple[int, list[str]]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that will not be dialled, and why."""

    line_number: int
    raw_value: str
    reason: str


def _nul_reason(index: int, header: tuple[str, ...] | None) -> str:
    name = header[index] if header is not None and index < len(header) and header[index] else None
    column = f"column {name!r}" if name else f"column {index + 1}"
    return f"{column} holds a NUL byte (\\0), which the database cannot store; remove it"


# Header names that mark a time zone column (compared as PHONE_HEADERS are).
TIME_ZONE_HEADERS: tuple[str, ...] = ("timezone", "time_zone", "tz")


def time_zone_column(header: tuple[str, ...] | None, name: str | None, source: str) -> int | None:
    """The index of the time zone column: the one named `name` (--timezone-column), else the
    first headed `timezone`, `time_zone` or `tz`; None when there is none."""
    keys = [_header_key(cell) for cell in header or ()]
    if name is not None:
        wanted = _header_key(name)
        if wanted in keys:
            return keys.index(wanted)
        listed = ", ".join(header or ()) or "the file has no header"
        raise LoadError(
            f"{source}: no column {name!r} in the header ({listed}); give --timezone-column "
            "one of these names"
        )
    for index, key in enumerate(keys):
        if key in TIME_ZONE_HEADERS:
            return index
    return None


@dataclass(frozen=True, slots=True)
class ZoneRule:
    """How a load gives each contact its time zones: the row's time zone column when it has a
    value, else the number's zones, else the campaign's default zone. `required`: the campaign
    has rules in its callees' local time, so a contact without a zone cannot be loaded."""

    names: ZoneNames
    column: int | None = None
    default: str | None = None
    required: bool = True


def _row_zones(
    destination: str,
    cells: Sequence[str],
    number_zones: tuple[str, ...],
    rule: ZoneRule,
    header: tuple[str, ...] | None,
) -> list[str] | str:
    """The zones of a valid row, or the reason it is rejected."""
    if rule.column is not None and rule.column < len(cells) and cells[rule.column].strip():
        given = cells[rule.column].strip()
        zone = rule.names.canonical(given)
        if zone is None:
            return (
                f"{given!r} in column {_column_name(rule.column, header)} is not an IANA time "
                f"zone name (like America/New_York){rule.names.suggestion(given)}"
            )
        return [zone]
    zones = []
    for zone in number_zones:
        known = rule.names.canonical(zone)
        if known is None and not rule.required:
            return []  # no rule reads the zones: the number's are left out, not the row
        if known is None:
            return (
                f"the number's time zone {zone} is unknown to the database (update its time "
                "zone data), so its calling hours cannot be checked; give the row a time zone "
                "column"
            )
        zones.append(known)
    if zones:
        return zones
    if rule.default is not None:
        return [rule.default]
    if rule.required:
        whose = "a SIP URI has" if destination.startswith("sip:") else "its number tells"
        return (
            f"no time zone for its calling hours ({whose} none); pass --default-timezone ZONE "
            "or give the file a timezone column"
        )
    return []


def _column_name(index: int, header: tuple[str, ...] | None) -> str:
    name = header[index] if header is not None and index < len(header) and header[index] else None
    return repr(name) if name else str(index + 1)


# A valid row as COPY takes it: line_number, raw_destination, destination, fields (JSON text),
# time_zones.
ContactRecord = tuple[int, str, str, str, list[str]]


def validate_rows(
    rows: Sequence[SourceRow],
    layout: CsvLayout,
    default_region: str | None,
    from_number: str | None,
    zone_rule: ZoneRule | None = None,
    caller_ids: frozenset[str] = frozenset(),
    required_columns: tuple[tuple[int, str], ...] = (),
) -> tuple[list[ContactRecord], list[Rejected]]:
    """Validate and normalise a chunk of rows (pure: runs in worker processes).

    With `zone_rule`, each contact gets its time zones by it (a row it gives none is rejected);
    without, none. A number of the campaign's pool of `caller_ids` is rejected, as its own
    `from_number` is. A row with an empty cell in one of `required_columns` (index, name: a
    placeholder of the campaign's message without a default) is rejected. Raises LoadError
    (naming the line) for a row that refuses the whole load.
    """
    valid: list[ContactRecord] = []
    rejected: list[Rejected] = []
    header = layout.header
    phone_index = layout.phone_index
    caller_region = region_of(from_number)
    want_zones = zone_rule is not None
    reader = loader_reader()
    # Per number of cells: the names of the fields, the phone column left out.
    field_names: dict[int, list[str]] = {}
    # Per set of a number's zones: the contact's zones by zone_rule (rows without their own).
    zones_of_set: dict[tuple[str, ...], list[str] | str] = {}
    for line_number, cells in rows:
        raw = cells[phone_index] if phone_index < len(cells) else ""
        if NUL in "".join(cells):
            with_nul = next(index for index, cell in enumerate(cells) if NUL in cell)
            rejected.append(Rejected(line_number, raw, _nul_reason(with_nul, header)))
            continue
        try:
            destination, number_zones = read_destination(
                raw, default_region, caller_region, zones=want_zones, reader=reader
            )
        except AmbiguousNumber as error:
            # Guessing could call a stranger abroad: the whole file waits for the user's word.
            raise LoadError(
                f"line {line_number}: {error.meaning}; nothing was loaded: {error.fix}"
            ) from None
        except InvalidDestination as error:
            rejected.append(Rejected(line_number, raw, str(error)))
            continue
        if destination == from_number:
            rejected.append(Rejected(line_number, raw, "is the campaign's own from number"))
            continue
        if destination in caller_ids:
            rejected.append(Rejected(line_number, raw, "is one of the campaign's caller IDs"))
            continue
        empty = None
        if required_columns:
            empty = next(
                (name for index, name in required_columns
                 if index >= len(cells) or not cells[index].strip()),
                None,
            )  # fmt: skip
        if empty is not None:
            rejected.append(
                Rejected(
                    line_number,
                    raw,
                    f"column {empty!r} is empty and the campaign's message says it "
                    f"(give it a value, or write {{{empty}|default}} in the message)",
                )
            )
            continue
        zones: list[str] = []
        if zone_rule is not None:
            own_zone = (
                zone_rule.column is not None
                and zone_rule.column < len(cells)
                and cells[zone_rule.column].strip()
            )
            found = None if own_zone or not number_zones else zones_of_set.get(number_zones)
            if found is None:
                found = _row_zones(destination, cells, number_zones, zone_rule, header)
                if not own_zone and number_zones:
                    # The same for every row of these zones (the list is shared, never changed).
                    zones_of_set[number_zones] = found
            if isinstance(found, str):
                rejected.append(Rejected(line_number, raw, found))
                continue
            zones = found
        names = field_names.get(len(cells))
        if names is None:
            names = field_names[len(cells)] = _field_names(len(cells), phone_index, header)
        fields = dict(zip(names, cells[:phone_index] + cells[phone_index + 1 :], strict=False))
        valid.append((line_number, raw, destination, fields_json(fields), zones))
    return valid, rejected


# A validated row as a load COPYs it: destination, time zones, and the text of its columns
# line_number, raw_destination, destination, fields and time_zones in COPY's text format
# (tab-separated, escaped), made here, in the validating processes, so that the loader's one
# process only joins it with the campaign's columns (its line and value as written:
# copy_line_number, copy_raw_value). No more: a load holds thousands of them.
CopyRecord = tuple[str, list[str], str]

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """`value` as a column of COPY's text format: backslash, tab, newline and return escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


_COPY_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def copy_line_number(record: CopyRecord) -> int:
    """The line a CopyRecord's row starts on."""
    return int(record[2].split("\t", 1)[0])


def copy_raw_value(record: CopyRecord) -> str:
    """The value of the phone column as written, from a CopyRecord's columns."""
    escaped = record[2].split("\t", 2)[1]
    if "\\" not in escaped:
        return escaped
    return re.sub(r"\\[\\tnr]", lambda match: _COPY_UNESCAPES[match[0]], escaped)


def array_copy_text(values: list[str]) -> str:
    """A text[] of `values` as a column of COPY's text format (each element quoted)."""
    quoted = ",".join(
        '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values
    )
    return copy_text("{" + quoted + "}")


def validate_rows_for_copy(
    rows: Sequence[SourceRow],
    layout: CsvLayout,
    default_region: str | None,
    from_number: str | None,
    zone_rule: ZoneRule | None = None,
    caller_ids: frozenset[str] = frozenset(),
    required_columns: tuple[tuple[int, str], ...] = (),
) -> tuple[list[CopyRecord], list[Rejected]]:
    """validate_rows, each valid row with its columns' COPY text (CopyRecord)."""
    valid, rejected = validate_rows(
        rows, layout, default_region, from_number, zone_rule, caller_ids, required_columns
    )
    # The rows of one set of zones share its list (validate_rows), so its text is made once.
    zones_text: dict[int, str] = {}
    records: list[CopyRecord] = []
    for line_number, raw, destination, fields, zones in valid:
        zones_column = zones_text.get(id(zones))
        if zones_column is None:
            zones_column = zones_text[id(zones)] = array_copy_text(zones)
        records.append(
            (
                destination,
                zones,
                f"{line_number}\t{copy_text(raw)}\t{copy_text(destination)}\t"
                f"{copy_text(fields)}\t{zones_column}",
            )
        )
    return records, rejected


def fields_json(fields: dict[str, str]) -> str:
    """`json.dumps(fields, ensure_ascii=False)`, character for character, in a third of the
    time: the same string encoder, without building an encoder per call (rows of text only)."""
    return (
        "{"
        + ", ".join(
            _json_string(name) + ": " + _json_string(value) for name, value in fields.items()
        )
        + "}"
    )


def _field_names(count: int, phone_index: int, header: tuple[str, ...] | None) -> list[str]:
    """The field names of a row of `count` cells, in order, the phone column left out: the
    header's, or `columnN` for a cell without one."""
    names = []
    for index in range(count):
        if index == phone_index:
            continue
        name = header[index] if header is not None and index < len(header) else None
        names.append(name or f"column{index + 1}")
    return names
