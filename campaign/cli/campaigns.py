"""The commands on stored campaigns: status, list, export, pause, resume, cancel, redial,
reconcile."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from campaign import control, db, queries, specs
from campaign.cli.app import (
    EXIT_FAILURE,
    EXIT_USAGE,
    fail,
    run_command,
    settings_from_environment,
    stop_on_signals,
)
from campaign.console import print_progress_table
from campaign.contact_filter import ContactFilter, FilterError
from campaign.models import CallingWindow, CampaignStatus, Pacing

RECONCILE_FAILURES_SHOWN = 10
# `cancel --cancel-queued` waits for requests in flight up to a Make-a-call time-out and this.
IN_FLIGHT_MARGIN_S = 5.0


@click.command()
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
    window: CallingWindow | None = None
    pacing: Pacing | None = None
    payload: dict[str, Any] | None = None
    account_cap = settings.account_max_concurrent_calls or None
    async with db.open_pool(settings) as pool:
        # Leases of workers that died count as what they are (back to pending, or unknown) even
        # when no worker runs to sweep them.
        await queries.recover_expired_leases(pool)
        if name is None:
            rows = await queries.progress_all(pool)
        else:
            row = await queries.progress(pool, name)
            if row is None:
                fail(f"no campaign named {name!r}; `campaign list` shows the campaigns")
            if live:
                from rich.console import Console

                from campaign.live import watch_status

                stop = stop_on_signals()
                console = Console(highlight=False)
                if (
                    await watch_status(
                        pool, name, console, stop, account_max_concurrent_calls=account_cap
                    )
                    is None
                ):
                    fail(f"campaign {name!r} was deleted while it was shown")
                return
            rows = [row]
            if as_json:
                payload = await control.status_json(
                    pool, name, account_max_concurrent_calls=account_cap
                )
                if payload is None:
                    fail(f"campaign {name!r} was deleted while it was shown")
            else:
                window = await queries.calling_window(pool, name)
                pacing = await queries.pacing(pool, name, account_max_concurrent_calls=account_cap)
    if as_json:
        click.echo(json.dumps(payload if name is not None else [row.as_json() for row in rows]))
        return
    print_progress_table(rows)
    if name is not None and window is not None:
        click.echo(window.line(rows[0].waiting_for_window))
    if pacing is not None:
        click.echo(pacing.line())
    if name is not None and rows[0].responses_line() is not None:
        click.echo(rows[0].responses_line())


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@run_command
async def list_campaigns(as_json: bool) -> None:
    """List every campaign with its status and counts."""
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        await queries.recover_expired_leases(pool)
        rows = await queries.progress_all(pool)
    if as_json:
        click.echo(json.dumps([row.as_json() for row in rows]))
        return
    if not rows:
        click.echo("no campaigns yet; create one with `campaign load FILE.csv --name …`")
        return
    print_progress_table(rows)


@click.command()
@click.argument("name")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Write the CSV to this file (whole, or not at all) instead of stdout.",
)
@click.option(
    "--escape-formulas/--no-escape-formulas",
    default=True,
    show_default=True,
    help="Write cells that start like a spreadsheet formula (=, +, -, @) as text.",
)
@run_command
async def export(name: str, output: Path | None, escape_formulas: bool) -> None:
    """Write campaign NAME's contacts as CSV, one row each with its outcome, in load order.

    Columns: the contact's own CSV columns (sorted by name; one named like an outcome column
    becomes field:NAME), then destination, raw_destination, line_number, status, outcome,
    attempts, call_status, hangup_cause, hangup_cause_code, duration_s, bill_duration_s,
    answered_at, ended_at, machine, request_uuid, call_uuid, last_error, updated_at.

    A cell that starts like a spreadsheet formula (=HYPERLINK(…) in an uploaded file) gets a
    leading ' so that spreadsheets show it as text; `destination` (+digits or sip:) and a phone
    written as a plain number are left as they are. --no-escape-formulas writes every cell as
    stored.
    """
    from campaign.export import ExportError, OutputError, atomic_output, export_campaign

    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        try:
            if output is None:
                await export_campaign(pool, name, sys.stdout, escape_formulas=escape_formulas)
            else:
                with atomic_output(output) as out:
                    summary = await export_campaign(
                        pool, name, out, escape_formulas=escape_formulas
                    )
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


async def _change_status(
    name: str, new_status: CampaignStatus, allowed_from: tuple[CampaignStatus, ...]
) -> None:
    """Move campaign `name` to `new_status` in one transaction; wake the workers on resume."""
    settings = settings_from_environment()
    async with (
        db.open_pool(settings) as pool,
        pool.acquire() as connection,
        connection.transaction(),
    ):
        try:
            await control.set_status(connection, name, new_status, allowed_from)
        except control.ControlError as error:
            fail(str(error))
    click.echo(f"campaign {name}: {new_status}")


@click.command(name="set")
@click.argument("name")
@click.option(
    "--calls-per-second",
    metavar="RATE|none",
    help="The campaign's own cap on calls per second (none: only the account's applies).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(*specs.BATCH_SIZE_RANGE),
    help="Destinations per Plivo request.",
)
@click.option(
    "--priority",
    type=click.IntRange(*specs.PRIORITY_RANGE),
    help="Higher first: while a campaign of higher priority has calls to place, lower ones "
    "get only what it leaves of the account's calls.",
)
@click.option(
    "--max-concurrent-calls",
    metavar="N|none",
    help="The campaign's cap on calls live at once (needs a campaign loaded with "
    "--track-calls; none: only the account's applies).",
)
@run_command
async def set_pacing(
    name: str,
    calls_per_second: str | None,
    batch_size: int | None,
    priority: int | None,
    max_concurrent_calls: str | None,
) -> None:
    """Change campaign NAME's pacing while it runs: every worker dials by it within a second."""
    change = specs.pacing_change(calls_per_second, batch_size, priority, max_concurrent_calls)
    settings = settings_from_environment()
    async with (
        db.open_pool(settings) as pool,
        pool.acquire() as connection,
        connection.transaction(),
    ):
        try:
            await control.set_pacing(connection, name, change)
        except control.ControlError as error:
            fail(str(error))
    click.echo(f"campaign {name}: {change.describe()}")


@click.command()
@click.argument("name")
@run_command
async def pause(name: str) -> None:
    """Stop dialling campaign NAME (every worker stops within a second; calls in flight end)."""
    await _change_status(name, CampaignStatus.PAUSED, control.PAUSABLE)


@click.command()
@click.argument("name")
@run_command
async def resume(name: str) -> None:
    """Resume dialling a paused campaign NAME."""
    await _change_status(name, CampaignStatus.RUNNING, control.RESUMABLE)


@click.command()
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
    async with db.open_pool(settings) as pool:
        async with pool.acquire() as connection, connection.transaction():
            try:
                campaign, cancelled = await control.cancel(connection, name)
            except control.ControlError as error:
                fail(str(error))
        click.echo(f"campaign {name}: cancelled ({cancelled} contacts not dialled)")
        if cancel_queued:
            from campaign.cancellation import cancel_queued_calls, wait_for_requests_in_flight
            from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session

            # A request in flight now may still come back "queued": its calls are cancelled too,
            # once its reply is recorded.
            in_flight = await queries.sending_count(pool, campaign.id)
            if in_flight:
                click.echo(f"waiting for the replies to {in_flight} calls in flight …")
                left = await wait_for_requests_in_flight(
                    pool, campaign, timeout_s=settings.plivo_timeout_s + IN_FLIGHT_MARGIN_S
                )
                if left:
                    click.echo(
                        f"{left} calls still have no reply (their worker may have stopped); "
                        "after `campaign reconcile`, run `campaign cancel --cancel-queued` again",
                        err=True,
                    )
            async with new_plivo_session() as session:
                client = PlivoClient(session, PlivoClientConfig.from_settings(settings))
                removed, gone = await cancel_queued_calls(pool, client, campaign, settings)
            click.echo(
                f"cancelled {removed} calls queued at Plivo ({gone} had left the queue already)"
            )


# The options of `campaign redial`, by the filter's field names.
REDIAL_OPTIONS = {
    "statuses": "--status",
    "outcomes": "--outcome",
    "time_zone": "--time-zone",
    "response": "--response",
    "search": "--search",
}


@click.command()
@click.argument("name")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="Only contacts in this status (repeatable): failed, fired, queued, ….",
)
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    help="Only contacts with this outcome (repeatable): busy, no-answer, answered, ….",
)
@click.option("--time-zone", help="Only contacts with this IANA time zone (America/New_York).")
@click.option("--response", help="Only contacts whose latest keypress meant this (--gather).")
@click.option("--search", help="Only contacts whose destination contains this text.")
@click.option("--dry-run", is_flag=True, help="Only count the contacts that would be dialled.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@run_command
async def redial(
    name: str,
    statuses: tuple[str, ...],
    outcomes: tuple[str, ...],
    time_zone: str | None,
    response: str | None,
    search: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Dial again the settled contacts of campaign NAME that match the filter.

    Only contacts whose call is over (failed; fired or queued once their call ended) and that
    are on no suppression list are dialled again: never one in flight, queued at Plivo, or of
    unknown fate (`campaign reconcile` settles those). Each gets one more attempt, even past
    --max-attempts; a completed campaign runs again."""
    flt = ContactFilter(statuses, outcomes, time_zone, response, search)
    try:
        flt.checked()
    except FilterError as error:
        fail(f"{REDIAL_OPTIONS[error.field]}: {error.message}", EXIT_USAGE)
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        async with pool.acquire() as connection:
            try:
                counts = await control.redial_counts(connection, name, flt)
            except control.ControlError as error:
                fail(str(error))
        click.echo(
            f"campaign {name}: {counts.matched} contacts match the filter; "
            f"{counts.redialable} of them can be dialled again"
        )
        if counts.matched > counts.redialable:
            click.echo(
                f"({counts.matched - counts.redialable} are not settled, in flight, of unknown "
                "fate (`campaign reconcile` settles those), suppressed or expired)"
            )
        if dry_run or counts.redialable == 0:
            return
        if not yes:
            if not sys.stdin.isatty():
                fail(
                    "not a terminal, so no one can confirm: pass --yes to redial without asking",
                    EXIT_USAGE,
                )
            click.confirm(f"Dial {counts.redialable} contacts again?", abort=True)
        async with pool.acquire() as connection, connection.transaction():
            try:
                redialled = await control.redial(connection, name, flt)
            except control.ControlError as error:
                fail(str(error))
        click.echo(f"campaign {name}: {redialled} contacts set to dial again")


@click.command("reconcile")
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
