"""A faithful fake Plivo Voice API for tests, demos and benchmarks.

It checks what Plivo checks (credentials, JSON body, every Make-a-call parameter rule, at most
1000 destinations, `from` not among them), keeps Plivo's account limits (calls per second, over
which calls are queued; 300 API requests per 5 s, over which it answers 429; optionally India's
limit on concurrent calls, over which it refuses with 403 and error code 5030), plays each call
out (ring, answer, hangup) with V3-signed callbacks, plays the Plivo XML the answer_url returns
(Speak, Play, Wait, GetDigits menus with seeded keypresses, Redirect, Hangup), answers the
look-ups and the cancel of a queued call, and injects faults at configured rates. Everything it
did, and what each callee heard, is kept in a ledger that a test reads in-process or over HTTP at
`GET /__simulator__/ledger`, a path Plivo does not use.

It stays cheap per request so that a benchmark can push tens of thousands of destinations a
second through it: a call's life is computed when it is placed, not played out by a task, unless
callbacks are on.

Modules, in import order: `config` (how it behaves), `ledger` (what it did), `checks` (what a
request must satisfy), `account` (limits, queue, calls, seeded draws), `callflow` (walking a
call's Plivo XML), `calls` (call playback and callbacks), `api` (the HTTP handlers wiring them),
`server` (serving it).
"""

from __future__ import annotations

from campaign.simulator.account import SimulatedAccount
from campaign.simulator.api import CDR_PAGE_MAX_LIMIT, LEDGER_PATH, SIMULATOR_KEY, PlivoSimulator
from campaign.simulator.callflow import (
    MAX_DOCUMENTS_PER_CALL,
    MAX_HEARD_PER_CALL,
    CallFlow,
    DocumentRequest,
    Fetched,
)
from campaign.simulator.calls import CallPlayer, is_loopback_url
from campaign.simulator.checks import (
    MAX_DESTINATIONS_PER_REQUEST,
    NUMBER_PATTERN,
    SIP_URI_PATTERN,
    is_valid_destination,
)
from campaign.simulator.config import (
    FAULTS,
    FAULTS_ALL,
    HANGUP_CAUSES,
    OUTCOMES,
    PHONE_KEYS,
    SimulatorConfig,
)
from campaign.simulator.ledger import (
    CallbackRecord,
    Ledger,
    RequestRecord,
    SimulatedCall,
    time_weighted_mean,
)
from campaign.simulator.server import RunningSimulator, running_simulator, serve_simulator

__all__ = [
    "CDR_PAGE_MAX_LIMIT",
    "FAULTS",
    "FAULTS_ALL",
    "HANGUP_CAUSES",
    "LEDGER_PATH",
    "MAX_DESTINATIONS_PER_REQUEST",
    "MAX_DOCUMENTS_PER_CALL",
    "MAX_HEARD_PER_CALL",
    "NUMBER_PATTERN",
    "OUTCOMES",
    "PHONE_KEYS",
    "SIMULATOR_KEY",
    "SIP_URI_PATTERN",
    "CallFlow",
    "CallPlayer",
    "CallbackRecord",
    "DocumentRequest",
    "Fetched",
    "Ledger",
    "PlivoSimulator",
    "RequestRecord",
    "RunningSimulator",
    "SimulatedAccount",
    "SimulatedCall",
    "SimulatorConfig",
    "is_loopback_url",
    "is_valid_destination",
    "running_simulator",
    "serve_simulator",
    "time_weighted_mean",
]
