"""The `campaign` group and what every command shares: settings, error lines, exit codes, signals.

A command is an async function wrapped by `run_command`, which runs it on uvloop and turns the
errors a user can cause into one line on stderr (`campaign: error: …`) and an exit code: 2 for
bad settings or options, 1 for anything else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import uvloop

from campaign import __version__, db
from campaign.config import Settings, SettingsError, load_settings
from campaign.destinations import LoadError
from campaign.specs import SpecError

logger = logging.getLogger("campaign")

P = ParamSpec("P")
T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """End the command with one clear line on stderr and a non-zero exit."""
    click.echo(f"campaign: error: {message}", err=True)
    sys.exit(code)


def run_command(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async command; turn the errors a user can cause into one line and an exit code."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            # uvloop: a faster event loop for the HTTP and database traffic of the worker.
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(function(*args, **kwargs))
        except (SettingsError, SpecError) as error:
            fail(str(error), EXIT_USAGE)
        except (LoadError, db.DatabaseError) as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted; nothing of the unfinished step was kept", 130)
        except OSError as error:
            # A port in use, a file we cannot write, the network: the system's own words.
            fail(f"{error.strerror or error}" + (f": {error.filename}" if error.filename else ""))
        except db.DATABASE_ERRORS as error:
            # The server refused a statement, or the driver lost its footing, for a reason no
            # message above explains: one line naming the command, the whole error in the log.
            name = _command_name(function)
            logger.debug("campaign %s failed in the database", name, exc_info=error)
            fail(
                f"`campaign {name}` failed in the database ({_describe_database_error(error)}); "
                "set CAMPAIGN_LOG_LEVEL=debug to log the whole error"
            )
        except Exception as error:
            from campaign.plivo import PlivoError

            if isinstance(error, PlivoError):
                # Plivo refused or could not be reached; the message never holds the token.
                fail(f"Plivo: {error}")
            raise

    return wrapper


def _command_name(function: Callable[..., object]) -> str:
    """The name the user typed (`load`), or the function's when run outside click."""
    context = click.get_current_context(silent=True)
    if context is not None and context.info_name:
        return context.info_name
    return getattr(function, "__name__", "command")


def _describe_database_error(error: BaseException) -> str:
    """The error's class and first line (asyncpg puts the server's DETAIL on later lines)."""
    text = str(error).strip().splitlines()
    sqlstate = getattr(error, "sqlstate", None)
    described = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return f"{described}, SQLSTATE {sqlstate}" if isinstance(sqlstate, str) else described


def settings_from_environment() -> Settings:
    """The Settings from CAMPAIGN_*/PLIVO_* variables, with logging set up at their level."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return settings


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: stop claiming, finish what is in flight, exit 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
def cli() -> None:
    """Bulk-dial Plivo voice campaigns from a Postgres job table.

    Settings come from the environment: CAMPAIGN_DATABASE_URL (unset: an embedded PostgreSQL in
    CAMPAIGN_DATA_DIR), PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN, PLIVO_API_URL. See the README.
    """
