"""The migrations runner: once each, safe when run concurrently, refusing edited files."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
import pytest

from campaign import db
from campaign.config import Settings


async def test_migrate_twice_applies_each_file_once(empty_database_url: str) -> None:
    """A second `migrate` finds nothing to do and leaves one row per migration."""
    connection = await asyncpg.connect(empty_database_url)
    try:
        first = await db.migrate(connection)
        second = await db.migrate(connection)
        rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
    finally:
        await connection.close()
    migrations = db.load_migrations()
    assert [migration.version for migration in first] == [m.version for m in migrations]
    assert second == []
    assert sorted((row["version"], row["checksum"]) for row in rows) == [
        (migration.version, migration.checksum) for migration in migrations
    ]


async def test_concurrent_migrations_do_not_collide(empty_database_url: str) -> None:
    """Four processes' worth of connections migrating at once: one applies, none fails."""
    connections = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(db.migrate(connection) for connection in connections))
        count = await connections[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for connection in connections:
            await connection.close()
    applied_lists = [result for result in results if result]
    assert len(applied_lists) == 1
    assert count == len(db.load_migrations())


async def test_edited_migration_is_refused(empty_database_url: str) -> None:
    """A migration file changed after it was applied stops `migrate` with the file's name."""
    connection = await asyncpg.connect(empty_database_url)
    try:
        await db.migrate(connection)
        migrations = db.load_migrations()
        edited = [replace(migrations[0], sql=migrations[0].sql + "\n-- edited\n"), *migrations[1:]]
        with pytest.raises(db.MigrationError, match=f"{migrations[0].filename} was edited"):
            await db.migrate(connection, edited)
    finally:
        await connection.close()


async def test_unmigrated_server_database_is_not_opened(empty_database_url: str) -> None:
    """A configured (non-embedded) database without the schema asks for `campaign migrate`."""
    settings = Settings(database_url=empty_database_url)
    with pytest.raises(db.DatabaseError, match="run `campaign migrate`"):
        async with db.open_pool(settings):
            pass


async def test_database_ahead_of_code_is_refused(database_url: str) -> None:
    """A database with a migration this code does not know asks to upgrade campaign."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')"
        )
        with pytest.raises(db.MigrationError, match="upgrade campaign"):
            await db.migrate(connection)
    finally:
        await connection.close()


async def test_unreachable_database_names_the_setting() -> None:
    """A database that cannot be reached is reported with the setting to check, no password."""
    settings = Settings(database_url="postgresql://user:hunter2@127.0.0.1:1/nowhere")
    with pytest.raises(db.DatabaseError) as raised:
        async with db.open_pool(settings):
            pass
    assert "CAMPAIGN_DATABASE_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)
