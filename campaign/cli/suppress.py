"""`campaign suppress add | remove | list`: the do-not-call lists (campaign.suppression).

Every campaign honours the list `default` and its own `suppression_lists`; the claim settles
their numbers `suppressed` instead of dialling them. These commands only manage the lists.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from campaign import db, queries, specs
from campaign.cli.app import EXIT_FAILURE, EXIT_USAGE, fail, run_command, settings_from_environment
from campaign.suppression import (
    DEFAULT_LIST,
    RefusedValues,
    add_to_list,
    is_file_argument,
    reason_text,
    remove_from_list,
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# Numbers read from the database per round trip while `suppress list --list NAME` streams.
LIST_CHUNK_ROWS = 2000
# E.164 is at most 16 characters with its +: the column `suppress list --list` aligns to.
DESTINATION_WIDTH = 16


def _refused(error: RefusedValues) -> None:
    """Print the bad values (the first few, then how many more) on stderr, then fail."""
    for bad in error.shown:
        click.echo(str(bad), err=True)
    if error.count > len(error.shown):
        click.echo(f"… and {error.count - len(error.shown):,} more", err=True)
    fail(str(error))


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _numbers(count: int) -> str:
    return f"{count:,} number" + ("" if count == 1 else "s")


def _list_option(help_text: str, *, default: str | None = DEFAULT_LIST) -> Decorator:
    return click.option(
        "--list",
        "list_",
        metavar="NAME",
        default=default,
        show_default=default is not None,
        help=f"{help_text} (1-{specs.LIST_NAME_MAX_CHARS} characters).",
    )


def _default_region_option() -> Decorator:
    return click.option(
        "--default-region",
        metavar="CC",
        help="Region of numbers written without a country code, e.g. US.",
    )


@click.group()
def suppress() -> None:
    """Do-not-call lists: numbers that campaigns honouring the list never dial.

    Every campaign honours the list `default` and those in its `suppression_lists`: a number
    on one of them is settled `suppressed` instead of being dialled (a batch a worker already
    holds may still go out).
    """


@suppress.command()
@click.argument("values", metavar="FILE.csv | NUMBER…", nargs=-1, required=True)
@_list_option("The list to add to")
@click.option("--reason", metavar="TEXT", help="Why these numbers may not be called (stored).")
@_default_region_option()
@click.option(
    "--column", metavar="HEADER", help="The header of the phone column (default: found by name)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@run_command
async def add(
    values: tuple[str, ...],
    list_: str,
    reason: str | None,
    default_region: str | None,
    column: str | None,
    as_json: bool,
) -> None:
    """Put numbers, or CSV files of numbers, on a list.

    An argument that is an existing file, or that ends in .csv, is a CSV file read as
    `campaign load` reads one (the phone column found by its header, or --column); any other
    is a number. Numbers are normalised as `campaign load` normalises them. If any value is
    not a number, the bad ones are listed (file and line, or argument) and nothing is added.
    A number already on the list keeps its reason and date.
    """
    name = specs.list_name("--list", list_)
    stored_reason = reason_text(reason)
    region = specs.default_region(default_region)
    if column is not None and not any(is_file_argument(value) for value in values):
        fail("--column names the phone column of a CSV file; no FILE.csv was given", EXIT_USAGE)
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        try:
            summary = await add_to_list(
                pool, values, name, stored_reason, default_region=region, column=column
            )
        except RefusedValues as error:
            _refused(error)
    if as_json:
        click.echo(json.dumps(summary.as_json()))
        return
    line = f"list {name}: {_numbers(summary.added)} added ({summary.already:,} already on it)"
    if summary.repeated:
        line += f"; {summary.repeated:,} repeated a number given before them"
    click.echo(line)


@suppress.command()
@click.argument("values", metavar="NUMBER…", nargs=-1, required=True)
@_list_option("The list to remove from")
@_default_region_option()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@run_command
async def remove(
    values: tuple[str, ...], list_: str, default_region: str | None, as_json: bool
) -> None:
    """Take numbers off a list.

    Numbers are normalised as `campaign load` normalises them. If any value is not a number,
    the bad ones are listed and nothing is removed. Numbers that were not on the list are
    named; that is not an error.
    """
    name = specs.list_name("--list", list_)
    region = specs.default_region(default_region)
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        try:
            summary = await remove_from_list(pool, values, name, default_region=region)
        except RefusedValues as error:
            _refused(error)
    if as_json:
        click.echo(json.dumps(summary.as_json()))
        return
    click.echo(f"list {name}: {_numbers(len(summary.removed))} removed")
    if summary.not_on_list:
        click.echo(f"not on list {name}: {', '.join(summary.not_on_list)}")


@suppress.command(name="list")
@_list_option("Show the numbers on this list", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@run_command
async def list_command(list_: str | None, as_json: bool) -> None:
    """Show the lists, or the numbers on one.

    Without --list: each list with how many numbers it holds and its newest addition. With
    --list NAME: the numbers on it with their date and reason, streamed from the database.

    --json prints one JSON document: an array of {list, numbers, newest}, or of
    {destination, reason, created_at}.
    """
    settings = settings_from_environment()
    if list_ is None:
        async with db.open_pool(settings) as pool:
            lists = await queries.suppression_lists(pool)
        if as_json:
            click.echo(json.dumps([entry.as_json() for entry in lists]))
            return
        if not lists:
            click.echo("no suppression lists yet; add numbers with `campaign suppress add`")
            return
        name_width = max(4, *(len(entry.name) for entry in lists))
        count_width = max(7, *(len(f"{entry.numbers:,}") for entry in lists))
        click.echo(f"{'list':<{name_width}}  {'numbers':>{count_width}}  newest")
        for entry in lists:
            click.echo(
                f"{entry.name:<{name_width}}  {entry.numbers:>{count_width},}  "
                f"{_when(entry.newest)}"
            )
        return
    name = specs.list_name("--list", list_)
    try:
        async with (
            db.open_pool(settings) as pool,
            pool.acquire() as connection,
            connection.transaction(readonly=True),
        ):
            shown = await _stream_numbers(connection, name, as_json)
    except BrokenPipeError:
        # The reader went away (`| head`): not an error, but nothing more can be written.
        _silence_stdout()
        sys.exit(EXIT_FAILURE)
    if not shown and not as_json:
        click.echo(
            f"no numbers on list {name!r} (`campaign suppress list` shows the lists)", err=True
        )


async def _stream_numbers(connection: queries.Connection, name: str, as_json: bool) -> int:
    """Write the list's numbers as they come from the cursor; how many."""
    shown = 0
    if as_json:
        # One JSON array, written an element at a time: the same text json.dumps(list) makes.
        click.echo("[", nl=False)
    async for chunk in queries.suppressed_number_chunks(connection, name, LIST_CHUNK_ROWS):
        if as_json:
            text = ", ".join(json.dumps(number.as_json()) for number in chunk)
            click.echo((", " if shown else "") + text, nl=False)
        else:
            if not shown:
                click.echo(f"{'destination':<{DESTINATION_WIDTH}}  {'created_at':<25}  reason")
            click.echo(
                "\n".join(
                    f"{number.destination:<{DESTINATION_WIDTH}}  {_when(number.created_at):<25}"
                    f"  {number.reason or ''}".rstrip()
                    for number in chunk
                )
            )
        shown += len(chunk)
    if as_json:
        click.echo("]")
    return shown


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises no second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
