"""Test harness: a real PostgreSQL, and a fresh database per test cloned from a migrated template.

CAMPAIGN_TEST_DATABASE_URL names a server to use (CI: the machine's PostgreSQL); without it the
tests start an embedded PostgreSQL (pgserver) in a temporary folder, so a laptop needs nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from browser_fixtures import browser, browser_page, dashboard  # noqa: F401  # tests/browser/
from clock_fixtures import clock, clocked_pool  # noqa: F401  # fixtures for every test

from campaign import db
from campaign.config import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server the tests may create and drop databases on."""
    configured = os.environ.get("CAMPAIGN_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    # From the module that defines it: the package re-exports it without `__all__`.
    from pgserver.postgres_server import get_server

    folder = tempfile.mkdtemp(prefix="campaign-test-pg-")
    server = get_server(folder, cleanup_mode="delete")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
async def template_database(server_url: str) -> AsyncIterator[str]:
    """The name of a database with every migration applied, to clone per test."""
    name = f"campaign_template_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    connection = await asyncpg.connect(db.with_database(server_url, name))
    try:
        await db.migrate(connection)
    finally:
        await connection.close()
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database_url(server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"campaign_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield db.with_database(server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all, for migration tests."""
    name = f"campaign_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield db.with_database(server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database and nothing else of the machine."""
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's database, opened the way the commands open theirs."""
    async with db.open_pool(settings) as opened:
        yield opened


@pytest.fixture
async def status_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The HTTP side's own pool for /metrics and /healthz, as the commands open it."""
    async with db.open_status_pool(settings) as opened:
        yield opened


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment for running `campaign` as a subprocess against this test's database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CAMPAIGN_", "PLIVO_"))
    }
    env["CAMPAIGN_DATABASE_URL"] = database_url
    env["CAMPAIGN_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def campaign_command() -> list[str]:
    """How to run the `campaign` CLI of this checkout as a subprocess."""
    return [sys.executable, "-m", "campaign"]
