"""Database URLs as messages show them: every password replaced by ***."""

from __future__ import annotations

import pytest

from campaign.db import describe_url, with_database


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://user:SEKRET@db.example.com/campaign",
            "postgresql://user:***@db.example.com/campaign",
        ),
        ("postgres://user:S%40KRET%3A@h:5432,h2:5433/db", "postgres://user:***@h:5432,h2:5433/db"),
        ("postgresql://user@h/db?password=SEKRET", "postgresql://user@h/db?password=***"),
        (
            "postgresql://h/db?sslmode=require&password=SEK%26RET&application_name=x",
            "postgresql://h/db?sslmode=require&password=***&application_name=x",
        ),
        ("postgresql://h/db?sslpassword=SEKRET", "postgresql://h/db?sslpassword=***"),
        ("postgresql://h/db?pass%77ord=SEKRET", "postgresql://h/db?pass%77ord=***"),
        ("postgresql://h/db?PASSWORD=SEKRET", "postgresql://h/db?PASSWORD=***"),
        (
            "postgresql://h/db?password=a=b&password=c",
            "postgresql://h/db?password=***&password=***",
        ),
        ("postgresql:///db?host=/tmp&password=SEKRET", "postgresql:///db?host=/tmp&password=***"),
        ("postgresql://user:p@ss@h/db?password=x", "postgresql://user:***@h/db?password=***"),
        ("postgresql://user@h/db", "postgresql://user@h/db"),
        ("postgresql://h/db?host=/tmp", "postgresql://h/db?host=/tmp"),
        ("postgresql://[::1/db?password=SEKRET", "postgresql://***"),
    ],
)
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    """The userinfo's password and the password/sslpassword query parameters (plain or
    percent-encoded, any case, repeated) become ***; the rest of the URL is kept as written."""
    assert describe_url(url) == shown
    assert "SEKRET" not in describe_url(url)


def test_with_database_keeps_the_query() -> None:
    """Another database of the same server keeps host= and the other options."""
    assert with_database("postgresql://u@h/a?host=/tmp", "b") == "postgresql://u@h/b?host=/tmp"
