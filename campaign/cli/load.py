"""`campaign load`: a CSV into a new campaign (settings checked by campaign.specs) or an old one.

Imports only what loading needs: a large file's memory goes to its rows, not to the aiohttp,
prometheus-client and worker code the dialing commands import when they run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from campaign import db, specs
from campaign.callparams import CAMPAIGN_CALL_PARAMETER_NAMES
from campaign.cli.app import run_command, settings_from_environment
from campaign.console import LoadReporter
from campaign.importer import CsvSource, LoadOptions, load_csv


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


@click.command()
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
    escape_formulas: bool,
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
    campaign_options = specs.CampaignOptions(
        name=name,
        existing=existing,
        from_number=from_number,
        answer_url=answer_url,
        call_parameters=call_parameters,
        calls_per_second=calls_per_second,
        batch_size=batch_size,
        max_attempts=max_attempts,
        paused=paused,
        track_calls=track_calls,
        redial_on=redial_on,
        redial_delays=redial_delays,
    )
    target = specs.load_target(campaign_options, settings.public_url)
    options = LoadOptions(
        column=column, default_region=specs.default_region(default_region), jobs=jobs, strict=strict
    )
    source = CsvSource(csv_file)
    try:
        with LoadReporter(source.size_bytes, rejects, escape_formulas=escape_formulas) as reporter:
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
