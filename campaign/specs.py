"""A campaign's settings, checked: pure functions from the raw option values to a CampaignSpec.

No I/O, no click, no exit: `campaign load` hands the values of its options in, and turns the one
error type, SpecError, into one line naming the option (`campaign: error: --from: …`) and exit
code 2. The rules here are the ones a user can break; the database's CHECK constraints restate
the bounds, as a last line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time

import phonenumbers

from campaign.callerids import MAX_POOL_SIZE, CallerIdMode, pool_number
from campaign.callparams import CallParameterError, validate_call_parameters
from campaign.config import check_webhook_url
from campaign.destinations import AmbiguousNumber, InvalidDestination, normalise_destination
from campaign.models import (
    WEEKDAYS,
    CampaignSpec,
    CampaignStatus,
    RedialableCallStatus,
    Schedule,
    TimeRange,
)
from campaign.voice import (
    ANSWER_PATH,
    DIGITS_URL_PLACEHOLDER,
    Template,
    VoiceContent,
    check_answer_template,
    parse_after,
    parse_gather,
)

NAME_MAX_CHARS = 200
# The bounds of the campaigns table's CHECK constraints (migrations/0001); `campaign load`'s
# options declare the same ranges, so click refuses an out-of-range value before we see it.
BATCH_SIZE_RANGE = (1, 1000)
MAX_ATTEMPTS_RANGE = (1, 100)
CALLS_PER_SECOND_RANGE = (0.01, 1000.0)
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_ATTEMPTS = 3
NO_ANSWER_URL = (
    "a new campaign needs the URL of its Plivo XML, or what the engine should say: "
    "--message TEXT, --play URL or --answer-xml FILE"
)

DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A redial waits at most a year: longer is a typo (and 30000d overflows the integer column).
REDIAL_DELAY_MAX_S = 365 * 86400
_WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)
# The callbacks --track-calls points at this engine: a campaign cannot also set its own.
TRACKED_CALLBACK_PARAMETERS = ("ring_url", "hangup_url", "machine_detection_url")
# Calls are placed between 8 am and 9 pm in the callee's local time unless told otherwise (the
# TCPA's hours in the US, and within the UK's, India's and Australia's rules).
DEFAULT_CALLING_HOURS = "08:00-21:00"
MAX_CALLS_PER_NUMBER_RANGE = (1, 1000)
PRIORITY_RANGE = (-1000, 1000)
MAX_CONCURRENT_CALLS_RANGE = (1, 1_000_000)
MAX_CALLS_PER_CALLER_ID_RANGE = (1, 10_000_000)
LIST_NAME_MAX_CHARS = 100
# Start and end times are refused outside these years (beyond them, a typo).
INSTANT_YEARS = (2000, 9998)
NUL_CHAR = "\x00"
_CLOCK_TIME = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])", re.ASCII)
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*", re.ASCII)


class SpecError(ValueError):
    """A campaign setting breaks a rule: `option` names the option(s) at fault, if one is."""

    def __init__(self, option: str | None, message: str) -> None:
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option
        self.message = message


@dataclass(frozen=True, slots=True)
class CampaignOptions:
    """The raw values of `campaign load`'s options that say which campaign a load goes into.

    `None` (and `False`) means "not given". `call_parameters` holds the optional Make-a-call
    parameters by their Plivo names (`ring_url`), in the order they were given.
    """

    name: str | None = None
    existing: str | None = None  # --campaign NAME
    from_number: str | None = None
    answer_url: str | None = None
    call_parameters: Mapping[str, str | None] = field(default_factory=dict)
    calls_per_second: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    paused: bool = False
    track_calls: bool = False
    redial_on: str | None = None
    redial_delays: str | None = None
    # When calls may be placed (None: not given; --calling-hours defaults to 08:00-21:00).
    calling_hours: str | None = None
    calling_days: str | None = None
    skip_dates: str | None = None
    start_at: str | None = None
    end_at: str | None = None
    default_timezone: str | None = None
    # The lists the campaign honours besides `default` (--suppression-list, repeatable).
    suppression_lists: Sequence[str] = ()
    max_calls_per_number_per_day: int | None = None
    # Pacing: priority (None: 0) and the cap of calls live at once (needs track_calls).
    priority: int | None = None
    max_concurrent_calls: int | None = None
    # The numbers of --from-file (read by the command), and how a pool's numbers are used.
    from_file_numbers: Sequence[str] | None = None
    caller_id_mode: str | None = None
    calls_per_second_per_caller_id: float | None = None
    max_calls_per_caller_id_per_day: int | None = None
    # What the call says (voice.py): the text of --answer-xml's file and its name.
    message: str | None = None
    voice: str | None = None
    language: str | None = None
    play_url: str | None = None
    play_after_url: str | None = None
    answer_xml: str | None = None
    answer_xml_name: str | None = None
    gather: str | None = None
    gather_prompt: str | None = None
    gather_timeout_s: int | None = None
    gather_retries: int | None = None
    after: Sequence[str] = ()
    on_machine: str | None = None
    voicemail_message: str | None = None
    # Where the campaign's events go (--webhook-url, or CAMPAIGN_WEBHOOK_URL by default).
    webhook_url: str | None = None


def webhook_url(value: str | None) -> str | None:
    """--webhook-url, checked (where it resolves to is checked by campaign.webhooks)."""
    if value is None:
        return None
    try:
        return check_webhook_url(value)
    except ValueError as error:
        raise SpecError("--webhook-url", str(error)) from None


def option_for(parameter: str) -> str:
    """The command-line option of a Make-a-call parameter: `ring_url` → `--ring-url`."""
    return f"--{parameter.replace('_', '-')}"


def load_target(options: CampaignOptions, public_url: str | None) -> CampaignSpec | str:
    """The campaign a load goes into: a new campaign's checked spec, or an existing one's name.

    `public_url` is CAMPAIGN_PUBLIC_URL, where --track-calls points the calls' callbacks.
    """
    if options.existing is not None:
        check_load_into_existing(options)
        return options.existing
    return new_campaign(options, public_url)


def check_load_into_existing(options: CampaignOptions) -> None:
    """A load into an existing campaign names no new one and cannot change its settings."""
    if options.name is not None:
        raise SpecError(
            None, "give either --name (a new campaign) or --campaign (an existing one), not both"
        )
    changed = [
        option_for(name) for name, value in options.call_parameters.items() if value is not None
    ]
    changed += [
        flag
        for flag, value in (
            ("--from", options.from_number),
            ("--from-file", options.from_file_numbers),
            ("--answer-url", options.answer_url),
            ("--calls-per-second", options.calls_per_second),
            ("--priority", options.priority),
            ("--max-concurrent-calls", options.max_concurrent_calls),
            ("--caller-id", options.caller_id_mode),
            ("--calls-per-second-per-caller-id", options.calls_per_second_per_caller_id),
            ("--max-calls-per-caller-id-per-day", options.max_calls_per_caller_id_per_day),
            ("--message", options.message),
            ("--play", options.play_url),
            ("--answer-xml", options.answer_xml),
            ("--gather", options.gather),
            ("--on-machine", options.on_machine),
            ("--webhook-url", options.webhook_url),
        )
        if value is not None
    ]
    if changed:
        raise SpecError(
            ", ".join(changed), "a load into an existing campaign cannot change its settings"
        )
    if options.track_calls or options.redial_on or options.redial_delays:
        raise SpecError(
            "--track-calls/--redial-on/--redial-delays",
            "a load into an existing campaign cannot change its settings",
        )
    scheduling = [
        flag
        for flag, value in (
            ("--calling-hours", options.calling_hours),
            ("--calling-days", options.calling_days),
            ("--skip-dates", options.skip_dates),
            ("--start-at", options.start_at),
            ("--end-at", options.end_at),
            ("--default-timezone", options.default_timezone),
            ("--suppression-list", options.suppression_lists or None),
            ("--max-calls-per-number-per-day", options.max_calls_per_number_per_day),
        )
        if value is not None
    ]
    if scheduling:
        raise SpecError(
            ", ".join(scheduling),
            "a load into an existing campaign cannot change its settings (its contacts get "
            "the campaign's)",
        )


def new_campaign(options: CampaignOptions, public_url: str | None) -> CampaignSpec:
    """The spec of a new campaign, with every setting checked and normalised."""
    if options.name is None:
        raise SpecError(
            None, "give --name NAME to create a campaign, or --campaign NAME to add to one"
        )
    name = campaign_name(options.name)
    content = voice_content(options)
    if content.serves_answer and options.answer_url is not None:
        raise SpecError(
            "--answer-url",
            "with --message, --play or --answer-xml the engine serves the call's XML itself; "
            "leave out --answer-url",
        )
    no_answer = options.answer_url is None and not content.serves_answer
    if no_answer and (options.from_number is not None or options.from_file_numbers is not None):
        raise SpecError("--answer-url", NO_ANSWER_URL)
    numbers = caller_id_numbers(options.from_number, options.from_file_numbers)
    if no_answer:
        raise SpecError("--answer-url", NO_ANSWER_URL)
    serve_at = answer_service_url(content, public_url)
    from_number = numbers[0]
    parameters = call_parameters(
        options.answer_url or f"{serve_at}{ANSWER_PATH}", options.call_parameters
    )
    answer_url = str(parameters.pop("answer_url"))
    check_machine_options(content, parameters, options.redial_on)
    _check_range("--calls-per-second", options.calls_per_second, CALLS_PER_SECOND_RANGE)
    _check_range("--batch-size", options.batch_size, BATCH_SIZE_RANGE)
    _check_range("--max-attempts", options.max_attempts, MAX_ATTEMPTS_RANGE)
    statuses = redial_statuses(options.redial_on)
    delays_s = redial_delays(options.redial_delays)
    if statuses and not options.track_calls:
        raise SpecError("--redial-on", "redials need the calls' outcomes; add --track-calls")
    if delays_s and not statuses:
        raise SpecError("--redial-delays", "say which calls to redial with --redial-on")
    _check_range(
        "--max-calls-per-number-per-day",
        options.max_calls_per_number_per_day,
        MAX_CALLS_PER_NUMBER_RANGE,
    )
    _check_range("--priority", options.priority, PRIORITY_RANGE)
    _check_range("--max-concurrent-calls", options.max_concurrent_calls, MAX_CONCURRENT_CALLS_RANGE)
    if options.max_concurrent_calls is not None and not options.track_calls:
        raise SpecError(
            "--max-concurrent-calls",
            "a call counts until its hangup callback, so the cap needs --track-calls",
        )
    _check_range(
        "--calls-per-second-per-caller-id",
        options.calls_per_second_per_caller_id,
        CALLS_PER_SECOND_RANGE,
    )
    _check_range(
        "--max-calls-per-caller-id-per-day",
        options.max_calls_per_caller_id_per_day,
        MAX_CALLS_PER_CALLER_ID_RANGE,
    )
    mode = caller_id_mode(options.caller_id_mode, len(numbers))
    # One number with limits of its own is a pool of one: the claim applies them the same way.
    pooled = mode is not None or (
        options.calls_per_second_per_caller_id is not None
        or options.max_calls_per_caller_id_per_day is not None
    )
    return CampaignSpec(
        name=name,
        from_number=from_number,
        answer_url=answer_url,
        call_parameters=parameters,
        calls_per_second=options.calls_per_second,
        batch_size=options.batch_size,
        max_attempts=options.max_attempts,
        status=CampaignStatus.PAUSED if options.paused else CampaignStatus.RUNNING,
        redial_on=statuses,
        redial_delays_s=delays_s,
        track_calls_at=tracking_url(options.track_calls, public_url, parameters),
        schedule=schedule(options),
        default_time_zone=time_zone_name("--default-timezone", options.default_timezone),
        suppression_lists=suppression_lists(options.suppression_lists),
        max_calls_per_number_per_day=options.max_calls_per_number_per_day,
        priority=options.priority or 0,
        max_concurrent_calls=options.max_concurrent_calls,
        caller_ids=tuple(pool_number(number) for number in numbers) if pooled else (),
        caller_id_mode=(mode or CallerIdMode.ROTATE) if pooled else None,
        calls_per_second_per_caller_id=options.calls_per_second_per_caller_id,
        max_calls_per_caller_id_per_day=options.max_calls_per_caller_id_per_day,
        content=content,
        serve_answers_at=serve_at if content.serves_answer else None,
        webhook_url=webhook_url(options.webhook_url),
    )


def voice_content(options: CampaignOptions) -> VoiceContent:
    """What the call says and which keys it listens for, checked: --message, --voice,
    --language, --play, --play-after, --answer-xml, --gather, --gather-prompt,
    --gather-timeout-s, --gather-retries, --after, --on-machine, --voicemail-message."""
    if options.answer_xml is not None:
        given = [
            flag
            for flag, value in (
                ("--message", options.message),
                ("--play", options.play_url),
                ("--play-after", options.play_after_url),
                ("--gather-prompt", options.gather_prompt),
            )
            if value is not None
        ]
        if given:
            raise SpecError(
                "--answer-xml", f"the template is the whole answer: leave out {', '.join(given)}"
            )
        problem = check_answer_template(options.answer_xml)
        if problem is not None:
            raise SpecError("--answer-xml", f"{options.answer_xml_name or 'the file'}: {problem}")
    for flag, text in (
        ("--message", options.message),
        ("--gather-prompt", options.gather_prompt),
        ("--voicemail-message", options.voicemail_message),
    ):
        if text is not None and not text.strip():
            raise SpecError(flag, "is empty; say something, or leave the option out")
    gather: dict[str, str] = {}
    if options.gather is not None:
        try:
            gather = parse_gather(options.gather)
        except ValueError as error:
            raise SpecError("--gather", str(error)) from None
    try:
        after = parse_after(list(options.after))
    except ValueError as error:
        raise SpecError("--after", str(error)) from None
    if not gather:
        needing = [
            flag
            for flag, value in (
                ("--gather-prompt", options.gather_prompt),
                ("--gather-timeout-s", options.gather_timeout_s),
                ("--gather-retries", options.gather_retries),
                ("--after", options.after or None),
            )
            if value is not None
        ]
        if needing:
            raise SpecError(needing[0], "say which keys mean what with --gather 1=confirmed,…")
    unknown = sorted(set(after) - set(gather))
    if unknown:
        raise SpecError("--after", f"key {unknown[0]} is not one of --gather's")
    content = VoiceContent(
        message=options.message,
        voice=options.voice,
        language=options.language,
        play_url=options.play_url,
        play_after_url=options.play_after_url,
        answer_template=options.answer_xml,
        gather=gather,
        gather_prompt=options.gather_prompt,
        gather_timeout_s=options.gather_timeout_s,
        gather_retries=options.gather_retries,
        after_keypress=after,
        on_machine=options.on_machine,
        voicemail_message=options.voicemail_message,
    )
    if not content.serves_answer:
        served_only = [
            flag
            for flag, value in (
                ("--voice", options.voice),
                ("--language", options.language),
                ("--gather", options.gather),
                ("--on-machine", options.on_machine),
                ("--voicemail-message", options.voicemail_message),
            )
            if value is not None
        ]
        if served_only:
            raise SpecError(
                served_only[0],
                "applies to what the engine says: give --message, --play or --answer-xml",
            )
    if (
        content.answer_template is not None
        and gather
        and DIGITS_URL_PLACEHOLDER
        not in {name for name, _ in Template(content.answer_template).placeholders()}
    ):
        raise SpecError(
            "--gather",
            'with --answer-xml, the template\'s <GetDigits action="{digits_url}"> sends the keys '
            "back to the engine; add it",
        )
    return content


def answer_service_url(content: VoiceContent, public_url: str | None) -> str:
    """Where Plivo fetches the answer the engine serves (CAMPAIGN_PUBLIC_URL)."""
    if not content.serves_answer:
        return public_url or ""
    if public_url is None:
        raise SpecError(
            "--message/--play/--answer-xml",
            "the engine serves the call's XML at CAMPAIGN_PUBLIC_URL; set it to the URL Plivo "
            "reaches this engine at (where `campaign serve` or a worker with CAMPAIGN_HTTP_PORT "
            "listens)",
        )
    return public_url


def check_machine_options(
    content: VoiceContent, parameters: Mapping[str, object], redial_on: str | None
) -> None:
    """--on-machine, --voicemail-message and --redial-on machine need --machine-detection."""
    detecting = parameters.get("machine_detection") is not None
    wants_machine = "machine" in {part.strip().lower() for part in (redial_on or "").split(",")}
    for flag, given in (
        ("--on-machine", content.on_machine is not None),
        ("--voicemail-message", content.voicemail_message is not None),
        ("--redial-on", wants_machine),
    ):
        if given and not detecting:
            raise SpecError(
                flag, "Plivo says a machine answered only with --machine-detection true"
            )
    if content.voicemail_message is not None and content.on_machine != "voicemail":
        raise SpecError("--voicemail-message", "is left only with --on-machine voicemail")


def caller_id_numbers(given: str | None, from_file: Sequence[str] | None) -> tuple[str, ...]:
    """The campaign's caller IDs in E.164, in order, each once: --from's comma-separated
    numbers, then --from-file's."""
    if given is None and from_file is None:
        raise SpecError(
            "--from", "a new campaign needs the caller ID number, e.g. --from +14155550100"
        )
    numbers: list[str] = []
    if given is not None:
        parts = [part.strip() for part in given.split(",")]
        if not all(parts):
            raise SpecError("--from", f"{given!r} has an empty number between its commas")
        numbers += [caller_id(part) for part in parts]
    for index, text in enumerate(from_file or ()):
        try:
            numbers.append(caller_id(text))
        except SpecError as error:
            raise SpecError("--from-file", f"number {index + 1}: {error.message}") from None
    if not numbers:
        raise SpecError("--from-file", "the file has no numbers")
    if len(numbers) > MAX_POOL_SIZE:
        raise SpecError("--from-file", f"at most {MAX_POOL_SIZE} caller IDs")
    return tuple(dict.fromkeys(numbers))


def caller_id_mode(text: str | None, pool_size: int) -> CallerIdMode | None:
    """--caller-id rotate|local; rotate by default with several numbers; None with one and
    none asked for."""
    if text is None:
        return CallerIdMode.ROTATE if pool_size > 1 else None
    try:
        return CallerIdMode(text.strip().lower())
    except ValueError:
        raise SpecError("--caller-id", f"{text!r} is not rotate or local") from None


def schedule(options: CampaignOptions) -> Schedule:
    """When the campaign's calls may be placed, from --calling-hours (default 08:00-21:00),
    --calling-days, --skip-dates, --start-at and --end-at."""
    start_at = instant("--start-at", options.start_at)
    end_at = instant("--end-at", options.end_at)
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise SpecError("--end-at", f"must be after --start-at ({start_at.isoformat()})")
    if end_at is not None and end_at <= datetime.now(UTC):
        raise SpecError(
            "--end-at",
            f"{end_at.isoformat()} has passed: every contact would expire at once; give a time "
            "to come",
        )
    return Schedule(
        calling_hours=calling_hours(
            DEFAULT_CALLING_HOURS if options.calling_hours is None else options.calling_hours
        ),
        calling_days=calling_days(options.calling_days),
        skip_dates=skip_dates(options.skip_dates),
        start_at=start_at,
        end_at=end_at,
    )


def calling_hours(text: str) -> tuple[TimeRange, ...] | None:
    """`09:00-12:00,14:00-20:00` → the ranges of the day, in order; `any` → None (any time).

    Each range is HH:MM-HH:MM with its start before its end (24:00 is midnight at the end of
    the day); ranges that touch or overlap are merged.
    """
    value = text.strip().lower()
    if value in ("any", "always", "24h"):
        return None
    ranges: list[tuple[int, int]] = []
    for part in value.split(","):
        bounds = part.strip().split("-")
        if len(bounds) != 2:
            raise SpecError(
                "--calling-hours",
                f"{part.strip()!r} is not a range of hours such as 09:00-20:00 (or `any`)",
            )
        start, end = (_minute_of_day(bound) for bound in bounds)
        if start >= end:
            raise SpecError(
                "--calling-hours",
                f"{part.strip()!r} ends before it starts; a range over midnight is two ranges, "
                "e.g. 20:00-24:00,00:00-02:00",
            )
        ranges.append((start, end))
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if merged == [[0, 24 * 60]]:
        return None
    return tuple(
        (time(start // 60, start % 60), None if end == 24 * 60 else time(end // 60, end % 60))
        for start, end in merged
    )


def _minute_of_day(text: str) -> int:
    match = _CLOCK_TIME.fullmatch(text.strip())
    if match is None:
        raise SpecError(
            "--calling-hours", f"{text.strip()!r} is not a time of day such as 08:00 or 21:30"
        )
    minute = int(match.group(1)) * 60 + int(match.group(2))
    if minute > 24 * 60:
        raise SpecError("--calling-hours", f"{text.strip()!r} is past 24:00")
    return minute


def calling_days(text: str | None) -> tuple[str, ...] | None:
    """`mon-fri`, `mon,tue,sat` or `sat-sun,wed` → those days in week order; None: every day.

    A range may wrap over the week's end (`fri-mon`)."""
    if text is None or text.strip().lower() in ("any", "all", "every", "daily"):
        return None
    chosen: set[str] = set()
    for part in text.split(","):
        bounds = [_weekday(bound) for bound in part.split("-")]
        if len(bounds) == 1:
            chosen.add(WEEKDAYS[bounds[0]])
        elif len(bounds) == 2:
            first, last = bounds
            span = (last - first) % 7
            chosen.update(WEEKDAYS[(first + step) % 7] for step in range(span + 1))
        else:
            raise SpecError(
                "--calling-days", f"{part.strip()!r} is not a day or a range such as mon-fri"
            )
    if len(chosen) == 7:
        return None
    return tuple(day for day in WEEKDAYS if day in chosen)


def _weekday(text: str) -> int:
    key = text.strip().lower()[:3]
    if key not in WEEKDAYS or not text.strip():
        raise SpecError(
            "--calling-days",
            f"{text.strip()!r} is not a day of the week; use mon, tue, wed, thu, fri, sat, sun",
        )
    return WEEKDAYS.index(key)


def skip_dates(text: str | None) -> tuple[date, ...]:
    """`2026-12-24,2026-12-25` → the dates (in each callee's local calendar), sorted."""
    if text is None or not text.strip():
        return ()
    dates = set()
    for part in text.split(","):
        try:
            dates.add(date.fromisoformat(part.strip()))
        except ValueError:
            raise SpecError(
                "--skip-dates", f"{part.strip()!r} is not a date such as 2026-12-25"
            ) from None
    return tuple(sorted(dates))


def instant(option: str, text: str | None) -> datetime | None:
    """An ISO 8601 instant with its offset (`2026-12-03T09:00-05:00`, or `…Z`)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SpecError(
            option, f"{text.strip()!r} is not an ISO 8601 time such as 2026-12-03T09:00-05:00"
        ) from None
    if not INSTANT_YEARS[0] <= value.year <= INSTANT_YEARS[1]:
        raise SpecError(option, f"{text.strip()!r} is not a time between the years 2000 and 9998")
    if value.tzinfo is None or value.utcoffset() is None:
        raise SpecError(
            option,
            f"{text.strip()!r} has no UTC offset, so it could be any of 24 instants; add one, "
            "e.g. 2026-12-03T09:00-05:00 or 2026-12-03T14:00Z",
        )
    return value


def time_zone_name(option: str, text: str | None) -> str | None:
    """An IANA time zone name's form (`America/New_York`); the load checks the database knows
    it (the database, not Python, reads the zones when it claims)."""
    if text is None:
        return None
    value = text.strip()
    if not _ZONE_NAME.fullmatch(value) or len(value) > 64:
        raise SpecError(option, f"{value!r} is not an IANA time zone name such as America/New_York")
    return value


def suppression_lists(names: Sequence[str]) -> tuple[str, ...]:
    """The lists the campaign honours: `default`, then the ones given, each once."""
    lists = ["default"]
    for name in names:
        lists.append(list_name("--suppression-list", name))
    return tuple(dict.fromkeys(lists))


def list_name(option: str, name: str) -> str:
    """A suppression list's name: 1 to 100 characters, not only spaces; kept as given."""
    if not name.strip() or len(name) > LIST_NAME_MAX_CHARS or NUL_CHAR in name:
        raise SpecError(option, f"a list's name must be 1 to {LIST_NAME_MAX_CHARS} characters")
    return name


@dataclass(frozen=True, slots=True)
class PacingChange:
    """What `campaign set` changes: the campaign's own calls per second (when `cps_given`;
    None lifts its cap, leaving the account's) and its batch size (None: unchanged)."""

    cps_given: bool = False
    calls_per_second: float | None = None
    batch_size: int | None = None
    priority: int | None = None
    # The cap of calls live at once when `concurrency_given` (None lifts it).
    concurrency_given: bool = False
    max_concurrent_calls: int | None = None

    def describe(self) -> str:
        """`calls per second 5, batch size 50`: what is set, as `campaign set` prints it."""
        parts = []
        if self.cps_given:
            cps = self.calls_per_second
            parts.append(
                "calls per second: the account's only"
                if cps is None
                else f"calls per second {cps:g}"
            )
        if self.batch_size is not None:
            parts.append(f"batch size {self.batch_size}")
        if self.priority is not None:
            parts.append(f"priority {self.priority}")
        if self.concurrency_given:
            cap = self.max_concurrent_calls
            parts.append(
                "concurrent calls: the account's cap only"
                if cap is None
                else f"at most {cap} concurrent calls"
            )
        return ", ".join(parts)


def pacing_change(
    calls_per_second: str | None,
    batch_size: int | None,
    priority: int | None = None,
    max_concurrent_calls: str | None = None,
) -> PacingChange:
    """`campaign set`'s options checked: --calls-per-second RATE (or `none`, the account's
    limit only), --batch-size N, --priority N, --max-concurrent-calls N (or `none`); at least
    one."""
    if (
        calls_per_second is None
        and batch_size is None
        and priority is None
        and max_concurrent_calls is None
    ):
        raise SpecError(
            None,
            "say what to change: --calls-per-second RATE|none, --batch-size N, --priority N "
            "or --max-concurrent-calls N|none",
        )
    _check_range("--batch-size", batch_size, BATCH_SIZE_RANGE)
    _check_range("--priority", priority, PRIORITY_RANGE)
    change = PacingChange(batch_size=batch_size, priority=priority)
    if max_concurrent_calls is not None:
        cap = _number_or_none("--max-concurrent-calls", max_concurrent_calls, "a count such as 20")
        if cap is not None and (cap != int(cap)):
            raise SpecError("--max-concurrent-calls", "must be a whole number of calls")
        _check_range("--max-concurrent-calls", cap, MAX_CONCURRENT_CALLS_RANGE)
        change = replace(
            change,
            concurrency_given=True,
            max_concurrent_calls=None if cap is None else int(cap),
        )
    if calls_per_second is not None:
        rate = _number_or_none("--calls-per-second", calls_per_second, "a rate such as 5 or 0.5")
        _check_range("--calls-per-second", rate, CALLS_PER_SECOND_RANGE)
        change = replace(change, cps_given=True, calls_per_second=rate)
    return change


def _number_or_none(option: str, text: str, example: str) -> float | None:
    """A number, or None for `none`."""
    value = text.strip().lower()
    if value in ("none", "account"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise SpecError(option, f"{text!r} is not {example}, or none") from None
    if number != number:  # NaN
        raise SpecError(option, "must be a number")
    return number


def campaign_name(name: str) -> str:
    """A campaign's name: 1 to 200 characters, not only spaces; kept as given."""
    if not name.strip() or len(name) > NAME_MAX_CHARS:
        raise SpecError("--name", f"must be 1 to {NAME_MAX_CHARS} characters")
    return name


def caller_id(from_number: str) -> str:
    """The caller ID in E.164 (`+14155550100`); a SIP URI cannot be one."""
    try:
        number = normalise_destination(from_number, None)
    except AmbiguousNumber as error:
        raise SpecError("--from", f"{error.meaning}; write it as +<country code><number>") from None
    except InvalidDestination as error:
        raise SpecError(
            "--from", f"{from_number!r}: {error}; write it as +<country code><number>"
        ) from None
    if number.startswith("sip:"):
        raise SpecError("--from", "must be a phone number, not a SIP URI")
    return number


def call_parameters(answer_url: str, given: Mapping[str, str | None]) -> dict[str, object]:
    """The answer URL and the given Make-a-call parameters, normalised by Plivo's rules."""
    values = {name: value for name, value in given.items() if value is not None}
    try:
        return validate_call_parameters({"answer_url": answer_url, **values})
    except CallParameterError as error:
        raise SpecError(option_for(error.parameter), error.message) from None


def redial_statuses(text: str | None) -> tuple[RedialableCallStatus, ...]:
    """`busy,no-answer` → the call statuses to dial again, each once, in the order given."""
    if not text:
        return ()
    known = {status.value: status for status in RedialableCallStatus}
    statuses = []
    for part in dict.fromkeys(part.strip() for part in text.split(",")):
        if part not in known:
            raise SpecError(
                "--redial-on",
                f"{part!r} is not a call status that can be redialled; use some of "
                f"{','.join(known)}",
            )
        statuses.append(known[part])
    return tuple(statuses)


def redial_delays(text: str | None) -> tuple[int, ...]:
    """`10m,1h` → the delays in seconds before attempt 2, 3, … (the last one repeats)."""
    if not text:
        return ()
    try:
        return parse_durations(text)
    except ValueError as error:
        raise SpecError("--redial-delays", str(error)) from None


def parse_durations(text: str, max_s: int = REDIAL_DELAY_MAX_S) -> tuple[int, ...]:
    """`10m,1h,4h` → (600, 3600, 14400); a bare number is seconds, each at most `max_s`.
    ValueError names the bad one."""
    durations = []
    for item in text.split(","):
        value = item.strip().lower()
        unit = value[-1:] if value[-1:] in DURATION_UNITS_S else "s"
        number = value[:-1] if value[-1:] in DURATION_UNITS_S else value
        if not _WHOLE_NUMBER.fullmatch(number):
            raise ValueError(f"{item.strip()!r} is not a duration such as 90s, 10m, 1h or 2d")
        # Compared before int(): a thousand-digit number is refused, not converted.
        digits = number.lstrip("0") or "0"
        if len(digits) > len(str(max_s)) or int(digits) * DURATION_UNITS_S[unit] > max_s:
            raise ValueError(
                f"{item.strip()!r} is longer than {max_s // 86400} days, the longest delay"
            )
        durations.append(int(digits) * DURATION_UNITS_S[unit])
    return tuple(durations)


def tracking_url(
    track_calls: bool, public_url: str | None, parameters: Mapping[str, object]
) -> str | None:
    """Where the calls' callbacks go with --track-calls (CAMPAIGN_PUBLIC_URL); None without."""
    if not track_calls:
        return None
    if public_url is None:
        raise SpecError(
            "--track-calls",
            "set CAMPAIGN_PUBLIC_URL to the URL Plivo reaches this engine at "
            "(where `campaign serve` or a worker with CAMPAIGN_HTTP_PORT listens)",
        )
    own = [name for name in TRACKED_CALLBACK_PARAMETERS if parameters.get(name) is not None]
    if own:
        raise SpecError(
            option_for(own[0]),
            "--track-calls sets it to this engine's endpoint; give one or the other",
        )
    return public_url


def default_region(value: str | None) -> str | None:
    """The region of numbers written without a country code (`us` → `US`), if one is given."""
    if value is None:
        return None
    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise SpecError(
            "--default-region",
            f"{value!r} is not a region code; use two letters such as US, GB, IN",
        )
    return region


def _check_range(option: str, value: float | None, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if value is not None and not low <= value <= high:
        raise SpecError(option, f"must be between {low:g} and {high:g}, got {value:g}")
