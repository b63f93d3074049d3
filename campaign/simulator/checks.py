"""What Plivo checks before it acts on a request: the credentials, the auth id in the path, and
every rule of a Make-a-call body. Pure: a failed check raises `Rejected` with Plivo's status and
`error` text, which the API turns into Plivo's error body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from campaign.callparams import CallParameterError, validate_call_parameters
from campaign.destinations import bare_number

# Plivo's limits, restated rather than imported from campaign.plivo: the simulator models Plivo,
# not our client, so a client that got a limit wrong cannot pass its tests by agreeing with itself.
MAX_DESTINATIONS_PER_REQUEST = 1000
DESTINATION_SEPARATOR = "<"
NUMBER_PATTERN = re.compile(r"^\+?[1-9][0-9]{6,14}$")
SIP_URI_PATTERN = re.compile(r"^sip:[^@\s<>]+@[^@\s<>]+$")


class Rejected(Exception):
    """A request the simulator answers with an error status and a Plivo-style body.

    `refusal` names the account limit that refused it (`request_rate`, `concurrent_calls`), for
    the ledger; None for a request that was wrong in itself.
    """

    def __init__(
        self,
        http_status: int,
        error: str,
        headers: Mapping[str, str] | None = None,
        *,
        refusal: str | None = None,
    ):
        super().__init__(error)
        self.http_status = http_status
        self.error = error
        self.headers = dict(headers or {})
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class MakeCallRequest:
    """A Make-a-call body that passed Plivo's checks, its destinations split as Plivo splits them.

    `destinations` are the valid ones (they are called), `invalid_numbers` the ones Plivo reports
    back without calling, both in `to` order; `parameters` are the rest of the body.
    """

    from_number: str
    destinations: tuple[str, ...]
    invalid_numbers: tuple[str, ...]
    parameters: Mapping[str, object]

    @property
    def bulk(self) -> bool:
        """More than one destination in `to`: Plivo's reply then says `calls` and lists uuids."""
        return len(self.destinations) + len(self.invalid_numbers) > 1


def is_valid_destination(destination: str) -> bool:
    """A number with its country code (E.164, `+` optional) or a SIP URI."""
    return bool(NUMBER_PATTERN.match(destination) or SIP_URI_PATTERN.match(destination))


def check_credentials(
    authorization: str, auth_id_in_path: str | None, auth_id: str, auth_token: str
) -> None:
    """HTTP Basic credentials of the account (else 401), and its auth id in the path (else 404)."""
    try:
        credentials = aiohttp.BasicAuth.decode(authorization) if authorization else None
    except ValueError:
        credentials = None
    if credentials is None or credentials.login != auth_id or credentials.password != auth_token:
        raise Rejected(401, "Authentication credentials invalid")
    if auth_id_in_path != auth_id:
        raise Rejected(404, "Resource not found")


def check_make_call(body: dict[str, Any]) -> MakeCallRequest:
    """Plivo's checks of a Make-a-call body; the first that fails raises a 400 with its reason."""
    for required in ("from", "to", "answer_url"):
        value = body.get(required)
        if value is None or value == "":
            raise Rejected(400, f"{required} parameter is missing")
    from_number, to = body["from"], body["to"]
    if not isinstance(from_number, str) or not NUMBER_PATTERN.match(from_number):
        raise Rejected(400, "from parameter is not a valid number")
    if not isinstance(to, str):
        raise Rejected(400, "to parameter must be text, destinations separated by <")
    try:
        validate_call_parameters(body)
    except CallParameterError as error:
        raise Rejected(400, f"invalid {error.parameter}: {error.message}") from None
    destinations = to.split(DESTINATION_SEPARATOR)
    if len(destinations) > MAX_DESTINATIONS_PER_REQUEST:
        raise Rejected(
            400,
            f"too many destinations: {len(destinations)}, at most "
            f"{MAX_DESTINATIONS_PER_REQUEST} per request",
        )
    bulk = len(destinations) > 1
    if bulk and body.get("parent_call_uuid"):
        raise Rejected(400, "parent_call_uuid cannot be used with bulk calls")
    seen: set[str] = set()
    valid: list[str] = []
    invalid: list[str] = []
    bare_from = bare_number(from_number)
    for destination in destinations:
        key = bare_number(destination)
        if key in seen:
            raise Rejected(400, f"duplicate destination {destination} in to")
        seen.add(key)
        if key == bare_from:
            raise Rejected(400, "from number cannot be one of the destinations")
        (valid if is_valid_destination(destination) else invalid).append(destination)
    if not valid:
        raise Rejected(400, "to parameter has no valid destination")
    return MakeCallRequest(
        from_number=from_number,
        destinations=tuple(valid),
        invalid_numbers=tuple(invalid),
        parameters={k: v for k, v in body.items() if k not in ("from", "to")},
    )
