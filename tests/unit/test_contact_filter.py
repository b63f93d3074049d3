"""The contact filter's checks (campaign/contact_filter.py), pure: what a bad value is called and
what the binds of its SQL are."""

from __future__ import annotations

import pytest

from campaign.contact_filter import ContactFilter, FilterError


@pytest.mark.parametrize(
    ("flt", "field", "words"),
    [
        (ContactFilter(statuses=("failed", "done")), "statuses", "unknown status 'done'"),
        (ContactFilter(outcomes=("hung up",)), "outcomes", "unknown outcome 'hung up'"),
        (ContactFilter(time_zone="Mars/Olympus"), "time_zone", "America/New_York"),
        (ContactFilter(time_zone="../../etc/passwd"), "time_zone", "unknown time zone"),
        (ContactFilter(time_zone=" UTC"), "time_zone", "unknown time zone"),
        (ContactFilter(search=""), "search", "1 to 200 characters"),
        (ContactFilter(response="x" * 201), "response", "1 to 200 characters"),
    ],
)
def test_a_bad_value_names_its_field_and_what_is_allowed(
    flt: ContactFilter, field: str, words: str
) -> None:
    """Each bad value is a FilterError naming the field, with the allowed values or an
    example in its message."""
    with pytest.raises(FilterError) as error:
        flt.checked()
    assert error.value.field == field
    assert words in error.value.message


def test_a_good_filter_binds_none_for_what_it_leaves_open() -> None:
    """Empty fields bind NULL (any); the rest bind as given, lists as lists."""
    assert ContactFilter().checked().query_args() == (None, None, None, None, None)
    flt = ContactFilter(("failed", "fired"), ("busy",), "America/New_York", "confirmed", "555")
    assert flt.checked().query_args() == (
        ["failed", "fired"],
        ["busy"],
        "America/New_York",
        "confirmed",
        "555",
    )
