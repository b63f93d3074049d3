"""`campaign api-key create | list | revoke`: the keys of the HTTP API (/api/v1/).

A new key is printed alone on stdout, once; only its SHA-256 is stored (campaign/api/keys.py),
so a lost key cannot be shown again: revoke it and create another.
"""

from __future__ import annotations

import json

import asyncpg
import click

from campaign import db, queries
from campaign.api.keys import key_hash, new_key
from campaign.cli.app import EXIT_USAGE, fail, run_command, settings_from_environment

NAME_MAX_CHARS = 100


@click.group(name="api-key")
def api_key() -> None:
    """Keys for the HTTP API: every /api/v1/ request sends one as `Authorization: Bearer KEY`."""


@api_key.command()
@click.argument("name")
@click.option("--read-only", is_flag=True, help="The key may read, never change anything.")
@run_command
async def create(name: str, read_only: bool) -> None:
    """Create a key called NAME and print it, alone, once (only its hash is stored)."""
    if not name.strip() or len(name) > NAME_MAX_CHARS or "\x00" in name:
        fail(f"a key's name must be 1 to {NAME_MAX_CHARS} characters", EXIT_USAGE)
    settings = settings_from_environment()
    key = new_key()
    async with db.open_pool(settings) as pool:
        try:
            await queries.create_api_key(pool, name, key_hash(key), read_only=read_only)
        except asyncpg.UniqueViolationError:
            fail(
                f"an API key named {name!r} exists already (revoked keys keep their names); "
                "choose another name"
            )
    click.echo(key)


@api_key.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@run_command
async def list_keys(as_json: bool) -> None:
    """List the keys: name, rights, when created and revoked (never the keys themselves)."""
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        keys = await queries.api_keys(pool)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": key.name,
                        "read_only": key.read_only,
                        "created_at": key.created_at.isoformat(),
                        "revoked_at": None
                        if key.revoked_at is None
                        else key.revoked_at.isoformat(),
                    }
                    for key in keys
                ]
            )
        )
        return
    if not keys:
        click.echo("no API keys yet; create one with `campaign api-key create NAME`")
        return
    width = max(4, *(len(key.name) for key in keys))
    click.echo(f"{'name':<{width}}  {'rights':<10}  {'created':<25}  revoked")
    for key in keys:
        rights = "read-only" if key.read_only else "read-write"
        created = key.created_at.isoformat(timespec="seconds")
        revoked = "" if key.revoked_at is None else key.revoked_at.isoformat(timespec="seconds")
        click.echo(f"{key.name:<{width}}  {rights:<10}  {created:<25}  {revoked}".rstrip())


@api_key.command()
@click.argument("name")
@run_command
async def revoke(name: str) -> None:
    """Revoke the key called NAME: requests with it get 401 from now on."""
    settings = settings_from_environment()
    async with db.open_pool(settings) as pool:
        revoked = await queries.revoke_api_key(pool, name)
    if revoked is None:
        fail(f"no live API key named {name!r}; `campaign api-key list` shows the keys")
    click.echo(f"API key {name}: revoked")
