"""A JSON object of options, named as the CLI names them, parsed by the CLI command's own click
declarations: the same types, ranges, choices and error words as on the command line, with no
second copy of any rule. `{"calls-per-second": 5, "track-calls": true}` is
`--calls-per-second=5 --track-calls`; snake_case names are accepted too."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import click

from campaign.api.problems import FieldError, Problem


def option_key(name: str) -> str:
    """How a settings key is matched: `--calls_per_second` → `calls-per-second`."""
    return name.lstrip("-").replace("_", "-").lower()


def _options_by_key(command: click.Command) -> dict[str, tuple[click.Option, str]]:
    """Each option of `command` by its long name(s), with the spelling to pass."""
    found: dict[str, tuple[click.Option, str]] = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        for spelling in (*param.opts, *param.secondary_opts):
            if spelling.startswith("--"):
                found[option_key(spelling)] = (param, spelling)
    return found


def _arguments(option: click.Option, spelling: str, key: str, value: object) -> list[str]:
    """The command-line words for one option's JSON value."""
    if value is None:
        return []
    if option.is_flag and not option.multiple:
        if not isinstance(value, bool):
            raise Problem(
                422,
                "validation",
                f"{key}: must be true or false",
                [FieldError(key, "must be true or false")],
            )
        if value:
            return [spelling]
        # `"escape-formulas": false` is --no-escape-formulas; a plain flag false is not given.
        return [option.secondary_opts[0]] if option.secondary_opts else []
    values = value if isinstance(value, list) and option.multiple else [value]
    words = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            message = "must be a string or a number" + (
                ", or a list of them" if option.multiple else ""
            )
            raise Problem(422, "validation", f"{key}: {message}", [FieldError(key, message)])
        words.append(f"{spelling}={item}")
    return words


def parse_options(
    command: click.Command,
    given: Mapping[str, object],
    *,
    refused: Collection[str] = (),
    arguments: Collection[str] = (),
    fixed: Collection[str] = (),
) -> dict[str, Any]:
    """`command`'s parsed parameters (click's `params`) from `given`, plus the `fixed` words and
    the positional `arguments`; a 422 problem with click's own words for a bad value, and for
    an option not in `command` or among `refused` (options that name files on the server)."""
    options = _options_by_key(command)
    words: list[str] = list(fixed)
    for name, value in given.items():
        key = option_key(name)
        if key not in options or key in refused or key in ("help", "version"):
            message = (
                "is not available over the API"
                if key in refused
                else f"no such option of `campaign {command.name}`"
            )
            raise Problem(422, "validation", f"{name}: {message}", [FieldError(name, message)])
        option, spelling = options[key]
        words.extend(_arguments(option, spelling, key, value))
    try:
        context = command.make_context(command.name, [*words, "--", *arguments])
    except click.ClickException as error:
        message = error.format_message()
        field = "settings"
        param = getattr(error, "param", None)
        if isinstance(param, click.Option) and param.opts:
            field = option_key(max(param.opts, key=len))
        raise Problem(422, "validation", message, [FieldError(field, message)]) from None
    return dict(context.params)
