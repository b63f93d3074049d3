"""The `campaign` command line: builds the object graph once from Settings, per command."""

from __future__ import annotations

import click

from campaign import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
def cli() -> None:
    """Bulk-dial Plivo voice campaigns from a Postgres job table."""


# --- simulator (campaign/simulator.py) ---------------------------------------------------------
# --- end simulator -------------------------------------------------------------------------------


def main() -> None:
    """Entry point of the `campaign` console script."""
    cli()
