"""The Make-a-call parameter rules of the seed's table, one by one."""

from __future__ import annotations

import pytest

from campaign.callparams import (
    CALL_PARAMETER_NAMES,
    CAMPAIGN_CALL_PARAMETER_NAMES,
    CallParameterError,
    validate_call_parameters,
)

SEED_TABLE = [
    "answer_url",
    "answer_method",
    "ring_url",
    "ring_method",
    "hangup_url",
    "hangup_method",
    "fallback_url",
    "fallback_method",
    "caller_name",
    "send_digits",
    "send_on_preanswer",
    "time_limit",
    "hangup_on_ring",
    "machine_detection",
    "machine_detection_time",
    "machine_detection_url",
    "machine_detection_method",
    "sip_headers",
    "ring_timeout",
    "parent_call_uuid",
    "error_if_parent_not_found",
]


def test_every_optional_parameter_of_the_seed_is_known() -> None:
    """Every optional parameter of the seed's table has a rule; bulk-only ones are campaign's."""
    assert set(CALL_PARAMETER_NAMES) == set(SEED_TABLE)
    assert "parent_call_uuid" not in CAMPAIGN_CALL_PARAMETER_NAMES
    assert "error_if_parent_not_found" not in CAMPAIGN_CALL_PARAMETER_NAMES


@pytest.mark.parametrize(
    ("parameter", "value", "normalised"),
    [
        ("answer_url", "https://example.com/answer.xml", "https://example.com/answer.xml"),
        ("ring_url", "http://10.0.0.1:8080/ring?x=1", "http://10.0.0.1:8080/ring?x=1"),
        ("answer_method", "get", "GET"),
        ("hangup_method", "POST", "POST"),
        ("caller_name", "x" * 50, "x" * 50),
        ("send_digits", "1w2W3", "1w2W3"),
        ("send_digits", "123@1000", "123@1000"),
        ("send_digits", "*#0", "*#0"),
        ("send_on_preanswer", "true", True),
        ("send_on_preanswer", False, False),
        ("time_limit", "300", 300),
        ("hangup_on_ring", 30, 30),
        ("ring_timeout", "45", 45),
        ("time_limit", "2147483647", 2147483647),
        ("time_limit", "007", 7),
        ("machine_detection", "true", "true"),
        ("machine_detection", "Hangup", "hangup"),
        ("machine_detection_time", "2000", 2000),
        ("machine_detection_time", 10000, 10000),
        ("sip_headers", "head1=val1,head2=val2", "head1=val1,head2=val2"),
    ],
)
def test_valid_values_are_normalised(parameter: str, value: object, normalised: object) -> None:
    """Values Plivo accepts pass, in the form the JSON body will carry."""
    assert validate_call_parameters({parameter: value}) == {parameter: normalised}


@pytest.mark.parametrize(
    ("parameter", "value", "message"),
    [
        ("answer_url", "ftp://example.com/a.xml", "http"),
        ("answer_url", "example.com/answer", "http"),
        ("hangup_url", "https://", "host"),
        ("ring_method", "PUT", "GET or POST"),
        ("caller_name", "x" * 51, "at most 50"),
        ("send_digits", "12x", "DTMF"),
        ("send_digits", "1@", "DTMF"),
        ("send_on_preanswer", "yes", "true or false"),
        ("time_limit", "0", "must be between 1 and 2147483647 seconds, got 0"),
        ("time_limit", "-5", "whole number"),
        ("hangup_on_ring", "1.5", "whole number"),
        ("ring_timeout", True, "whole number"),
        ("machine_detection", "false", "true or hangup"),
        ("machine_detection_time", "1999", "between 2000 and 10000"),
        ("machine_detection_time", "10001", "between 2000 and 10000"),
        ("sip_headers", "a=1;b=2", "key=value"),
        ("sip_headers", "a-b=1", "key=value"),
        ("sip_headers", "a=", "key=value"),
        # Beyond the PostgreSQL integer column (int4): refused here, not by the database.
        ("time_limit", "99999999999", "between 1 and 2147483647 seconds, got 99999999999"),
        ("hangup_on_ring", "2147483648", "between 1 and 2147483647 seconds, got 2147483648"),
        ("ring_timeout", 2**40, f"between 1 and 2147483647 seconds, got {2**40}"),
        ("ring_timeout", "9" * 5000, "2147483647 seconds, got a number of 5000 digits"),
        ("machine_detection_time", "99999999999", "between 2000 and 10000 milliseconds"),
        # Digits of other scripts, which str.isdigit accepts and int() may not.
        ("time_limit", "\u0663", "whole number"),
        ("time_limit", "\u00b2", "whole number"),
    ],
)
def test_invalid_values_name_the_parameter(parameter: str, value: object, message: str) -> None:
    """A value the seed's table forbids raises an error naming the parameter and the rule."""
    with pytest.raises(CallParameterError) as raised:
        validate_call_parameters({parameter: value})
    assert raised.value.parameter == parameter
    assert message in raised.value.message


def test_unset_and_unknown_keys_are_left_out() -> None:
    """None means not set, and keys that are not optional parameters are not the rules' business."""
    assert validate_call_parameters({"ring_url": None, "from": "+1", "to": "x"}) == {}
