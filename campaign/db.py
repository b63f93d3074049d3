"""Database access: the embedded PostgreSQL fallback, connection pools and the migrations runner."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import asyncpg

from campaign.config import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

EMBEDDED_DATABASE = "campaign"
# Any fixed 64-bit number: every `campaign` process takes this lock to migrate.
MIGRATION_LOCK_KEY = 0x63616D706169676E  # "campaign"
MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class DatabaseError(Exception):
    """The database cannot be used as configured; the message says why and what to do."""


class MigrationError(DatabaseError):
    """The migrations cannot be applied (an edited file, a database ahead of this code)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file of migrations/."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def _migrations_dir() -> Traversable:
    # In a source checkout the files are read where they are edited; installed, they ship as
    # the package `campaign.migrations` (see pyproject.toml).
    source_tree = Path(__file__).resolve().parent.parent / "migrations"
    if source_tree.is_dir():
        return source_tree
    return resources.files("campaign.migrations")


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """Every migration file, in order; a badly named .sql file is an error, not skipped."""
    folder = directory if directory is not None else _migrations_dir()
    migrations = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = MIGRATION_FILE.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name} is not named NNNN_lowercase_words.sql; rename it"
            )
        migrations.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number; renumber the newer one")
    return migrations


_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def _applied(connection: asyncpg.Connection) -> dict[int, tuple[str, str]]:
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {row["version"]: (row["name"], row["checksum"]) for row in rows}


def _check_applied(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    known = {migration.version: migration for migration in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name} that this version of campaign "
                "does not know; upgrade campaign"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.filename} was edited after it was applied; restore it "
                "and put the change in a new migration file"
            )


async def migrate(
    connection: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply the pending migrations under an advisory lock; return the ones applied now."""
    if migrations is None:
        migrations = load_migrations()
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(_SCHEMA_MIGRATIONS)
        applied = await _applied(connection)
        _check_applied(migrations, applied)
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            logger.info("applied migration %s", migration.filename)
            done.append(migration)
        return done
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def pending_migrations(connection: asyncpg.Connection) -> list[Migration]:
    """The migrations not yet applied (after checking the applied ones were not edited)."""
    migrations = load_migrations()
    applied = await _applied(connection)
    _check_applied(migrations, applied)
    return [migration for migration in migrations if migration.version not in applied]


def _start_embedded(data_dir: Path) -> str:
    # pgserver is imported here: it is only needed when no database URL is configured.
    # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); pgserver then keeps its
    # lock file under /tmp, which is what we want.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]  # re-exported without __all__
        data_dir / "pgdata", cleanup_mode="stop"
    )
    if EMBEDDED_DATABASE not in server.psql("SELECT datname FROM pg_database;"):
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return str(server.get_uri(EMBEDDED_DATABASE))


async def resolve_database_url(settings: Settings) -> tuple[str, bool]:
    """The URL to connect to, and whether it is the embedded server (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url, False
    try:
        url = await asyncio.to_thread(_start_embedded, settings.data_dir)
    except Exception as error:
        raise DatabaseError(
            f"cannot start the embedded PostgreSQL in {settings.data_dir} ({type(error).__name__}:"
            f" {error}); set CAMPAIGN_DATABASE_URL to use a PostgreSQL server, or "
            "CAMPAIGN_DATA_DIR to another folder"
        ) from None
    return url, True


def with_database(url: str, database: str) -> str:
    """The same server's URL for another database (query options such as host= are kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


# Query parameters of a libpq URL that carry a secret (`?password=…` works as the userinfo does).
SECRET_URL_PARAMETERS = frozenset({"password", "sslpassword"})


def describe_url(url: str) -> str:
    """The URL without its secrets, for messages: the userinfo's password and the `password` and
    `sslpassword` query parameters (their names and values may be percent-encoded) become ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        # Not even a URL (an unclosed [ in the host): show its scheme only.
        return url.split(":", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{item.split('=', 1)[0]}=***"
        if unquote_plus(item.split("=", 1)[0]).strip().lower() in SECRET_URL_PARAMETERS
        else item
        for item in parts.query.split("&")
    )
    # Rebuilt by hand: urlunsplit drops the empty host of `postgresql:///db?host=/tmp`.
    described = f"{parts.scheme}://{netloc}{parts.path}"
    return described + (f"?{query}" if parts.query else "")


# Anything a statement can fail with because of the database or the connection to it.
# InternalClientError: for a moment after the server ends a pooled connection, asyncpg may hand
# it out before it noticed; the statement then fails before being sent (asyncpg issues 784, 1069).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
# Of those, the ones that mean "the connection or the server went away": retried, never fatal.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
# Errors that undo only the statement that hit them (a deadlock with another worker's lease
# recovery or a callback batch): running the same statement again is safe.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


async def retry_until_done(
    operation: Callable[[], Awaitable[T]], *, give_up_after_s: float, what: str
) -> T:
    """Run a write that must land (it records what Plivo said), through lost connections and
    deadlocks, backing off from 0.1 s to 5 s, for at most `give_up_after_s`."""
    deadline = time.monotonic() + give_up_after_s
    delay_s = 0.1
    while True:
        try:
            return await operation()
        except (*CONNECTION_ERRORS, *RETRYABLE_ERRORS) as error:
            if time.monotonic() > deadline:
                raise
            logger.warning("%s: %s; retrying in %.1fs", what, error, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


async def durability_warnings(executor: asyncpg.Pool) -> list[str]:
    """What in the server's settings weakens the promise that nothing is dialled twice: a
    request's write-ahead must survive a crash (and a failover) before the request is sent."""
    warnings_found = []
    if await executor.fetchval("SHOW synchronous_commit") == "off":
        warnings_found.append(
            "the database runs with synchronous_commit = off: a crash may lose a request written"
            " ahead after it was sent, and its contacts could be dialled twice; set it to on (and"
            " to remote_apply or on with synchronous_standby_names when a standby may take over)"
        )
    return warnings_found


# And asyncpg refusing the URL itself (ValueError, OverflowError: a port of 99999).
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, ValueError, OverflowError)


async def connect(url: str, **options: Any) -> asyncpg.Connection:
    """One connection, with a clear error when the server cannot be reached."""
    try:
        return await asyncpg.connect(url, **options)
    except _CONNECT_ERRORS as error:
        raise DatabaseError(
            f"cannot connect to the database at {describe_url(url)}: {error}; check "
            "CAMPAIGN_DATABASE_URL"
        ) from None


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb arrives and leaves as Python objects, so queries never build JSON by hand.
    import json

    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


@contextlib.asynccontextmanager
async def open_pool(settings: Settings, *, min_connections: int = 0) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database whose schema is current.

    The embedded database is migrated on the spot; a configured server must have been migrated
    with `campaign migrate`, so that upgrading the schema of a shared database stays a choice.
    """
    url, embedded = await resolve_database_url(settings)
    connection = await connect(url)
    try:
        if embedded:
            await migrate(connection)
        else:
            pending = await pending_migrations(connection)
            if pending:
                raise DatabaseError(
                    f"the database at {describe_url(url)} lacks {len(pending)} migration(s) "
                    f"(first: {pending[0].filename}); run `campaign migrate`"
                )
    finally:
        await connection.close()
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            # A worker holds one connection per batch in flight, plus one to LISTEN.
            max_size=max(settings.database_pool_size, min_connections),
            init=_init_connection,
        )
    except (OSError, asyncpg.PostgresError) as error:
        raise DatabaseError(f"cannot connect to {describe_url(url)}: {error}") from None
    try:
        yield pool
    finally:
        await pool.close()


# /metrics and /healthz each read through one connection at a time (single-flight), so two
# connections are all their pool ever needs, whatever the number of HTTP requests.
STATUS_POOL_CONNECTIONS = 2
# The HTTP API's requests share this many connections (a load through the API holds one while
# it runs, and a second for its suppression look-ups when one is free); more requests wait for
# one, never for a connection of the dialing pool.
API_POOL_CONNECTIONS = 4
# The webhook deliverer's claims and records are short statements; endpoints drained at once
# share these few connections.
WEBHOOK_POOL_CONNECTIONS = 4


@contextlib.asynccontextmanager
async def _side_pool(
    settings: Settings, connections: int, server_settings: dict[str, str] | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A small pool of its own, apart from the pool a worker dials and records with, so that
    what uses it can never hold a connection a claim or a reply needs. Opened after
    `open_pool` (which started and migrated an embedded server); it connects lazily, so a
    database that is down does not stop the service from starting."""
    url, _embedded = await resolve_database_url(settings)
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=0,
            max_size=connections,
            init=_init_connection,
            server_settings=server_settings,
        )
    except (OSError, asyncpg.PostgresError) as error:
        raise DatabaseError(f"cannot connect to {describe_url(url)}: {error}") from None
    try:
        yield pool
    finally:
        await pool.close()


def open_status_pool(settings: Settings) -> contextlib.AbstractAsyncContextManager[asyncpg.Pool]:
    """The HTTP side's reads (/metrics, /healthz): no scrape can hold a dialing connection."""
    return _side_pool(settings, STATUS_POOL_CONNECTIONS)


def open_api_pool(settings: Settings) -> contextlib.AbstractAsyncContextManager[asyncpg.Pool]:
    """The HTTP API (/api/v1/): no number of API requests can hold a dialing connection."""
    return _side_pool(settings, API_POOL_CONNECTIONS)


# The dashboard's pages, actions and snapshots (one per interval however many pages watch), and
# while anyone watches one connection LISTENing for the hub.
DASHBOARD_POOL_CONNECTIONS = 5


def open_dashboard_pool(settings: Settings) -> contextlib.AbstractAsyncContextManager[asyncpg.Pool]:
    """The dashboard's pool (campaign/dashboard/), apart from the dialing pool. Without JIT:
    its statements are short, and the planner's guesses for the calling windows' candidate
    moments (generate_series) made it compile them, ~350 ms, each time."""
    return _side_pool(settings, DASHBOARD_POOL_CONNECTIONS, {"jit": "off"})


def open_webhook_pool(settings: Settings) -> contextlib.AbstractAsyncContextManager[asyncpg.Pool]:
    """Delivering webhooks (campaign/webhooks): no receiver, however slow, holds a dialing
    connection."""
    return _side_pool(settings, WEBHOOK_POOL_CONNECTIONS)
