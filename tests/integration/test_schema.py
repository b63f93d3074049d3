"""sql/schema.sql is the database the migrations build, and the Python enums are its CHECKs.

schema.sql is the file a reader goes to; the migrations are what `campaign migrate` applies.
Both are applied to two fresh databases and their catalogs compared, object by object, so that
neither can change without the other.
"""

from __future__ import annotations

import re
from enum import StrEnum
from importlib import resources

import asyncpg
import pytest

from campaign import db
from campaign.models import (
    CallbackEvent,
    CallStatus,
    CampaignStatus,
    ContactStatus,
    RedialableCallStatus,
    RequestOutcome,
)

# What each part of the catalog is compared by. `schema_migrations` belongs to the migrations
# runner, not to the schema.
CATALOG: dict[str, str] = {
    "columns": """
        SELECT c.relname AS relation, c.relkind::text AS kind, a.attname AS column_name,
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) AS position,
               format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
               pg_get_expr(d.adbin, d.adrelid) AS default_value,
               a.attidentity::text AS identity, a.attgenerated::text AS generated
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'schema_migrations'
    """,
    "constraints": """
        SELECT conrelid::regclass::text AS relation, conname AS name,
               pg_get_constraintdef(oid) AS definition
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'schema_migrations'
    """,
    "indexes": """
        SELECT tablename AS relation, indexname AS name, indexdef AS definition
        FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
    """,
    "sequences": """
        SELECT sequencename AS name, data_type::text AS type, increment_by, min_value
        FROM pg_sequences WHERE schemaname = 'public'
    """,
    "views": """
        SELECT viewname AS name, definition FROM pg_views WHERE schemaname = 'public'
    """,
    "functions": """
        SELECT p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,
               pg_get_functiondef(p.oid) AS definition
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    """,
    "types": """
        SELECT t.typname AS name, t.typtype::text AS kind,
               format_type(r.rngsubtype, NULL) AS range_of
        FROM pg_type t LEFT JOIN pg_range r ON r.rngtypid = t.oid
        WHERE t.typnamespace = 'public'::regnamespace
          AND t.typname NOT IN ('schema_migrations', '_schema_migrations')
    """,
    "triggers": """
        SELECT tgrelid::regclass::text AS relation, tgname AS name,
               pg_get_triggerdef(oid) AS definition
        FROM pg_trigger WHERE NOT tgisinternal
    """,
}


async def catalog(url: str) -> dict[str, set[tuple[object, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        return {
            part: {tuple(record.values()) for record in await connection.fetch(query)}
            for part, query in CATALOG.items()
        }
    finally:
        await connection.close()


def schema_sql() -> str:
    return resources.files("campaign").joinpath("sql/schema.sql").read_text(encoding="utf-8")


@pytest.fixture
async def schema_database_url(empty_database_url: str) -> str:
    """A fresh database built from schema.sql alone."""
    connection = await asyncpg.connect(empty_database_url)
    try:
        await connection.execute(schema_sql())
    finally:
        await connection.close()
    return empty_database_url


async def test_schema_sql_builds_the_database_the_migrations_build(
    database_url: str, schema_database_url: str
) -> None:
    """Every column (type, default, order), constraint, index, sequence, view, function body and
    trigger is the same whether the database was migrated or built from schema.sql."""
    migrated = await catalog(database_url)
    from_schema = await catalog(schema_database_url)
    differences = []
    for part in CATALOG:
        for row in sorted(migrated[part] - from_schema[part], key=repr):
            differences.append(f"{part}: only after the migrations: {row}")
        for row in sorted(from_schema[part] - migrated[part], key=repr):
            differences.append(f"{part}: only in schema.sql: {row}")
    assert not differences, "\n".join(differences)
    assert migrated["functions"], "the comparison saw no functions at all"


async def test_the_comparison_notices_a_difference(schema_database_url: str) -> None:
    """A function body changed by one comment is a difference (the test above can fail)."""
    before = await catalog(schema_database_url)
    connection = await asyncpg.connect(schema_database_url)
    try:
        definition: str = await connection.fetchval(
            "SELECT pg_get_functiondef('recover_expired_leases'::regproc)"
        )
        await connection.execute(definition.replace("WITH recovered", "-- x\n    WITH recovered"))
    finally:
        await connection.close()
    after = await catalog(schema_database_url)
    assert before["functions"] != after["functions"]


def _check_values(definition: str) -> set[str]:
    """The text literals a CHECK constraint lists, e.g. CHECK (status = ANY (ARRAY['a', …]))."""
    return set(re.findall(r"'([^']*)'::text", definition))


@pytest.mark.parametrize(
    ("constraint", "enum"),
    [
        ("campaigns_status_check", CampaignStatus),
        ("contacts_status_check", ContactStatus),
        ("contacts_call_status_check", CallStatus),
        ("dial_requests_outcome_check", RequestOutcome),
        ("call_events_event_check", CallbackEvent),
        ("campaigns_redial_on_check", RedialableCallStatus),
    ],
)
async def test_python_enums_mirror_the_check_constraints(
    database_url: str, constraint: str, enum: type[StrEnum]
) -> None:
    """Each enum of campaign/models.py holds exactly the values its CHECK constraint allows."""
    connection = await asyncpg.connect(database_url)
    try:
        definition = await connection.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", constraint
        )
    finally:
        await connection.close()
    assert definition is not None, f"no constraint {constraint}"
    assert _check_values(definition) == {member.value for member in enum}


def test_schema_sql_defines_every_function_the_migrations_define() -> None:
    """No function of the migrations is missing from schema.sql by name (a quick check that
    needs no database, naming what to add)."""
    defined = set(re.findall(r"CREATE FUNCTION (\w+)\(", schema_sql()))
    migrated: set[str] = set()
    statement = re.compile(r"^(CREATE (?:OR REPLACE )?|DROP )FUNCTION (\w+)\(", re.MULTILINE)
    for migration in db.load_migrations():
        for verb, name in statement.findall(migration.sql):
            if verb == "DROP ":
                migrated.discard(name)
            else:
                migrated.add(name)
    assert migrated == defined
