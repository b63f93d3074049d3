"""`campaign load`: a CSV into a new campaign (settings checked by campaign.specs) or an old one.

Imports only what loading needs: a large file's memory goes to its rows, not to the aiohttp,
prometheus-client and worker code the dialing commands import when they run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from campaign import db, specs
from campaign.callerids import read_pool_file
from campaign.callparams import CAMPAIGN_CALL_PARAMETER_NAMES
from campaign.cli.app import EXIT_USAGE, fail, run_command, settings_from_environment
from campaign.config import Settings
from campaign.console import LoadReporter
from campaign.importer import CsvSource, LoadOptions, load_csv
from campaign.models import CampaignSpec

# Plivo's time_limit when a request sets none (a call lasts at most 4 hours).
PLIVO_DEFAULT_TIME_LIMIT_S = 14_400


def _read_text(path: Path) -> str:
    """A small file the user named (read before anything else happens)."""
    return path.read_text(encoding="utf-8-sig")


def _call_parameter_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """One --kebab-case option for each optional Make-a-call parameter a campaign may set."""
    for name in reversed(CAMPAIGN_CALL_PARAMETER_NAMES):
        if name == "answer_url":
            continue
        function = click.option(
            specs.option_for(name),
            name,
            metavar="VALUE",
            help=f"Plivo Make-a-call `{name}`.",
        )(function)
    return function


def load_plan(
    params: Mapping[str, Any], public_url: str | None
) -> tuple[CampaignSpec | str, LoadOptions]:
    """The campaign a load creates (or the name of the one it adds to) and how it reads the
    file, from `load`'s parsed options (click's `params`): the one place the options become
    settings, for the command and for the HTTP API (which parses its `settings` with this
    command's own options). --from-file and --answer-xml name files read here."""
    call_parameters = {
        name: params.get(name) for name in CAMPAIGN_CALL_PARAMETER_NAMES if name != "answer_url"
    }
    from_file = params.get("from_file")
    answer_xml = params.get("answer_xml")
    from_file_numbers = None
    if from_file is not None:
        try:
            from_file_numbers = read_pool_file(from_file)
        except (OSError, UnicodeDecodeError) as error:
            fail(f"--from-file: cannot read {from_file}: {error}", EXIT_USAGE)
    answer_template = None
    if answer_xml is not None:
        try:
            answer_template = _read_text(answer_xml)
        except (OSError, UnicodeDecodeError) as error:
            fail(f"--answer-xml: cannot read {answer_xml}: {error}", EXIT_USAGE)
    campaign_options = specs.CampaignOptions(
        name=params.get("name"),
        existing=params.get("existing"),
        from_number=params.get("from_number"),
        answer_url=params.get("answer_url"),
        call_parameters=call_parameters,
        calls_per_second=params.get("calls_per_second"),
        batch_size=params.get("batch_size", specs.DEFAULT_BATCH_SIZE),
        max_attempts=params.get("max_attempts", specs.DEFAULT_MAX_ATTEMPTS),
        paused=bool(params.get("paused")),
        track_calls=bool(params.get("track_calls")),
        redial_on=params.get("redial_on"),
        redial_delays=params.get("redial_delays"),
        calling_hours=params.get("calling_hours"),
        calling_days=params.get("calling_days"),
        skip_dates=params.get("skip_dates"),
        start_at=params.get("start_at"),
        end_at=params.get("end_at"),
        default_timezone=params.get("default_timezone"),
        suppression_lists=params.get("suppression_lists") or (),
        max_calls_per_number_per_day=params.get("max_calls_per_number_per_day"),
        priority=params.get("priority"),
        max_concurrent_calls=params.get("max_concurrent_calls"),
        from_file_numbers=from_file_numbers,
        caller_id_mode=params.get("caller_id_mode"),
        calls_per_second_per_caller_id=params.get("calls_per_second_per_caller_id"),
        max_calls_per_caller_id_per_day=params.get("max_calls_per_caller_id_per_day"),
        message=params.get("message"),
        voice=params.get("voice"),
        language=params.get("language"),
        play_url=params.get("play_url"),
        play_after_url=params.get("play_after_url"),
        answer_xml=answer_template,
        answer_xml_name=None if answer_xml is None else str(answer_xml),
        gather=params.get("gather"),
        gather_prompt=params.get("gather_prompt"),
        gather_timeout_s=params.get("gather_timeout_s"),
        gather_retries=params.get("gather_retries"),
        after=params.get("after") or (),
        on_machine=params.get("on_machine"),
        voicemail_message=params.get("voicemail_message"),
        webhook_url=params.get("webhook_url"),
    )
    target = specs.load_target(campaign_options, public_url)
    return target, LoadOptions(
        column=params.get("column"),
        timezone_column=params.get("timezone_column"),
        default_region=specs.default_region(params.get("default_region")),
        jobs=params.get("jobs"),
        strict=bool(params.get("strict")),
    )


async def _with_webhook(spec: CampaignSpec, settings: Settings, *, given: bool) -> CampaignSpec:
    """A new campaign's webhook endpoint (campaign.webhooks.urls.campaign_endpoint), or the
    command's end with the reason."""
    from campaign.webhooks.urls import WebhookUrlRefused, campaign_endpoint

    try:
        return await campaign_endpoint(spec, settings, given=given)
    except WebhookUrlRefused as error:
        fail(str(error), EXIT_USAGE)


@click.command()
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.option("--name", help="Create a new campaign with this name.")
@click.option("--campaign", "existing", metavar="NAME", help="Add to this existing campaign.")
@click.option(
    "--from",
    "from_number",
    metavar="NUMBER[,NUMBER…]",
    help="Caller ID: the number calls come from; several, comma-separated, make a pool.",
)
@click.option(
    "--from-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A pool of caller IDs: one number per line (after --from's, if given).",
)
@click.option(
    "--caller-id",
    "caller_id_mode",
    type=click.Choice(["rotate", "local"], case_sensitive=False),
    help="With several caller IDs: rotate spreads calls evenly (the default); local picks one "
    "with the callee's area code, else its country code, else rotates.",
)
@click.option(
    "--calls-per-second-per-caller-id",
    type=click.FloatRange(*specs.CALLS_PER_SECOND_RANGE),
    help="Calls per second placed from one caller ID, at most (carriers flag fast diallers).",
)
@click.option(
    "--max-calls-per-caller-id-per-day",
    type=click.IntRange(*specs.MAX_CALLS_PER_CALLER_ID_RANGE),
    help="Calls placed from one caller ID in 24 hours, at most.",
)
@click.option("--answer-url", metavar="URL", help="Plivo fetches the call's XML here on answer.")
@click.option(
    "--message",
    metavar="TEXT",
    help="Say this (Plivo <Speak>), {column} filled from the contact's row ({name|default} for "
    "an empty value); the engine serves the call's XML at CAMPAIGN_PUBLIC_URL.",
)
@click.option("--voice", metavar="VOICE", help="Plivo's voice for --message, e.g. WOMAN.")
@click.option("--language", metavar="LANG", help="Plivo's language for --message, e.g. en-US.")
@click.option("--play", "play_url", metavar="URL", help="Play this audio file before the message.")
@click.option("--play-after", "play_after_url", metavar="URL", help="Play this after the message.")
@click.option(
    "--answer-xml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A Plivo XML template ({column} placeholders, {digits_url} for <GetDigits action>) "
    "served as the answer instead of --message.",
)
@click.option(
    "--gather",
    metavar="KEY=MEANING,…",
    help="Listen for a key and record what it means, e.g. 1=confirmed,2=cancelled,9=opt-out "
    "(opt-out puts the number on the list `default`).",
)
@click.option("--gather-prompt", metavar="TEXT", help="Said while listening for the key.")
@click.option("--gather-timeout-s", type=click.IntRange(1, 60), help="Seconds to wait for a key.")
@click.option("--gather-retries", type=click.IntRange(1, 10), help="Times the prompt is played.")
@click.option(
    "--after",
    metavar="KEY=TEXT",
    multiple=True,
    help='What is said after a key (repeatable), e.g. --after "1=Thank you, see you then."',
)
@click.option(
    "--on-machine",
    type=click.Choice(["hangup", "message", "voicemail"]),
    help="When an answering machine takes the call (needs --machine-detection true): hang up, "
    "play the message (the default), or wait for the beep and leave --voicemail-message.",
)
@click.option("--voicemail-message", metavar="TEXT", help="Left after the beep ({column} too).")
@_call_parameter_options
@click.option(
    "--calls-per-second",
    type=click.FloatRange(*specs.CALLS_PER_SECOND_RANGE),
    help="This campaign's own cap on calls per second (the account's applies too).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(*specs.BATCH_SIZE_RANGE),
    default=specs.DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Destinations per Plivo request.",
)
@click.option(
    "--priority",
    type=click.IntRange(*specs.PRIORITY_RANGE),
    help="Higher first (default 0): while a campaign of higher priority has calls to place, "
    "lower ones get only what it leaves of the account's calls.",
)
@click.option(
    "--max-concurrent-calls",
    type=click.IntRange(*specs.MAX_CONCURRENT_CALLS_RANGE),
    help="This campaign's cap on calls live at once (needs --track-calls; the account's, "
    "CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS, applies too).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(*specs.MAX_ATTEMPTS_RANGE),
    default=specs.DEFAULT_MAX_ATTEMPTS,
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
    "--escape-formulas/--no-escape-formulas",
    default=True,
    show_default=True,
    help="Write rejected values that start like a spreadsheet formula (=, +, -, @) as text.",
)
@click.option(
    "--track-calls",
    is_flag=True,
    help="Send ring/hangup callbacks to this engine (CAMPAIGN_PUBLIC_URL) to record outcomes.",
)
@click.option(
    "--redial-on",
    metavar="STATUSES",
    help="Dial again calls that end busy, no-answer, timeout or failed, or that a machine took "
    "(machine, with --machine-detection), e.g. busy,no-answer.",
)
@click.option(
    "--redial-delays",
    metavar="DURATIONS",
    help="Delays before attempt 2, 3, … (the last repeats), e.g. 10m,1h,4h (s, m, h, d).",
)
@click.option(
    "--calling-hours",
    metavar="HH:MM-HH:MM[,…]|any",
    help="When calls may be placed, in each callee's local time (default: "
    f"{specs.DEFAULT_CALLING_HOURS}; `any`: around the clock).",
)
@click.option(
    "--calling-days",
    metavar="DAYS",
    help="Days calls may be placed on, in the callee's local time, e.g. mon-fri or mon,tue,sat "
    "(default: every day).",
)
@click.option(
    "--skip-dates",
    metavar="DATES",
    help="Local dates with no calls, e.g. 2026-12-24,2026-12-25.",
)
@click.option(
    "--start-at",
    metavar="TIME",
    help="Dial nothing before this ISO 8601 time with offset, e.g. 2026-12-03T09:00-05:00.",
)
@click.option(
    "--end-at",
    metavar="TIME",
    help="At this ISO 8601 time, contacts not yet dialled expire and the campaign completes.",
)
@click.option(
    "--default-timezone",
    metavar="ZONE",
    help="Time zone of contacts whose row and number tell none, e.g. America/New_York.",
)
@click.option(
    "--timezone-column",
    metavar="HEADER",
    help="The header of the time zone column (default: timezone, time_zone or tz if present).",
)
@click.option(
    "--suppression-list",
    "suppression_lists",
    metavar="NAME",
    multiple=True,
    help="Never call numbers on this list too (repeatable; list `default` always applies).",
)
@click.option(
    "--max-calls-per-number-per-day",
    type=click.IntRange(*specs.MAX_CALLS_PER_NUMBER_RANGE),
    help="Calls this campaign places to one number in 24 hours, at most.",
)
@click.option(
    "--webhook-url",
    metavar="URL",
    help="Send the campaign's events here, signed (default: CAMPAIGN_WEBHOOK_URL).",
)
@click.option("--paused", is_flag=True, help="Create the campaign paused instead of running.")
@click.option("--strict", is_flag=True, help="Load nothing if any row is rejected.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    help="Processes that validate numbers; 1: a thread of the loader (default: one per core "
    "but one, for large files).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@run_command
async def load(
    csv_file: Path,
    name: str | None,
    existing: str | None,
    from_number: str | None,
    from_file: Path | None,
    caller_id_mode: str | None,
    calls_per_second_per_caller_id: float | None,
    max_calls_per_caller_id_per_day: int | None,
    answer_url: str | None,
    message: str | None,
    voice: str | None,
    language: str | None,
    play_url: str | None,
    play_after_url: str | None,
    answer_xml: Path | None,
    gather: str | None,
    gather_prompt: str | None,
    gather_timeout_s: int | None,
    gather_retries: int | None,
    after: tuple[str, ...],
    on_machine: str | None,
    voicemail_message: str | None,
    calls_per_second: float | None,
    batch_size: int,
    priority: int | None,
    max_concurrent_calls: int | None,
    max_attempts: int,
    column: str | None,
    default_region: str | None,
    rejects: Path | None,
    escape_formulas: bool,
    track_calls: bool,
    redial_on: str | None,
    redial_delays: str | None,
    calling_hours: str | None,
    calling_days: str | None,
    skip_dates: str | None,
    start_at: str | None,
    end_at: str | None,
    default_timezone: str | None,
    timezone_column: str | None,
    suppression_lists: tuple[str, ...],
    max_calls_per_number_per_day: int | None,
    webhook_url: str | None,
    paused: bool,
    strict: bool,
    jobs: int | None,
    as_json: bool,
    **call_parameters: str | None,
) -> None:
    """Load FILE.csv into a new campaign (--name …) or an existing one (--campaign NAME)."""
    settings = settings_from_environment()
    target, options = load_plan(click.get_current_context().params, settings.public_url)
    if isinstance(target, CampaignSpec):
        target = await _with_webhook(target, settings, given=webhook_url is not None)
    source = CsvSource(csv_file)
    try:
        with LoadReporter(source.size_bytes, rejects, escape_formulas=escape_formulas) as reporter:
            async with db.open_pool(settings) as pool:
                summary = await load_csv(pool, source, target, options, reporter)
    finally:
        source.close()
    campaign = summary.campaign
    if settings.account_max_concurrent_calls and not campaign.track_calls:
        # Its hangups are unheard: each call holds a place of the account's cap until overdue.
        limit_s = campaign.call_parameters.get("time_limit", PLIVO_DEFAULT_TIME_LIMIT_S)
        click.echo(
            f"campaign: warning: campaign {campaign.name} does not track its calls, so each "
            "counts towards CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS until ring_timeout + "
            f"time_limit ({limit_s} s) + 60 s after Plivo's reply; load with --track-calls "
            "(or a short --time-limit)",
            err=True,
        )
    if as_json:
        click.echo(json.dumps(summary.as_json()))
        return
    click.echo(f"campaign {campaign.name} (id {campaign.id}): {campaign.status}")
    click.echo(
        f"rows read {summary.rows_read}, loaded {summary.loaded}, "
        f"duplicates {summary.duplicates}, rejected {summary.rejected}"
        + (f", suppressed {summary.suppressed}" if summary.suppressed else "")
    )
    click.echo(f"calls placed {campaign.schedule.describe()}")
