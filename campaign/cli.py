"""The `campaign` command line: builds the object graph once from Settings, per command."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import asyncpg
import click
import uvloop

from campaign import __version__, db, queries
from campaign.callparams import CAMPAIGN_CALL_PARAMETER_NAMES, CallParameterError
from campaign.config import Settings, SettingsError, load_settings
from campaign.console import LoadReporter, print_progress_table
from campaign.destinations import InvalidDestination, LoadError, normalise_destination
from campaign.importer import CsvSource, LoadOptions, load_csv
from campaign.models import Campaign, CampaignSpec, CampaignStatus

if TYPE_CHECKING:
    from campaign.metrics import Metrics
    from campaign.worker import WorkerReport

# The commands that dial or serve import aiohttp, prometheus-client and the worker when they
# run: `campaign load` of a large file keeps its memory for the CSV, not for code it never uses.

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("campaign")

DEFAULT_HTTP_PORT = 8080
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
        except SettingsError as error:
            fail(str(error), EXIT_USAGE)
        except CallParameterError as error:
            fail(f"--{error.parameter.replace('_', '-')}: {error.message}", EXIT_USAGE)
        except (LoadError, db.DatabaseError) as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted; nothing of the unfinished step was kept", 130)
        except OSError as error:
            # A port in use, a file we cannot write, the network: the system's own words.
            fail(f"{error.strerror or error}" + (f": {error.filename}" if error.filename else ""))
        except Exception as error:
            from campaign.plivo import PlivoError

            if isinstance(error, PlivoError):
                # Plivo refused or could not be reached; the message never holds the token.
                fail(f"Plivo: {error}")
            raise

    return wrapper


def settings_from_environment() -> Settings:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
def cli() -> None:
    """Bulk-dial Plivo voice campaigns from a Postgres job table.

    Settings come from the environment: CAMPAIGN_DATABASE_URL (unset: an embedded PostgreSQL in
    CAMPAIGN_DATA_DIR), PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN, PLIVO_API_URL. See the README.
    """


@cli.command()
@run_command
async def migrate() -> None:
    """Apply the database migrations that are not applied yet."""
    settings = settings_from_environment()
    url, _embedded = await db.resolve_database_url(settings)
    connection = await db.connect(url)
    try:
        applied = await db.migrate(connection)
    finally:
        await connection.close()
    for migration in applied:
        click.echo(f"applied {migration.filename}")
    click.echo(f"database {db.describe_url(url)} is up to date")


def _call_parameter_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """One --kebab-case option for each optional Make-a-call parameter a campaign may set."""
    for name in reversed(CAMPAIGN_CALL_PARAMETER_NAMES):
        if name == "answer_url":
            continue
        function = click.option(
            f"--{name.replace('_', '-')}",
            name,
            metavar="VALUE",
            help=f"Plivo Make-a-call `{name}`.",
        )(function)
    return function


def _region(value: str | None) -> str | None:
    import phonenumbers  # only this check and the importer need it

    if value is None:
        return None
    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        fail(
            f"--default-region: {value!r} is not a region code; use two letters such as US, GB, IN",
            EXIT_USAGE,
        )
    return region


@cli.command()
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.option("--name", help="Create a new campaign with this name.")
@click.option("--campaign", "existing", metavar="NAME", help="Add to this existing campaign.")
@click.option(
    "--from", "from_number", metavar="NUMBER", help="Caller ID: the number calls come from."
)
@click.option("--answer-url", metavar="URL", help="Plivo fetches the call's XML here on answer.")
@_call_parameter_options
@click.option(
    "--calls-per-second",
    type=click.FloatRange(min=0.01, max=1000.0),
    help="This campaign's own cap on calls per second (the account's applies too).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Destinations per Plivo request.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Dial attempts per contact.",
)
@click.option(
    "--column", metavar="HEADER", help="The header of the phone column (default: found by name)."
)
@click.option(
    "--default-region",
    metavar="CC",
    help="Region of numbers written without a country code, e.g. US.",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write rejected rows to this CSV file.",
)
@click.option(
    "--track-calls",
    is_flag=True,
    help="Send ring/hangup callbacks to this engine (CAMPAIGN_PUBLIC_URL) to record outcomes.",
)
@click.option(
    "--redial-on",
    metavar="STATUSES",
    help="Dial again calls that end busy, no-answer, timeout or failed, e.g. busy,no-answer.",
)
@click.option(
    "--redial-delays",
    metavar="DURATIONS",
    help="Delays before attempt 2, 3, … (the last repeats), e.g. 10m,1h,4h (s, m, h, d).",
)
@click.option("--paused", is_flag=True, help="Create the campaign paused instead of running.")
@click.option("--strict", is_flag=True, help="Load nothing if any row is rejected.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    help="Processes that validate numbers (default: all cores for large files).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@run_command
async def load(
    csv_file: Path,
    name: str | None,
    existing: str | None,
    from_number: str | None,
    answer_url: str | None,
    calls_per_second: float | None,
    batch_size: int,
    max_attempts: int,
    column: str | None,
    default_region: str | None,
    rejects: Path | None,
    track_calls: bool,
    redial_on: str | None,
    redial_delays: str | None,
    paused: bool,
    strict: bool,
    jobs: int | None,
    as_json: bool,
    **call_parameters: str | None,
) -> None:
    """Load FILE.csv into a new campaign (--name …) or an existing one (--campaign NAME)."""
    settings = settings_from_environment()
    target = _load_target(
        name,
        existing,
        from_number,
        answer_url,
        call_parameters,
        calls_per_second,
        batch_size,
        max_attempts,
        paused,
    )
    if isinstance(target, CampaignSpec):
        target = _with_call_tracking(target, settings, track_calls, redial_on, redial_delays)
    elif track_calls or redial_on or redial_delays:
        fail(
            "--track-calls/--redial-on/--redial-delays: a load into an existing campaign cannot "
            "change its settings",
            EXIT_USAGE,
        )
    options = LoadOptions(
        column=column, default_region=_region(default_region), jobs=jobs, strict=strict
    )
    source = CsvSource(csv_file)
    try:
        with LoadReporter(source.size_bytes, rejects) as reporter:
            async with db.open_pool(settings) as pool:
                summary = await load_csv(pool, source, target, options, reporter)
    finally:
        source.close()
    if as_json:
        click.echo(json.dumps(summary.as_json()))
        return
    campaign = summary.campaign
    click.echo(f"campaign {campaign.name} (id {campaign.id}): {campaign.status}")
    click.echo(
        f"rows read {summary.rows_read}, loaded {summary.loaded}, "
        f"duplicates {summary.duplicates}, rejected {summary.rejected}"
    )


REDIALABLE_STATUSES = ("busy", "no-answer", "timeout", "failed")
DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_durations(text: str) -> tuple[int, ...]:
    """`10m,1h,4h` → (600, 3600, 14400); a bare number is seconds. ValueError names the bad one."""
    durations = []
    for item in text.split(","):
        value = item.strip().lower()
        unit = value[-1:] if value[-1:] in DURATION_UNITS_S else "s"
        number = value[:-1] if value[-1:] in DURATION_UNITS_S else value
        if not number.isdigit():
            raise ValueError(f"{item.strip()!r} is not a duration such as 90s, 10m, 1h or 2d")
        durations.append(int(number) * DURATION_UNITS_S[unit])
    return tuple(durations)


def _with_call_tracking(
    spec: CampaignSpec,
    settings: Settings,
    track_calls: bool,
    redial_on: str | None,
    redial_delays: str | None,
) -> CampaignSpec:
    """The campaign with its callbacks pointed at this engine and its redial rules, checked."""
    statuses: tuple[str, ...] = ()
    if redial_on:
        statuses = tuple(dict.fromkeys(part.strip() for part in redial_on.split(",")))
        unknown = [status for status in statuses if status not in REDIALABLE_STATUSES]
        if unknown:
            fail(
                f"--redial-on: {unknown[0]!r} is not a call status that can be redialled; use "
                f"some of {','.join(REDIALABLE_STATUSES)}",
                EXIT_USAGE,
            )
    delays: tuple[int, ...] = ()
    if redial_delays:
        try:
            delays = parse_durations(redial_delays)
        except ValueError as error:
            fail(f"--redial-delays: {error}", EXIT_USAGE)
    if statuses and not track_calls:
        fail("--redial-on: redials need the calls' outcomes; add --track-calls", EXIT_USAGE)
    if delays and not statuses:
        fail("--redial-delays: say which calls to redial with --redial-on", EXIT_USAGE)
    base_url = None
    if track_calls:
        if settings.public_url is None:
            fail(
                "--track-calls: set CAMPAIGN_PUBLIC_URL to the URL Plivo reaches this engine at "
                "(where `campaign serve` or a worker with CAMPAIGN_HTTP_PORT listens)",
                EXIT_USAGE,
            )
        own = [
            f"--{name.replace('_', '-')}"
            for name in ("ring_url", "hangup_url", "machine_detection_url")
            if spec.call_parameters.get(name) is not None
        ]
        if own:
            fail(
                f"{own[0]}: --track-calls sets it to this engine's endpoint; give one or the other",
                EXIT_USAGE,
            )
        base_url = settings.public_url
    return replace(spec, redial_on=statuses, redial_delays_s=delays, track_calls_at=base_url)


def _load_target(
    name: str | None,
    existing: str | None,
    from_number: str | None,
    answer_url: str | None,
    call_parameters: dict[str, str | None],
    calls_per_second: float | None,
    batch_size: int,
    max_attempts: int,
    paused: bool,
) -> CampaignSpec | str:
    """The campaign a load goes into, from the options, with every parameter checked."""
    given = {key: value for key, value in call_parameters.items() if value is not None}
    if existing is not None:
        if name is not None:
            fail(
                "give either --name (a new campaign) or --campaign (an existing one), not both",
                EXIT_USAGE,
            )
        settings_given = [f"--{key.replace('_', '-')}" for key in given]
        settings_given += [
            flag
            for flag, value in (
                ("--from", from_number),
                ("--answer-url", answer_url),
                ("--calls-per-second", calls_per_second),
            )
            if value is not None
        ]
        if settings_given:
            fail(
                f"{', '.join(settings_given)}: a load into an existing campaign cannot "
                "change its settings",
                EXIT_USAGE,
            )
        return existing
    if name is None:
        fail("give --name NAME to create a campaign, or --campaign NAME to add to one", EXIT_USAGE)
    if not name.strip() or len(name) > 200:
        fail("--name: must be 1 to 200 characters", EXIT_USAGE)
    if from_number is None:
        fail(
            "--from: a new campaign needs the caller ID number, e.g. --from +14155550100",
            EXIT_USAGE,
        )
    if answer_url is None:
        fail("--answer-url: a new campaign needs the URL of its Plivo XML", EXIT_USAGE)
    try:
        caller_id = normalise_destination(from_number, None)
    except InvalidDestination as error:
        fail(f"--from: {from_number!r}: {error}; write it as +<country code><number>", EXIT_USAGE)
    if caller_id.startswith("sip:"):
        fail("--from: must be a phone number, not a SIP URI", EXIT_USAGE)
    from campaign.callparams import validate_call_parameters

    parameters = validate_call_parameters({"answer_url": answer_url, **given})
    return CampaignSpec(
        name=name,
        from_number=caller_id,
        answer_url=str(parameters.pop("answer_url")),
        call_parameters=parameters,
        calls_per_second=calls_per_second,
        batch_size=batch_size,
        max_attempts=max_attempts,
        status=CampaignStatus.PAUSED if paused else CampaignStatus.RUNNING,
    )


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON once instead of a table.")
@click.option("--once", is_flag=True, help="Print the table once, even on a terminal.")
@run_command
async def status(name: str | None, as_json: bool, once: bool) -> None:
    """Show campaigns (or the one called NAME): contacts by status and how their calls ended.

    On a terminal, `campaign status NAME` stays open and refreshes every second, with the
    dialing rate and an ETA, until the campaign is completed or cancelled, or Ctrl-C.
    """
    settings = settings_from_environment()
    live = name is not None and not (as_json or once) and sys.stdout.isatty()
    async with db.open_pool(settings) as pool:
        if name is None:
            rows = await queries.progress_all(pool)
        else:
            row = await queries.progress(pool, name)
            if row is None:
                fail(f"no campaign named {name!r}; `campaign list` shows the campaigns")
            if live:
                from rich.console import Console

                from campaign.live import watch_status

                stop = _stop_on_signals()
                if await watch_status(pool, name, Console(highlight=False), stop) is None:
                    fail(f"campaign {name!r} was deleted while it was shown")
                return
            rows = [row]
    if as_json:
        payload: Any = rows[0].as_json() if name is not None else [row.as_json() for row in rows]
        click.echo(json.dumps(payload))
        return
    print_progress_table(rows)


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@run_command
async def list_campaigns(as_json: bool) -> None:
    """List every campaign with its status and counts."""
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        rows = await queries.progress_all(pool)
    if as_json:
        click.echo(json.dumps([row.as_json() for row in rows]))
        return
    if not rows:
        click.echo("no campaigns yet; create one with `campaign load FILE.csv --name …`")
        return
    print_progress_table(rows)


@cli.command()
@click.argument("name")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Write the CSV to this file (whole, or not at all) instead of stdout.",
)
@run_command
async def export(name: str, output: Path | None) -> None:
    """Write campaign NAME's contacts as CSV, one row each with its outcome, in load order.

    Columns: the contact's own CSV columns (sorted by name; one named like an outcome column
    becomes field:NAME), then destination, raw_destination, line_number, status, outcome,
    attempts, call_status, hangup_cause, hangup_cause_code, duration_s, bill_duration_s,
    answered_at, ended_at, machine, request_uuid, call_uuid, last_error, updated_at.
    """
    from campaign.export import ExportError, OutputError, atomic_output, export_campaign

    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        try:
            if output is None:
                await export_campaign(pool, name, sys.stdout)
            else:
                with atomic_output(output) as out:
                    summary = await export_campaign(pool, name, out)
                click.echo(f"exported {summary.rows} contacts of {summary.campaign} to {output}")
        except OutputError as error:
            if isinstance(error.error, BrokenPipeError):
                # The reader went away (`| head`): not an error, but nothing more can be written.
                _silence_stdout()
                sys.exit(EXIT_FAILURE)
            fail(str(error))
        except ExportError as error:
            fail(str(error))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises no second BrokenPipeError."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@cli.command()
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Load this CSV instead of a generated one.",
)
@click.option(
    "--rows",
    type=click.IntRange(1, 1_000_000),
    default=50,
    show_default=True,
    help="Rows of the generated CSV.",
)
@click.option("--name", help="Campaign name (default: demo-<time>).")
@run_command
async def demo(csv_file: Path | None, rows: int, name: str | None) -> None:
    """Run a whole campaign on embedded defaults: load a CSV, dial it through the simulator.

    The database is the embedded PostgreSQL unless CAMPAIGN_DATABASE_URL is set; Plivo is the
    built-in simulator, run inside this command (never your account, even if PLIVO_* are set).
    """
    from campaign.demo import run_demo, write_sample_csv

    settings = settings_from_environment()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    campaign_name = name or f"demo-{stamp}"
    if csv_file is None:
        csv_file = settings.data_dir / "demo" / f"{campaign_name}.csv"
        write_sample_csv(csv_file, rows)
        click.echo(f"wrote {rows} sample rows to {csv_file}")
    source = CsvSource(csv_file)
    try:
        with LoadReporter(source.size_bytes, None) as reporter:
            result = await run_demo(settings, source, campaign_name, reporter)
    finally:
        source.close()
    summary = result.load
    click.echo(
        f"campaign {campaign_name} (id {summary.campaign.id}): rows read {summary.rows_read}, "
        f"loaded {summary.loaded}, duplicates {summary.duplicates}, rejected {summary.rejected}"
    )
    click.echo(
        f"dialled {result.dialled} destinations through the Plivo simulator in "
        f"{result.elapsed_s:.1f} s, at most {result.max_calls_per_second} calls in one second "
        f"(account limit {result.calls_per_second:g}/s)"
    )
    print_progress_table([result.progress])


def _require_token_for_callbacks(settings: Settings) -> None:
    if settings.plivo_auth_token is None:
        fail(
            "PLIVO_AUTH_TOKEN is not set: callbacks are verified with it (X-Plivo-Signature-V3),"
            " so without it every callback would be refused",
            EXIT_USAGE,
        )
    if settings.public_url is None:
        logger.warning(
            "CAMPAIGN_PUBLIC_URL is not set: signatures are checked against the URL as this "
            "server sees it, which fails behind a proxy"
        )


@contextlib.asynccontextmanager
async def _maybe_serving(
    settings: Settings, pool: asyncpg.Pool, metrics: Metrics
) -> AsyncIterator[None]:
    """Serve callbacks, /healthz and /metrics beside the worker when CAMPAIGN_HTTP_PORT is set."""
    if settings.http_port is None:
        yield
        return
    from campaign.web import WebConfig, serving

    _require_token_for_callbacks(settings)
    config = WebConfig.from_settings(settings)
    async with serving(pool, metrics, config, settings.http_host, settings.http_port):
        yield


@cli.command()
@click.option("--host", help="Listen address (default CAMPAIGN_HTTP_HOST, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port (default CAMPAIGN_HTTP_PORT, 8080)."
)
@run_command
async def serve(host: str | None, port: int | None) -> None:
    """Serve Plivo's callbacks (/plivo/ring, /plivo/hangup, /plivo/machine), /healthz, /metrics.

    Callbacks are checked against PLIVO_AUTH_TOKEN and CAMPAIGN_PUBLIC_URL (the URL Plivo
    calls, as it signs it). Runs until SIGTERM or Ctrl-C.
    """
    from campaign.metrics import Metrics
    from campaign.web import WebConfig, serving

    settings = settings_from_environment()
    _require_token_for_callbacks(settings)
    stop = _stop_on_signals()
    async with (
        db.open_pool(settings, min_connections=12) as pool,
        serving(
            pool,
            Metrics(),
            WebConfig.from_settings(settings),
            host or settings.http_host,
            port or settings.http_port or DEFAULT_HTTP_PORT,
        ) as url,
    ):
        click.echo(f"serving callbacks, /healthz and /metrics on {url}")
        await stop.wait()


async def _dial(
    settings: Settings,
    pool: asyncpg.Pool,
    metrics: Metrics,
    *,
    drain: bool,
    stop: asyncio.Event | None,
    campaign_ids: tuple[int, ...] | None,
) -> WorkerReport:
    """Run a worker on `pool` with the settings' Plivo account until stopped or drained."""
    from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session
    from campaign.worker import Worker, WorkerConfig

    async with new_plivo_session(connection_limit=settings.worker_concurrency * 2) as session:
        client = PlivoClient(session, PlivoClientConfig.from_settings(settings))
        config = WorkerConfig.from_settings(settings, campaign_ids=campaign_ids)
        worker = Worker(pool, client, config, metrics)
        return await worker.run(drain=drain, stop=stop)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: stop claiming, finish what is in flight, exit 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


@cli.command()
@click.option("--drain", is_flag=True, help="Exit once no running campaign has work left.")
@click.option(
    "--campaign",
    "campaign_names",
    metavar="NAME",
    multiple=True,
    help="Dial only this campaign (repeatable; default: every running campaign).",
)
@run_command
async def worker(drain: bool, campaign_names: tuple[str, ...]) -> None:
    """Dial the pending contacts of running campaigns, as a long-lived service.

    Run as many as you like, on as many hosts: they share the account's limits through
    Postgres. SIGTERM or Ctrl-C stops claiming, lets requests in flight finish, and exits 0.
    """
    settings = settings_from_environment()
    if not settings.has_plivo_credentials:
        fail(
            "PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are not set: the worker dials through your "
            "Plivo account (to try the engine without one, run `campaign demo`, or point "
            "PLIVO_API_URL at `campaign simulator`)",
            EXIT_USAGE,
        )
    from campaign.metrics import Metrics

    stop = _stop_on_signals()
    metrics = Metrics()
    async with (
        db.open_pool(settings, min_connections=settings.worker_concurrency + 4) as pool,
        _maybe_serving(settings, pool, metrics),
    ):
        campaign_ids: tuple[int, ...] | None = None
        if campaign_names:
            found = [await queries.campaign_by_name(pool, name) for name in campaign_names]
            missing = [name for name, match in zip(campaign_names, found, strict=True) if not match]
            if missing:
                fail(f"--campaign: no campaign named {missing[0]!r}; `campaign list` shows them")
            campaign_ids = tuple(match.id for match in found if match is not None)
        report = await _dial(
            settings, pool, metrics, drain=drain, stop=stop, campaign_ids=campaign_ids
        )
    if drain:
        click.echo(f"drained: {report.summary()}")


async def _set_status(
    connection: queries.Connection,
    name: str,
    new_status: CampaignStatus,
    allowed_from: tuple[CampaignStatus, ...],
) -> Campaign:
    """Move campaign `name` to `new_status` (a no-op if it is there already), or fail clearly."""
    campaign = await queries.set_campaign_status(connection, name, new_status, allowed_from)
    if campaign is not None:
        return campaign
    existing = await queries.campaign_by_name(connection, name)
    if existing is None:
        fail(f"no campaign named {name!r}; `campaign list` shows the campaigns")
    if existing.status == new_status:
        return existing
    fail(
        f"campaign {name!r} is {existing.status}; only a campaign that is "
        f"{' or '.join(allowed_from)} can be set {new_status}"
    )


async def _change_status(
    name: str, new_status: CampaignStatus, allowed_from: tuple[CampaignStatus, ...]
) -> None:
    settings = settings_from_environment()
    async with (
        db.open_pool(settings) as pool,
        pool.acquire() as connection,
        connection.transaction(),
    ):
        campaign = await _set_status(connection, name, new_status, allowed_from)
        if new_status == CampaignStatus.RUNNING:
            await queries.notify_work(connection, campaign.id)
    click.echo(f"campaign {name}: {new_status}")


@cli.command()
@click.argument("name")
@run_command
async def pause(name: str) -> None:
    """Stop dialling campaign NAME (every worker stops within a second; calls in flight end)."""
    await _change_status(
        name, CampaignStatus.PAUSED, (CampaignStatus.RUNNING, CampaignStatus.DRAFT)
    )


@cli.command()
@click.argument("name")
@run_command
async def resume(name: str) -> None:
    """Resume dialling a paused campaign NAME."""
    await _change_status(
        name, CampaignStatus.RUNNING, (CampaignStatus.PAUSED, CampaignStatus.DRAFT)
    )


@cli.command()
@click.argument("name")
@click.option(
    "--cancel-queued",
    is_flag=True,
    help="Also cancel the calls Plivo still holds queued for this campaign (needs credentials).",
)
@run_command
async def cancel(name: str, cancel_queued: bool) -> None:
    """Cancel campaign NAME: contacts not dialled yet become `cancelled`."""
    settings = settings_from_environment()
    if cancel_queued and not settings.has_plivo_credentials:
        fail("--cancel-queued: set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN to reach Plivo", EXIT_USAGE)
    allowed = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.DRAFT)
    async with db.open_pool(settings) as pool:
        async with pool.acquire() as connection, connection.transaction():
            campaign = await _set_status(connection, name, CampaignStatus.CANCELLED, allowed)
            cancelled = await queries.cancel_contacts(connection, campaign.id)
        click.echo(f"campaign {name}: cancelled ({cancelled} contacts not dialled)")
        if cancel_queued:
            from campaign.cancellation import cancel_queued_calls
            from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session

            async with new_plivo_session() as session:
                client = PlivoClient(session, PlivoClientConfig.from_settings(settings))
                removed, gone = await cancel_queued_calls(pool, client, campaign, settings)
            click.echo(
                f"cancelled {removed} calls queued at Plivo ({gone} had left the queue already)"
            )


# --- reconcile (campaign/reconcile.py) ---------------------------------------------------------

RECONCILE_FAILURES_SHOWN = 10


@cli.command("reconcile")
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option(
    "--dry-run", is_flag=True, help="Ask Plivo and report what would change; change nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@run_command
async def reconcile_command(campaign_name: str | None, dry_run: bool, as_json: bool) -> None:
    """Settle `unknown` contacts (of every campaign, or CAMPAIGN) by looking their calls up.

    For each, Plivo is asked whether a call to its destination exists since its request was
    sent (queued, live, or in the call records). Found: the contact takes that outcome. Not
    found once the request is CAMPAIGN_RECONCILE_AFTER_S old: dialled again (pending), or
    failed when out of attempts. A contact whose look-ups failed stays unknown.
    """
    from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session
    from campaign.reconcile import UnknownCampaign, reconcile_unknown_contacts

    settings = settings_from_environment()
    if not settings.has_plivo_credentials:
        fail(
            "PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are not set: reconcile looks calls up in your "
            "Plivo account",
            EXIT_USAGE,
        )
    async with db.open_pool(settings) as pool, new_plivo_session() as session:
        client = PlivoClient(session, PlivoClientConfig.from_settings(settings))
        try:
            report = await reconcile_unknown_contacts(
                pool, client, settings, campaign_name, dry_run=dry_run
            )
        except UnknownCampaign as error:
            fail(str(error))
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        click.echo(report.summary())
        failures = report.lookup_failures
        for failure in failures[:RECONCILE_FAILURES_SHOWN]:
            click.echo(
                f"look-up failed: contact {failure.contact_id} ({failure.destination}) of "
                f"campaign {failure.campaign}: {failure.error}",
                err=True,
            )
        if len(failures) > RECONCILE_FAILURES_SHOWN:
            click.echo(
                f"… and {len(failures) - RECONCILE_FAILURES_SHOWN} more (--json lists them all)",
                err=True,
            )
    if report.account_problem is not None:
        fail(f"look-ups stopped: {report.account_problem}")


# --- simulator (campaign/simulator.py) ---------------------------------------------------------


def _rate(name: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        f"--{name}",
        type=click.FloatRange(0.0, 1.0),
        default=0.0,
        show_default=True,
        help=f"Share of Make-a-call requests that {what}.",
    )


@cli.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8099, show_default=True)
@click.option(
    "--auth-id",
    envvar="PLIVO_AUTH_ID",
    default="MASIMULATOR000000000",
    show_default=True,
    help="Auth ID callers must use [env PLIVO_AUTH_ID].",
)
@click.option(
    "--auth-token",
    envvar="PLIVO_AUTH_TOKEN",
    default="simulator-auth-token",
    show_default=False,
    help="Auth token callers must use [env PLIVO_AUTH_TOKEN].",
)
@click.option(
    "--cps",
    "calls_per_second",
    type=click.FloatRange(min=0.001),
    default=2.0,
    show_default=True,
    help="Account calls per second; over it calls are queued.",
)
@click.option(
    "--requests-per-window",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="API requests allowed per window; over it, 429.",
)
@click.option(
    "--request-window-s", type=click.FloatRange(min=0.001), default=5.0, show_default=True
)
@click.option(
    "--completed",
    type=click.FloatRange(min=0.0),
    default=0.7,
    show_default=True,
    help="Share of calls that are answered and completed.",
)
@click.option("--busy", type=click.FloatRange(min=0.0), default=0.1, show_default=True)
@click.option("--no-answer", type=click.FloatRange(min=0.0), default=0.1, show_default=True)
@click.option("--failed", type=click.FloatRange(min=0.0), default=0.05, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.0), default=0.05, show_default=True)
@click.option("--ring-after-s", type=click.FloatRange(min=0.0), default=0.005, show_default=True)
@click.option("--answer-after-s", type=click.FloatRange(min=0.0), default=0.005, show_default=True)
@click.option("--talk-s", type=click.FloatRange(min=0.0), default=0.01, show_default=True)
@click.option(
    "--callbacks/--no-callbacks",
    "send_callbacks",
    default=True,
    show_default=True,
    help="Fetch answer_url and send ring/hangup callbacks.",
)
@click.option(
    "--machine-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.2,
    show_default=True,
    help="Share of answered calls with machine detection that a machine answers.",
)
@click.option(
    "--callbacks-to-any-host",
    is_flag=True,
    help="Also send callbacks to hosts other than loopback (default: loopback only).",
)
@_rate("unavailable-rate", "get 503 (not placed)")
@_rate("rate-limited-rate", "get 429 (not placed)")
@_rate("error-after-placing-rate", "are placed, then get 500")
@_rate("hang-after-placing-rate", "are placed, then get no reply for --hang-s")
@_rate("reset-after-placing-rate", "are placed, then have their connection reset")
@click.option("--hang-s", type=click.FloatRange(min=0.0), default=60.0, show_default=True)
@click.option(
    "--retry-after-s",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Retry-After of an injected 429 (default: no header).",
)
@click.option(
    "--latency-s",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Added to every API reply.",
)
@click.option("--seed", type=int, default=None, help="Makes uuids, outcomes and faults repeatable.")
def simulator_command(
    host: str,
    port: int,
    completed: float,
    busy: float,
    no_answer: float,
    failed: float,
    timeout: float,
    **options: Any,
) -> None:
    """Run a fake Plivo Voice API (Make a call, look-ups, cancel) with a ledger."""
    from campaign.simulator import SimulatorConfig, serve_simulator

    shares = {
        "completed": completed,
        "busy": busy,
        "no-answer": no_answer,
        "failed": failed,
        "timeout": timeout,
    }
    try:
        config = SimulatorConfig(outcome_shares=shares, **options)
    except ValueError as error:
        fail(f"simulator: {error}", EXIT_USAGE)
    serve_simulator(config, host=host, port=port, announce=click.echo)


# --- end simulator -------------------------------------------------------------------------------


def main() -> None:
    """Entry point of the `campaign` console script."""
    cli()
