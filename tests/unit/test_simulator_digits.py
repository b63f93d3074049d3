"""The keys simulated callees press: `SimulatorConfig.digit_shares` and its checks, `--digits` as
the CLI reads it, how a draw lands on a key, `reconfigure` holding to the same checks, and
`draws_by_destination` giving each callee one fate."""

from __future__ import annotations

import re
from typing import Any

import pytest
from plivo_fixtures import simulator_config

from campaign.cli.simulator import parse_digit_shares
from campaign.simulator import Ledger, PlivoSimulator, SimulatorConfig
from campaign.simulator.account import SimulatedAccount, draw_key


@pytest.mark.parametrize(
    ("text", "shares"),
    [
        ("1=0.6,2=0.2,9=0.05", {"1": 0.6, "2": 0.2, "9": 0.05}),
        (" 1 = 0.5 , # = 0.25 , *=0.25 ", {"1": 0.5, "#": 0.25, "*": 0.25}),
        ("0=1", {"0": 1.0}),
        ("", {}),
    ],
    ids=["three-keys", "spaces-and-symbols", "one-key", "empty"],
)
def test_digits_option_is_read_as_key_share_pairs(text: str, shares: dict[str, float]) -> None:
    """`--digits` reads KEY=SHARE pairs separated by commas (spaces allowed) into the mapping
    SimulatorConfig takes; an empty value means nobody presses."""
    assert parse_digit_shares(text) == shares
    assert SimulatorConfig(digit_shares=parse_digit_shares(text)).digit_shares == shares


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1:0.5", "--digits: '1:0.5' is not KEY=SHARE"),
        ("1=0.5,", "--digits: '' is not KEY=SHARE"),
        ("=0.5", "--digits: '=0.5' is not KEY=SHARE"),
        ("1=half", "--digits: the share of '1' is not a number: 'half'"),
        ("1=0.2,1=0.3", "--digits: the key '1' is given twice"),
    ],
)
def test_a_malformed_digits_option_names_the_fault(text: str, message: str) -> None:
    """A pair without `=`, a trailing comma, a missing key, a share that is not a number or a
    key given twice is refused with a message naming --digits and the offending part."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_digit_shares(text)


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ({"x": 0.5}, "digit_shares: not a phone key (one of 0-9, * or #): 'x'"),
        ({"12": 0.5}, "digit_shares: not a phone key (one of 0-9, * or #): '12'"),
        ({"1": -0.1}, "digit_shares: the share of '1' must be between 0 and 1"),
        ({"1": float("nan")}, "digit_shares: the share of '1' must be between 0 and 1"),
        ({"1": 0.7, "2": 0.7}, "digit_shares must add up to at most 1 (the rest: no key pressed)"),
    ],
    ids=["letter", "two-keys", "negative", "nan", "over-1"],
)
def test_config_refuses_impossible_digit_shares(shares: dict[str, float], message: str) -> None:
    """A key that is not one phone key, a share outside [0, 1] (NaN among them) or shares
    adding up past 1 are refused when the config is made, and by `reconfigure` mid-run."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        SimulatorConfig(digit_shares=shares)
    simulator = PlivoSimulator(simulator_config())
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        simulator.reconfigure(digit_shares=shares)
    assert simulator.config.digit_shares == {}
    simulator.reconfigure(digit_shares={"1": 0.5})
    assert simulator.config.digit_shares == {"1": 0.5}


@pytest.mark.parametrize(
    ("draw", "key"),
    [(0.0, "0"), (0.09, "0"), (0.11, "1"), (0.59, "1"), (0.61, "#"), (0.79, "#"), (0.81, None)],
)
def test_a_draw_lands_on_the_keys_laid_end_to_end(draw: float, key: str | None) -> None:
    """With 0: 0.1, 1: 0.5 and #: 0.2 (given out of order), draws in [0, 0.1) press 0,
    [0.1, 0.6) press 1, [0.6, 0.8) press # (keypad order: digits, *, #), and the rest presses
    nothing."""
    assert draw_key(draw, {"#": 0.2, "1": 0.5, "0": 0.1}) == key


def _fates(
    config: SimulatorConfig, requests: list[list[str]]
) -> dict[str, list[tuple[str, str | None]]]:
    """Each destination's calls in order, as (outcome, key pressed at a menu), when `requests`
    are placed one after the other on a fresh account."""
    account = SimulatedAccount(config, Ledger(), lambda: 0.0)
    fates: dict[str, list[tuple[str, str | None]]] = {}
    for sequence, destinations in enumerate(requests):
        for call in account.place_calls(sequence, 0.0, "+14155550100", destinations, {}):
            fates.setdefault(call.destination, []).append((call.outcome, account.keypad(call)()))
    return fates


def test_draws_by_destination_give_each_callee_one_fate_however_requests_split() -> None:
    """With `draws_by_destination`, a callee's outcome and key depend only on the seed, their
    number and how many calls to it came before: the same callees dialled in one request or
    one by one, in another order, after other callees, meet the same fates, and a second
    call to a number draws afresh (a busy callee may answer the redial). Without it, the
    split changes them (the request stream draws them)."""
    callees = [f"+1415555{index:04d}" for index in range(40)]
    shares: dict[str, Any] = {
        "outcome_shares": {"completed": 0.5, "busy": 0.5},
        "digit_shares": {"1": 0.5, "9": 0.5},
    }
    by_number = simulator_config(draws_by_destination=True, **shares)
    together = _fates(by_number, [callees, callees])
    apart = _fates(by_number, [["+12125550000"], *([c] for c in reversed(callees)), callees])
    assert {callee: apart[callee] for callee in callees} == together
    assert any(first != second for first, second in together.values())
    by_stream = simulator_config(**shares)
    shifted = _fates(by_stream, [["+12125550000"], callees, callees])
    assert _fates(by_stream, [callees, callees]) != {callee: shifted[callee] for callee in callees}
