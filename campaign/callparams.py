"""The Make-a-call parameters of Plivo's API and their rules, shared by campaigns and the simulator.

The seed document's parameter table is the contract: `from`, `to` and `answer_url` are required,
everything here is optional. `from`/`to` are phone numbers and are checked where they are known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

METHODS = ("GET", "POST")
MACHINE_DETECTION_VALUES = ("true", "hangup")
MACHINE_DETECTION_TIME_MS = (2000, 10000)
CALLER_NAME_MAX_CHARS = 50
URL_MAX_CHARS = 2048
# Whole seconds are stored in PostgreSQL `integer` columns; Plivo's table gives no maximum for
# time_limit, hangup_on_ring or ring_timeout, so the column's is theirs.
INTEGER_COLUMN_MAX = 2_147_483_647
_WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)

SEND_DIGITS_PATTERN = re.compile(r"^[0-9A-Da-d*#wW]+(@[0-9]+)?$")
SIP_HEADERS_PATTERN = re.compile(r"^[A-Za-z0-9]+=[A-Za-z0-9]+(,[A-Za-z0-9]+=[A-Za-z0-9]+)*$")


class CallParameterError(ValueError):
    """A Make-a-call parameter breaks a rule of Plivo's parameter table."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def _url(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be an http(s) URL")
    if len(value) > URL_MAX_CHARS:
        raise ValueError(f"must be at most {URL_MAX_CHARS} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            "must be an http:// or https:// URL with a host, e.g. https://example.com/answer"
        )
    return value


def _method(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise ValueError("must be GET or POST")
    return value.upper()


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("must be true or false")


def _integer(value: object, low: int, high: int, unit: str) -> int:
    """A whole number from low to high, from an int or from ASCII digits (not `٣` or `²`, which
    str.isdigit accepts); a number too long to compare is refused before int() reads it."""
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number of {unit}")
    if isinstance(value, int):
        number = value
        shown = str(value)
    elif isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
        digits = value.strip().lstrip("0") or "0"
        shown = digits if len(digits) <= 20 else f"a number of {len(digits)} digits"
        # One digit more than the bound's: the comparison below refuses it either way.
        number = int(digits[: len(str(high)) + 1])
    else:
        raise ValueError(f"must be a whole number of {unit}")
    if not low <= number <= high:
        raise ValueError(f"must be between {low} and {high} {unit}, got {shown}")
    return number


def _seconds(value: object) -> int:
    return _integer(value, 1, INTEGER_COLUMN_MAX, "seconds")


def _caller_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty text")
    if len(value) > CALLER_NAME_MAX_CHARS:
        raise ValueError(f"must be at most {CALLER_NAME_MAX_CHARS} characters, got {len(value)}")
    return value


def _send_digits(value: object) -> str:
    if not isinstance(value, str) or not SEND_DIGITS_PATTERN.match(value):
        raise ValueError(
            "must be DTMF digits (0-9 A-D * #), w (wait 0.5 s) and W (wait 1 s), "
            "optionally @ and a tone length in ms, e.g. 1w2W3 or 123@1000"
        )
    return value


def _machine_detection(value: object) -> str:
    if isinstance(value, bool) and value:
        return "true"
    if isinstance(value, str) and value.lower() in MACHINE_DETECTION_VALUES:
        return value.lower()
    raise ValueError("must be true or hangup")


def _machine_detection_time(value: object) -> int:
    low, high = MACHINE_DETECTION_TIME_MS
    return _integer(value, low, high, "milliseconds")


def _sip_headers(value: object) -> str:
    if not isinstance(value, str) or not SIP_HEADERS_PATTERN.match(value):
        raise ValueError(
            "must be key=value pairs separated by commas, letters and digits only, e.g. a=1,b=2"
        )
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty text")
    return value


@dataclass(frozen=True, slots=True)
class CallParameter:
    """One optional Make-a-call parameter: its name, its rule, and whether bulk calls allow it."""

    name: str
    normalise: Callable[[object], object]
    bulk: bool = True


CALL_PARAMETERS: tuple[CallParameter, ...] = (
    CallParameter("answer_url", _url),
    CallParameter("answer_method", _method),
    CallParameter("ring_url", _url),
    CallParameter("ring_method", _method),
    CallParameter("hangup_url", _url),
    CallParameter("hangup_method", _method),
    CallParameter("fallback_url", _url),
    CallParameter("fallback_method", _method),
    CallParameter("caller_name", _caller_name),
    CallParameter("send_digits", _send_digits),
    CallParameter("send_on_preanswer", _boolean),
    CallParameter("time_limit", _seconds),
    CallParameter("hangup_on_ring", _seconds),
    CallParameter("machine_detection", _machine_detection),
    CallParameter("machine_detection_time", _machine_detection_time),
    CallParameter("machine_detection_url", _url),
    CallParameter("machine_detection_method", _method),
    CallParameter("sip_headers", _sip_headers),
    CallParameter("ring_timeout", _seconds),
    # Single calls only: Plivo refuses these on a bulk (`<`) request, so campaigns never set them.
    CallParameter("parent_call_uuid", _text, bulk=False),
    CallParameter("error_if_parent_not_found", _boolean, bulk=False),
)

CALL_PARAMETER_NAMES: tuple[str, ...] = tuple(parameter.name for parameter in CALL_PARAMETERS)
CAMPAIGN_CALL_PARAMETER_NAMES: tuple[str, ...] = tuple(
    parameter.name for parameter in CALL_PARAMETERS if parameter.bulk
)
_BY_NAME = {parameter.name: parameter for parameter in CALL_PARAMETERS}


def validate_call_parameters(values: Mapping[str, object]) -> dict[str, object]:
    """Normalise the Make-a-call parameters in `values`; raise CallParameterError on a bad one.

    Keys that are not optional Make-a-call parameters (`from`, `to`, anything unknown) are left
    out of the result; `None` means "not set" and is left out too.
    """
    normalised: dict[str, object] = {}
    for name, value in values.items():
        parameter = _BY_NAME.get(name)
        if parameter is None or value is None:
            continue
        try:
            normalised[name] = parameter.normalise(value)
        except ValueError as error:
            raise CallParameterError(name, str(error)) from None
    return normalised
