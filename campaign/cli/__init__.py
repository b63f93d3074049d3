"""The `campaign` command line: builds the object graph once from Settings, per command.

`app` holds the group and what every command shares (error lines, exit codes, signals); the
commands live by what they act on: `load`, `campaigns` (status, list, export, set, pause,
resume, cancel, reconcile), `suppress` (the do-not-call lists: add, remove, list),
`services` (migrate, worker, serve, demo), `simulator` and `webhooks` (secret, list,
redeliver). The validation of a campaign's
settings is campaign.specs, pure and tested without a subprocess.
"""

from __future__ import annotations

from campaign.cli import apikeys, campaigns, load, services, simulator, suppress, webhooks
from campaign.cli.app import cli

for command in (
    load.load,
    campaigns.status,
    campaigns.list_campaigns,
    campaigns.export,
    campaigns.set_pacing,
    campaigns.pause,
    campaigns.resume,
    campaigns.cancel,
    campaigns.redial,
    campaigns.reconcile_command,
    suppress.suppress,
    apikeys.api_key,
    services.migrate,
    services.worker,
    services.serve,
    services.demo,
    simulator.simulator_command,
    webhooks.webhook,
):
    cli.add_command(command)

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point of the `campaign` console script."""
    cli()
