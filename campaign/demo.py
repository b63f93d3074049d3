"""The sample campaign of `campaign demo`: a CSV with the quirks real contact lists have, an
appointment reminder with a keypress menu, and a simulated Plivo whose callees answer it.

The demo runs the whole loop in one process: the engine's web app (answers, keypresses,
callbacks) on a loopback port, the simulator calling it back, a worker dialling until the
campaign has nothing left it can dial now (busy and unanswered calls redialled seconds later),
and a summary read from the database and from what the simulator's callees heard.
"""

from __future__ import annotations

import csv
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import phonenumbers
from pydantic import SecretStr

from campaign import db, queries, specs
from campaign.config import Settings
from campaign.importer import CsvSource, LoadObserver, LoadOptions, LoadSummary, load_csv
from campaign.metrics import Metrics
from campaign.models import CallingWindow, CampaignSpec, Progress, Schedule
from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session
from campaign.simulator import Ledger, SimulatorConfig, running_simulator
from campaign.specs import DEFAULT_CALLING_HOURS, CampaignOptions, calling_hours
from campaign.voice import VoiceContent
from campaign.web import AppInstaller, WebConfig, serving
from campaign.worker import Worker, WorkerConfig

FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Tim",
    "Katherine",
    "Linus",
    "Hedy",
    "Vint",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


# Where the sample's callees live: a prefix of fixed lines in one time zone each (San Francisco,
# New York, London, Mumbai, Sydney), so that at any hour of the day some of them are within
# the default calling hours (08:00-21:00 in their own time) and others are not.
SAMPLE_PREFIXES: tuple[tuple[str, int], ...] = (
    ("+1415", 7),
    ("+1212", 7),
    ("+4420", 8),
    ("+9122", 8),
    ("+612", 8),
)


def _valid_number(prefix: str, digits: int, rng: random.Random) -> str:
    while True:
        candidate = prefix + "".join(rng.choice("0123456789") for _ in range(digits))
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


def _written_as(number: str, rng: random.Random) -> str:
    if not number.startswith("+1"):
        # Numbers abroad carry their country code; spaced as people write them.
        return f"{number[:3]} {number[3:6]} {number[6:]}"
    digits = number[2:]
    styles = (
        number,
        f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
        f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
        f"1{digits}",
        f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}",
    )
    return rng.choice(styles)


def _appointment(first_day: date, rng: random.Random) -> str:
    """A weekday within two weeks of `first_day`, in clinic hours, as a reminder would say it:
    `Tuesday 8 December at 10:30`."""
    day = first_day + timedelta(days=rng.randint(1, 14))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    minutes = 8 * 60 + 30 + 15 * rng.randrange(36)  # 08:30 to 17:15
    return (
        f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} "
        f"at {minutes // 60:02d}:{minutes % 60:02d}"
    )


def write_sample_csv(path: Path, rows: int, seed: int = 7, first_day: date | None = None) -> None:
    """Write `rows` contacts in five time zones, each with a first name and an appointment in
    the two weeks after `first_day` (default: today): mixed number formats, a few invalid rows,
    a duplicate and a missing first name, as real lists have. The same seed and day give the
    same file."""
    rng = random.Random(seed)
    # Names and appointments from a generator of their own: the numbers stay those of the seed.
    people = random.Random(f"{seed}/people")
    first_day = first_day or date.today()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The zones rotate one step further every ten rows, so that the odd rows (an invalid
    # value, a duplicate) do not always fall on the same zone.
    numbers = [
        _valid_number(*SAMPLE_PREFIXES[(index + index // 10) % len(SAMPLE_PREFIXES)], rng)
        for index in range(rows)
    ]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["first_name", "phone", "appointment"])
        for index, number in enumerate(numbers):
            value = _written_as(number, rng)
            if rows >= 10 and index % 10 == 9:
                value = rng.choice(("555-01", "not a number", "+999 123"))
            elif rows >= 10 and index % 10 == 4:
                value = _written_as(numbers[index - 1], rng)
            first_name = people.choice(FIRST_NAMES)
            if rows >= 10 and index % 10 == 6:
                # The message's {first_name|there} greets this one as "Hello there".
                first_name = ""
            writer.writerow([first_name, value, _appointment(first_day, people)])


# What the demo's calls say and the keys they listen for: `campaign load`'s options, as a user
# would give them (see the README, "What the call says, and what the callee answers").
DEMO_MESSAGE = "Hello {first_name|there}, your appointment is on {appointment}."
# The columns it reads, which the sample has; a CSV of one's own (`--csv`) without them hears
# the reminder without its details.
DEMO_MESSAGE_COLUMNS = frozenset({"first_name", "appointment"})
DEMO_PLAIN_MESSAGE = "Hello, this is a reminder of your appointment."
DEMO_GATHER = "1=confirmed,2=cancelled,9=opt-out"
DEMO_GATHER_PROMPT = "Press 1 to confirm, 2 to cancel, or 9 to stop these calls."
DEMO_AFTER = (
    "1=Thank you, see you then.",
    "2=Your appointment is cancelled. Call us to book another.",
    "9=You will not be called again.",
)
# Busy and unanswered calls are dialled again, twice at most, after seconds rather than the
# minutes a real campaign waits: the demo lasts seconds.
DEMO_REDIAL_ON = "busy,no-answer"
DEMO_REDIAL_DELAYS = "2s"
DEMO_MAX_ATTEMPTS = 3
DEMO_FROM = "+14155550100"
DEMO_CALLS_PER_SECOND = 20.0
# The simulator's callees: how calls end, and the keys those who answer press (the rest of
# them press nothing). Each callee's fate is drawn from DEMO_SEED and their number
# (draws_by_destination), so the default sample shows, in each of its time zones, callees who
# confirm, cancel, opt out and are busy: whichever windows are open, the demo shows them all
# (tests/unit/test_demo_sample.py holds the seed to it).
DEMO_OUTCOME_SHARES = {"completed": 0.6, "busy": 0.25, "no-answer": 0.15}
DEMO_DIGIT_SHARES = {"1": 0.55, "2": 0.2, "9": 0.15}
DEMO_SEED = 13857
DEMO_ROWS = 50
# How long the demo's worker waits for a hangup it may redial (the simulator's come in
# a second; this only bounds the demo if one never does).
DEMO_CALLBACK_WAIT_S = 30.0
LOOPBACK = "127.0.0.1"


def demo_simulator_config(auth_token: str) -> SimulatorConfig:
    """The demo's fake Plivo account: its token, the simulator's limits, quick calls, the
    callees' fates."""
    return SimulatorConfig(
        auth_id="MADEMO00000000000000",
        auth_token=auth_token,
        calls_per_second=DEMO_CALLS_PER_SECOND,
        ring_after_s=0.05,
        answer_after_s=0.2,
        talk_s=0.5,
        outcome_shares=DEMO_OUTCOME_SHARES,
        digit_shares=DEMO_DIGIT_SHARES,
        seed=DEMO_SEED,
        draws_by_destination=True,
    )


def demo_message(path: Path) -> str:
    """The reminder with the callee's name and appointment when the CSV at `path` has those
    columns (the sample does), else the plain one (the load reports a file it cannot read)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = csv.reader(handle)
            header = next((row for row in rows if any(cell.strip() for cell in row)), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        header = []
    columns = {cell.strip() for cell in header}
    return DEMO_MESSAGE if columns >= DEMO_MESSAGE_COLUMNS else DEMO_PLAIN_MESSAGE


def demo_campaign(
    name: str, engine_url: str, schedule: Schedule | None, message: str = DEMO_MESSAGE
) -> CampaignSpec:
    """The demo's campaign, checked as `campaign load` checks its options: the reminder, the
    menu, tracked calls and quick redials, its answers and callbacks served at `engine_url`."""
    spec = specs.new_campaign(
        CampaignOptions(
            name=name,
            from_number=DEMO_FROM,
            batch_size=100,
            max_attempts=DEMO_MAX_ATTEMPTS,
            track_calls=True,
            redial_on=DEMO_REDIAL_ON,
            redial_delays=DEMO_REDIAL_DELAYS,
            message=message,
            gather=DEMO_GATHER,
            gather_prompt=DEMO_GATHER_PROMPT,
            after=DEMO_AFTER,
        ),
        engine_url,
    )
    return replace(
        spec,
        schedule=schedule
        if schedule is not None
        else Schedule(calling_hours=calling_hours(DEFAULT_CALLING_HOURS)),
    )


@dataclass(frozen=True, slots=True)
class Heard:
    """What one callee heard (every <Speak>, in order) and the keys they pressed."""

    destination: str
    text: str
    digits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What `campaign demo` did."""

    load: LoadSummary
    progress: Progress
    # The campaign's schedule, and when the window of those that wait for theirs opens.
    window: CallingWindow
    # Destinations dialled, and calls placed (redials included).
    dialled: int
    calls: int
    max_calls_per_second: int
    calls_per_second: float
    elapsed_s: float
    content: VoiceContent = field(default_factory=VoiceContent)
    redials: queries.Redials = field(default_factory=queries.Redials)
    opt_outs: tuple[queries.OptOut, ...] = ()
    # A callee who answered and pressed a key the menu names, as the simulator heard it.
    example: Heard | None = None


def example_callee(ledger: Ledger, gather: Mapping[str, str]) -> Heard | None:
    """The first callee who heard the message and pressed a key of the menu (a confirmation
    first, then any), preferring one greeted by name."""
    candidates = []
    for destination in dict.fromkeys(call.destination for call in ledger.dials):
        digits = tuple(ledger.digits_pressed(destination))
        if any(digit in gather for digit in digits):
            candidates.append(Heard(destination, ledger.spoken_text(destination), digits))

    def rank(heard: Heard) -> tuple[bool, bool]:
        return (heard.digits[-1] != next(iter(gather), ""), "Hello there" in heard.text)

    return min(candidates, key=rank, default=None)


@dataclass(frozen=True)
class DemoDashboard:
    """`campaign demo --dashboard`: told the dashboard's URL and the demo's connection pool
    before dialing (`opened`), and given the result once done (`done`), while the dashboard
    still serves: the demo ends when `done` returns."""

    opened: Callable[[str, asyncpg.Pool], Awaitable[None]]
    done: Callable[[DemoResult], Awaitable[None]]
    # The dashboard's installer (campaign/dashboard/app.py) on the pool it is given.
    installer: Callable[[asyncpg.Pool, Settings], AppInstaller]


async def run_demo(
    settings: Settings,
    source: CsvSource,
    campaign_name: str,
    observer: LoadObserver,
    schedule: Schedule | None = None,
    dashboard: DemoDashboard | None = None,
) -> DemoResult:
    """Load `source` into a new campaign and dial it, drained, through an in-process simulator,
    with the engine's web app (answers, keypresses, callbacks) on a loopback port.

    The campaign keeps `schedule` (default: the CLI's, 08:00-21:00 in each callee's local
    time, on the wall clock): contacts whose window is closed are left pending for it, and the
    result says when it opens.
    """
    started = time.monotonic()
    account = demo_simulator_config(secrets.token_urlsafe(16))
    # Plivo signs its requests to the engine with the account's token; the engine checks them
    # against the URL it serves on (no CAMPAIGN_PUBLIC_URL: the loopback port is that URL).
    web_config = WebConfig(public_url=None, auth_tokens=(account.auth_token,))
    async with (
        db.open_pool(settings, min_connections=settings.worker_concurrency + 4) as pool,
        db.open_status_pool(settings) as status_pool,
        db.open_dashboard_pool(settings) as dashboard_pool,
        serving(
            pool,
            Metrics(),
            web_config,
            LOOPBACK,
            0,
            status_pool=status_pool,
            dashboard=None if dashboard is None else dashboard.installer(dashboard_pool, settings),
        ) as engine_url,
        running_simulator(account) as simulator,
    ):
        if dashboard is not None:
            await dashboard.opened(engine_url, pool)
        demo_settings = settings.model_copy(
            update={
                "plivo_auth_id": account.auth_id,
                "plivo_auth_token": SecretStr(account.auth_token),
                "plivo_api_url": simulator.base_url,
                "account_cps": DEMO_CALLS_PER_SECOND,
                "worker_poll_interval_s": 0.2,
                "callback_wait_s": DEMO_CALLBACK_WAIT_S,
            }
        )
        spec = demo_campaign(campaign_name, engine_url, schedule, demo_message(source.path))
        summary = await load_csv(pool, source, spec, LoadOptions(default_region="US"), observer)
        async with new_plivo_session() as session:
            client = PlivoClient(session, PlivoClientConfig.from_settings(demo_settings))
            # Only the demo's campaign: others in the same database are not the demo's to dial.
            config = WorkerConfig.from_settings(demo_settings, campaign_ids=(summary.campaign.id,))
            worker = Worker(pool, client, config)
            await worker.run(drain=True)
        # The last calls (those not redialled whatever they say) finish: their keys and hangups.
        await simulator.simulator.settle()
        progress = await queries.progress(pool, campaign_name)
        window = await queries.calling_window(pool, campaign_name)
        redials = await queries.redials(pool, summary.campaign.id)
        opt_outs = await queries.opt_outs(pool, summary.campaign.id)
        ledger = simulator.ledger
        per_second = ledger.calls_per_second()
        example = example_callee(ledger, spec.content.gather)
        dialled = len(ledger.dial_counts())
        assert progress is not None  # the campaign was created above
        assert window is not None
        result = DemoResult(
            load=summary,
            progress=progress,
            window=window,
            dialled=dialled,
            calls=sum(per_second.values()),
            max_calls_per_second=max(per_second.values(), default=0),
            calls_per_second=DEMO_CALLS_PER_SECOND,
            elapsed_s=time.monotonic() - started,
            content=spec.content,
            redials=redials,
            opt_outs=tuple(opt_outs),
            example=example,
        )
        if dashboard is not None:
            await dashboard.done(result)
    return result


def describe_answers(result: DemoResult) -> list[str]:
    """The lines of the demo's summary about what callees answered: responses by meaning, the
    redials, the opt-outs on the list `default`, and what one callee heard."""
    content = result.content
    progress = result.progress
    lines = []
    # As `campaign status` says it (campaign_progress.responses), with those who said nothing.
    silent = progress.answered - sum(progress.responses.values())
    lines.append(
        (progress.responses_line() or "responses: none")
        + (f"; {silent} answered and pressed nothing" if silent > 0 else "")
        + " (keys: "
        + ", ".join(f"{digit}={meaning}" for digit, meaning in content.gather.items())
        + ")"
    )
    redials = result.redials
    if redials.calls:
        lines.append(
            f"redialled {redials.contacts} callees, {redials.calls} times in all, after calls "
            "that ended "
            + " or ".join(f"{status} ({calls})" for status, calls in redials.by_call_status.items())
        )
    else:
        lines.append("redialled nobody: no call was busy or unanswered")
    listed = [opt_out.destination for opt_out in result.opt_outs if opt_out.reason is not None]
    if listed:
        lines.append(
            f"opted out, now on the suppression list `default` (never called again): "
            f"{', '.join(listed)}"
        )
    else:
        lines.append("opted out: nobody")
    if result.load.suppressed:
        lines.append(
            f"{result.load.suppressed} callees were not called: on a suppression list (an "
            "earlier demo's opt-outs stay on `default`; `campaign suppress list --list default` "
            "shows them, `campaign suppress remove` takes them off)"
        )
    example = result.example
    if example is not None:
        pressed = ", ".join(
            f"{digit} ({content.gather.get(digit, 'invalid')})" for digit in example.digits
        )
        lines.append(f'{example.destination} heard: "{example.text}" and pressed {pressed}')
    return lines
