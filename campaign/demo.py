"""The sample campaign of `campaign demo`: a CSV with the quirks real contact lists have."""

from __future__ import annotations

import csv
import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
from pydantic import SecretStr

from campaign import db, queries
from campaign.config import Settings
from campaign.importer import CsvSource, LoadObserver, LoadOptions, LoadSummary, load_csv
from campaign.models import CallingWindow, CampaignSpec, Progress, Schedule
from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session
from campaign.simulator import SimulatorConfig, running_simulator
from campaign.specs import DEFAULT_CALLING_HOURS, calling_hours
from campaign.worker import Worker, WorkerConfig

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")


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


def write_sample_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Write `rows` contacts in five time zones: mixed number formats, a few invalid rows and a
    duplicate."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The zones rotate one step further every ten rows, so that the odd rows (an invalid
    # value, a duplicate) do not always fall on the same zone.
    numbers = [
        _valid_number(*SAMPLE_PREFIXES[(index + index // 10) % len(SAMPLE_PREFIXES)], rng)
        for index in range(rows)
    ]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "phone", "appointment"])
        for index, number in enumerate(numbers):
            value = _written_as(number, rng)
            if rows >= 10 and index % 10 == 9:
                value = rng.choice(("555-01", "not a number", "+999 123"))
            elif rows >= 10 and index % 10 == 4:
                value = _written_as(numbers[index - 1], rng)
            day = 1 + index % 28
            writer.writerow([rng.choice(FIRST_NAMES), value, f"2026-12-{day:02d} 10:00"])


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What `campaign demo` did."""

    load: LoadSummary
    progress: Progress
    # The campaign's schedule, and when the window of those that wait for theirs opens.
    window: CallingWindow
    dialled: int
    max_calls_per_second: int
    calls_per_second: float
    elapsed_s: float


DEMO_CALLS_PER_SECOND = 20.0


async def run_demo(
    settings: Settings,
    source: CsvSource,
    campaign_name: str,
    observer: LoadObserver,
    schedule: Schedule | None = None,
) -> DemoResult:
    """Load `source` into a new campaign and dial it, drained, through an in-process simulator.

    The campaign keeps `schedule` (default: the CLI's, 08:00-21:00 in each callee's local
    time, on the wall clock): contacts whose window is closed are left pending for it, and the
    result says when it opens.
    """
    started = time.monotonic()
    # The demo's own fake account: a fresh token, the simulator's limits, quick calls.
    account = SimulatorConfig(
        auth_id="MADEMO00000000000000",
        auth_token=secrets.token_urlsafe(16),
        calls_per_second=DEMO_CALLS_PER_SECOND,
        ring_after_s=0.05,
        answer_after_s=0.2,
        talk_s=0.5,
    )
    async with running_simulator(account) as simulator:
        demo_settings = settings.model_copy(
            update={
                "plivo_auth_id": account.auth_id,
                "plivo_auth_token": SecretStr(account.auth_token),
                "plivo_api_url": simulator.base_url,
                "account_cps": DEMO_CALLS_PER_SECOND,
                "worker_poll_interval_s": 0.2,
            }
        )
        spec = CampaignSpec(
            name=campaign_name,
            from_number="+14155550100",
            answer_url=f"{simulator.base_url}/demo/answer.xml",
            call_parameters={"answer_method": "GET"},
            batch_size=100,
            schedule=schedule
            if schedule is not None
            else Schedule(calling_hours=calling_hours(DEFAULT_CALLING_HOURS)),
        )
        async with db.open_pool(
            demo_settings, min_connections=demo_settings.worker_concurrency + 2
        ) as pool:
            summary = await load_csv(pool, source, spec, LoadOptions(default_region="US"), observer)
            async with new_plivo_session() as session:
                client = PlivoClient(session, PlivoClientConfig.from_settings(demo_settings))
                # Only the demo's campaign: others in the same database are not the demo's to dial.
                config = WorkerConfig.from_settings(
                    demo_settings, campaign_ids=(summary.campaign.id,)
                )
                worker = Worker(pool, client, config)
                await worker.run(drain=True)
            progress = await queries.progress(pool, campaign_name)
            window = await queries.calling_window(pool, campaign_name)
        ledger = simulator.ledger
        per_second = ledger.calls_per_second()
    assert progress is not None  # the campaign was created above
    assert window is not None
    return DemoResult(
        load=summary,
        progress=progress,
        window=window,
        dialled=sum(per_second.values()),
        max_calls_per_second=max(per_second.values(), default=0),
        calls_per_second=DEMO_CALLS_PER_SECOND,
        elapsed_s=time.monotonic() - started,
    )
