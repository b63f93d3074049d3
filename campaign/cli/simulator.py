"""`campaign simulator`: the fake Plivo's options (limits, rates, delays, keypresses, faults) and
how it is started."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from campaign.cli.app import EXIT_USAGE, fail


def parse_digit_shares(text: str) -> dict[str, float]:
    """`--digits 1=0.6,2=0.2,9=0.05` as {"1": 0.6, "2": 0.2, "9": 0.05}; empty: no keys.

    Only the form is checked here (KEY=SHARE pairs, numbers, no key twice); which keys and
    shares are allowed is `SimulatorConfig`'s to say.
    """
    shares: dict[str, float] = {}
    if not text.strip():
        return shares
    for pair in (part.strip() for part in text.split(",")):
        key, equals, share = (piece.strip() for piece in pair.partition("="))
        if not equals or not key:
            raise ValueError(f"--digits: {pair!r} is not KEY=SHARE (e.g. --digits 1=0.6,2=0.2)")
        if key in shares:
            raise ValueError(f"--digits: the key {key!r} is given twice")
        try:
            shares[key] = float(share)
        except ValueError:
            raise ValueError(f"--digits: the share of {key!r} is not a number: {share!r}") from None
    return shares


def _rate(name: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option for the share of requests that meet one injected fault."""
    return click.option(
        f"--{name}",
        type=click.FloatRange(0.0, 1.0),
        default=0.0,
        show_default=True,
        help=f"Share of Make-a-call requests that {what}.",
    )


@click.command("simulator")
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
    "--max-concurrent-calls",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Calls live at once (Plivo India: 50); a request that would pass it, counting queued "
    "calls, is refused whole with 403, error code 5030. 0: no limit.",
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
@click.option(
    "--talk-s",
    type=click.FloatRange(min=0.0),
    default=0.01,
    show_default=True,
    help="Seconds an answered call talks (the least, with --talk-s-max).",
)
@click.option(
    "--talk-s-max",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Draw each answered call's talk time uniformly between --talk-s and this (seeded by "
    "--seed); default: always --talk-s.",
)
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
    "--digits",
    default="",
    metavar="KEY=SHARE,...",
    help="Keys callees press at each attempt of a <GetDigits> menu, each with its share of "
    "attempts (e.g. 1=0.6,2=0.2,9=0.05; keys 0-9, * and #); the rest press nothing. Machines "
    "never press. Default: nobody presses.",
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
    digits: str,
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
        digit_shares = parse_digit_shares(digits)
        config = SimulatorConfig(outcome_shares=shares, digit_shares=digit_shares, **options)
    except ValueError as error:
        fail(f"simulator: {error}", EXIT_USAGE)
    serve_simulator(config, host=host, port=port, announce=click.echo)
