"""What the command-line tests share."""

from __future__ import annotations

import subprocess

import asyncpg

# The options of a new campaign in `campaign load`. Calls at any hour: these tests run on the
# wall clock, at whatever hour CI runs them.
LOAD_OPTIONS = [
    "--from",
    "+14155550100",
    "--answer-url",
    "https://example.com/answer.xml",
    "--calling-hours",
    "any",
]


def run(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does; its output and exit code."""
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def fetch_rows(database_url: str, query: str) -> list[asyncpg.Record]:
    """The rows of one query, on a connection of its own."""
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()
