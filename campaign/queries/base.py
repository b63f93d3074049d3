"""The named statements of sql/queries.sql, and the connection types the query functions take."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection, whether taken from a pool or not.
Connection = asyncpg.Connection | PoolConnectionProxy
# Anything that runs a single statement: a connection, or a pool for one-off reads and writes.
Executor = Connection | asyncpg.Pool

_BLOCK_NAME = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)
# `-- === Section ===` lines group the blocks for readers; they belong to no block.
_SECTION = re.compile(r"^-- ===.*$\n?", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of `-- name --` blocks into {name: sql}; text before the first is a header."""
    parts = _BLOCK_NAME.split(_SECTION.sub("", text))
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name} is defined twice in queries.sql")
        queries[name] = body.strip()
    return queries


@cache
def _queries() -> Mapping[str, str]:
    return parse_queries(resources.files("campaign").joinpath("sql/queries.sql").read_text())


def sql(name: str) -> str:
    """The SQL of one named block (for the query functions of this package only)."""
    return _queries()[name]


def block_names() -> frozenset[str]:
    """Every named block of queries.sql."""
    return frozenset(_queries())
