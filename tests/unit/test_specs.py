"""The rules of a campaign's settings (campaign.specs), checked without a database or a process."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from campaign.models import CampaignStatus, RedialableCallStatus, Schedule
from campaign.specs import (
    CampaignOptions,
    PacingChange,
    SpecError,
    calling_days,
    calling_hours,
    default_region,
    load_target,
    new_campaign,
    pacing_change,
    parse_durations,
    redial_delays,
    redial_statuses,
)

PUBLIC_URL = "https://dialer.example.com"
NEW = CampaignOptions(
    name="reminders", from_number="+14155550100", answer_url="https://example.com/answer.xml"
)
EXISTING = CampaignOptions(existing="reminders")
CANNOT_CHANGE = "a load into an existing campaign cannot change its settings"


def refused(options: CampaignOptions, public_url: str | None = None) -> SpecError:
    """The SpecError that `load_target` raises for `options` (the test fails if it returns)."""
    with pytest.raises(SpecError) as caught:
        load_target(options, public_url)
    return caught.value


# --- the error --------------------------------------------------------------------------------


def test_error_line_starts_with_the_option() -> None:
    """A SpecError reads `OPTION: message`, keeping both parts for a caller that wants them."""
    error = SpecError("--from", "must be a phone number")
    assert str(error) == "--from: must be a phone number"
    assert (error.option, error.message) == ("--from", "must be a phone number")


def test_error_without_an_option_is_the_message_alone() -> None:
    """A rule about a combination of options has no single option: the line is the message."""
    assert str(SpecError(None, "give --name or --campaign")) == "give --name or --campaign"


# --- new or existing --------------------------------------------------------------------------


def test_existing_campaign_is_its_name() -> None:
    """--campaign NAME alone is a load into that campaign: the target is the name, unchecked."""
    assert load_target(EXISTING, None) == "reminders"


def test_name_and_campaign_together_are_refused() -> None:
    """--name and --campaign together are one line asking for one of them."""
    error = refused(replace(EXISTING, name="other"))
    assert error.option is None
    assert str(error) == (
        "give either --name (a new campaign) or --campaign (an existing one), not both"
    )


def test_neither_name_nor_campaign_is_refused() -> None:
    """Without --name or --campaign there is nothing to load into: the line says how to name one."""
    error = refused(replace(NEW, name=None))
    assert str(error) == ("give --name NAME to create a campaign, or --campaign NAME to add to one")


def test_existing_campaign_settings_cannot_change() -> None:
    """Call parameters, --from, --answer-url and --calls-per-second with --campaign are refused,
    all named in one line: call parameters in the order given, then the campaign's own options."""
    options = replace(
        EXISTING,
        call_parameters={"ring_url": "x", "caller_name": None, "time_limit": "30"},
        from_number="+1415",
        answer_url="https://example.com/a",
        calls_per_second=2.0,
    )
    assert str(refused(options)) == (
        f"--ring-url, --time-limit, --from, --answer-url, --calls-per-second: {CANNOT_CHANGE}"
    )


def test_existing_campaign_refuses_an_empty_parameter() -> None:
    """A call parameter given as an empty text is still given: it counts as a change."""
    assert str(refused(replace(EXISTING, call_parameters={"caller_name": ""}))) == (
        f"--caller-name: {CANNOT_CHANGE}"
    )


@pytest.mark.parametrize(
    "change",
    [{"track_calls": True}, {"redial_on": "busy"}, {"redial_delays": "1m"}],
)
def test_existing_campaign_tracking_cannot_change(change: dict[str, Any]) -> None:
    """--track-calls, --redial-on or --redial-delays with --campaign: refused in one line."""
    error = refused(replace(EXISTING, **change))
    assert error.option == "--track-calls/--redial-on/--redial-delays"
    assert error.message == CANNOT_CHANGE


def test_existing_campaign_settings_are_named_before_tracking() -> None:
    """With both kinds of change, the call settings are named first (as the command always did)."""
    error = refused(replace(EXISTING, from_number="+14155550100", track_calls=True))
    assert error.option == "--from"


# --- a new campaign ---------------------------------------------------------------------------


def test_new_campaign_spec_from_every_option() -> None:
    """Every option ends up in the spec, normalised: E.164 caller ID, Plivo's parameter forms,
    redial statuses as RedialableCallStatus, delays in seconds, callbacks at the public URL."""
    options = replace(
        NEW,
        from_number="+1 (415) 555-0100",
        call_parameters={"ring_method": "get", "time_limit": "30", "caller_name": None},
        calls_per_second=2.5,
        batch_size=50,
        max_attempts=4,
        track_calls=True,
        redial_on="busy, no-answer",
        redial_delays="10m,1h",
    )
    spec = load_target(options, PUBLIC_URL)
    assert not isinstance(spec, str)
    assert spec.name == "reminders"
    assert spec.from_number == "+14155550100"
    assert spec.answer_url == "https://example.com/answer.xml"
    assert spec.call_parameters == {"ring_method": "GET", "time_limit": 30}
    assert (spec.calls_per_second, spec.batch_size, spec.max_attempts) == (2.5, 50, 4)
    assert spec.status == CampaignStatus.RUNNING
    assert spec.redial_on == (RedialableCallStatus.BUSY, RedialableCallStatus.NO_ANSWER)
    assert spec.redial_delays_s == (600, 3600)
    assert spec.track_calls_at == PUBLIC_URL


def test_paused_campaign_starts_paused() -> None:
    """--paused creates the campaign paused; without it, running."""
    assert new_campaign(replace(NEW, paused=True), None).status == CampaignStatus.PAUSED
    assert new_campaign(NEW, None).status == CampaignStatus.RUNNING


def test_name_is_kept_as_given() -> None:
    """A name with spaces around it is stored as given, up to exactly 200 characters."""
    assert new_campaign(replace(NEW, name=" spring "), None).name == " spring "
    assert new_campaign(replace(NEW, name="x" * 200), None).name == "x" * 200


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_name_must_be_1_to_200_characters(name: str) -> None:
    """An empty, blank or over-long name is refused, naming --name and the bounds."""
    assert str(refused(replace(NEW, name=name))) == "--name: must be 1 to 200 characters"


def test_new_campaign_needs_a_caller_id() -> None:
    """Without --from, the line says a new campaign needs one, with an example."""
    error = refused(replace(NEW, from_number=None, answer_url=None))
    assert str(error) == (
        "--from: a new campaign needs the caller ID number, e.g. --from +14155550100"
    )


def test_new_campaign_needs_an_answer_url() -> None:
    """Without --answer-url, the line says a new campaign needs the URL of its XML."""
    error = refused(replace(NEW, answer_url=None))
    assert str(error) == (
        "--answer-url: a new campaign needs the URL of its Plivo XML, or what the engine should "
        "say: --message TEXT, --play URL or --answer-xml FILE"
    )


def test_caller_id_must_be_a_phone_number() -> None:
    """A --from that is no number is refused, quoting it and the form to write it in."""
    assert str(refused(replace(NEW, from_number="nope"))) == (
        "--from: 'nope': not a phone number; write it as +<country code><number>"
    )


def test_caller_id_in_bare_digits_that_could_be_two_numbers_is_refused() -> None:
    """A --from of bare digits is Plivo's format only when nothing else fits: 13012345678 is
    also a Chinese mobile, so it must be written with its +."""
    assert str(refused(replace(NEW, from_number="13012345678"))) == (
        "--from: '13012345678' could be +13012345678 (US) as country code and number, or a "
        "number written nationally: +8613012345678 (CN); write it as +<country code><number>"
    )
    assert new_campaign(replace(NEW, from_number="14155550100"), None).from_number == (
        "+14155550100"
    )


def test_caller_id_cannot_be_a_sip_uri() -> None:
    """A SIP URI is a destination, not a caller ID."""
    assert str(refused(replace(NEW, from_number="sip:alice@example.com"))) == (
        "--from: must be a phone number, not a SIP URI"
    )


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            {"answer_url": "ftp://x"},
            "--answer-url: must be an http:// or https:// URL with a host, "
            "e.g. https://example.com/answer",
        ),
        ({"call_parameters": {"ring_method": "PUT"}}, "--ring-method: must be GET or POST"),
        (
            {"call_parameters": {"caller_name": "x" * 51}},
            "--caller-name: must be at most 50 characters, got 51",
        ),
        (
            {"call_parameters": {"machine_detection_time": "50"}},
            "--machine-detection-time: must be between 2000 and 10000 milliseconds, got 50",
        ),
    ],
)
def test_call_parameters_follow_plivo_rules(change: dict[str, Any], line: str) -> None:
    """A Make-a-call parameter that breaks Plivo's table is one SpecError naming its option."""
    assert str(refused(replace(NEW, **change))) == line


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"batch_size": 0}, "--batch-size: must be between 1 and 1000, got 0"),
        ({"batch_size": 1001}, "--batch-size: must be between 1 and 1000, got 1001"),
        ({"max_attempts": 0}, "--max-attempts: must be between 1 and 100, got 0"),
        ({"max_attempts": 101}, "--max-attempts: must be between 1 and 100, got 101"),
        ({"calls_per_second": 0.0}, "--calls-per-second: must be between 0.01 and 1000, got 0"),
    ],
)
def test_dialing_settings_are_bounded(change: dict[str, Any], line: str) -> None:
    """Batch size, attempts and calls per second stay within the campaigns table's CHECKs."""
    assert str(refused(replace(NEW, **change))) == line


def test_dialing_settings_bounds_are_inclusive() -> None:
    """The bounds themselves are allowed."""
    for batch_size, max_attempts, calls_per_second in ((1, 1, 0.01), (1000, 100, 1000.0)):
        options = replace(
            NEW,
            batch_size=batch_size,
            max_attempts=max_attempts,
            calls_per_second=calls_per_second,
        )
        spec = new_campaign(options, None)
        assert (spec.batch_size, spec.max_attempts, spec.calls_per_second) == (
            batch_size,
            max_attempts,
            calls_per_second,
        )


# --- redials and call tracking ----------------------------------------------------------------


def test_redial_statuses_are_deduplicated_in_order() -> None:
    """`busy, timeout,busy` → busy then timeout, each once, spaces ignored."""
    assert redial_statuses(" busy, timeout,busy") == (
        RedialableCallStatus.BUSY,
        RedialableCallStatus.TIMEOUT,
    )


@pytest.mark.parametrize("text", [None, ""])
def test_no_redial_statuses(text: str | None) -> None:
    """No --redial-on (or an empty one) means no redials."""
    assert redial_statuses(text) == ()


@pytest.mark.parametrize(("text", "bad"), [("completed", "'completed'"), ("busy,", "''")])
def test_only_final_failures_can_be_redialled(text: str, bad: str) -> None:
    """A status outside busy, no-answer, timeout, failed, machine (or an empty item) is refused,
    quoting it and listing the statuses that can be redialled, in the CHECK constraint's order."""
    with pytest.raises(SpecError) as caught:
        redial_statuses(text)
    assert str(caught.value) == (
        f"--redial-on: {bad} is not a call status that can be redialled; use some of "
        "busy,no-answer,timeout,failed,machine"
    )


def test_redial_needs_call_tracking() -> None:
    """Redials depend on the calls' outcomes: --redial-on without --track-calls is refused."""
    assert str(refused(replace(NEW, redial_on="busy"), PUBLIC_URL)) == (
        "--redial-on: redials need the calls' outcomes; add --track-calls"
    )


def test_redial_delays_need_redial_statuses() -> None:
    """--redial-delays without --redial-on has nothing to delay: refused."""
    options = replace(NEW, track_calls=True, redial_delays="10m")
    assert str(refused(options, PUBLIC_URL)) == (
        "--redial-delays: say which calls to redial with --redial-on"
    )


def test_bad_redial_delay_names_the_option() -> None:
    """A delay that is not a duration is one line naming --redial-delays and the bad item."""
    assert redial_delays(None) == ()
    with pytest.raises(SpecError) as caught:
        redial_delays("10m, 10 minutes")
    assert str(caught.value) == (
        "--redial-delays: '10 minutes' is not a duration such as 90s, 10m, 1h or 2d"
    )


def test_redial_statuses_are_checked_before_delays() -> None:
    """With a bad status and a bad delay, the status is the one reported."""
    options = replace(NEW, track_calls=True, redial_on="completed", redial_delays="soon")
    assert refused(options, PUBLIC_URL).option == "--redial-on"


def test_durations_in_every_unit() -> None:
    """s, m, h and d (any case, spaces allowed) convert to seconds; a bare number is seconds."""
    assert parse_durations("90s, 10M,1h ,2d,45") == (90, 600, 3600, 172800, 45)


def test_a_redial_delay_is_at_most_a_year() -> None:
    """365 days is the longest delay; 30000d (which overflowed the integer column inside
    PostgreSQL) and a thousand-digit number are one line naming the option and the item."""
    assert parse_durations("365d,31536000") == (31_536_000, 31_536_000)
    for text in ("30000d", "366d", "31536001", "9" * 1000 + "s"):
        with pytest.raises(SpecError) as caught:
            redial_delays(f"10m,{text}")
        assert str(caught.value) == (
            f"--redial-delays: {text!r} is longer than 365 days, the longest delay"
        )


@pytest.mark.parametrize("text", ["10x", "1.5h", "-5m", "m", "1h,,2h", "\u00b2m", "\u0663h"])
def test_not_a_duration(text: str) -> None:
    """Fractions, negatives, unknown units and empty items are not durations."""
    with pytest.raises(ValueError, match="is not a duration such as 90s, 10m, 1h or 2d"):
        parse_durations(text)


def test_tracking_needs_the_public_url() -> None:
    """--track-calls without CAMPAIGN_PUBLIC_URL is refused: Plivo would not know where to call."""
    assert str(refused(replace(NEW, track_calls=True), None)) == (
        "--track-calls: set CAMPAIGN_PUBLIC_URL to the URL Plivo reaches this engine at "
        "(where `campaign serve` or a worker with CAMPAIGN_HTTP_PORT listens)"
    )


@pytest.mark.parametrize("parameter", ["ring_url", "hangup_url", "machine_detection_url"])
def test_tracking_replaces_the_campaign_own_callbacks(parameter: str) -> None:
    """--track-calls sets ring, hangup and machine-detection URLs: giving one too is refused."""
    options = replace(
        NEW, track_calls=True, call_parameters={parameter: "https://mine.example.com/x"}
    )
    option = "--" + parameter.replace("_", "-")
    assert str(refused(options, PUBLIC_URL)) == (
        f"{option}: --track-calls sets it to this engine's endpoint; give one or the other"
    )


def test_no_tracking_without_the_flag() -> None:
    """Without --track-calls the calls' callbacks stay the campaign's own, public URL or not."""
    options = replace(NEW, call_parameters={"hangup_url": "https://mine.example.com/h"})
    spec = new_campaign(options, PUBLIC_URL)
    assert spec.track_calls_at is None
    assert spec.call_parameters == {"hangup_url": "https://mine.example.com/h"}


# --- the default region -----------------------------------------------------------------------


def test_default_region_is_upper_cased() -> None:
    """`us` is the region US; no --default-region is None."""
    assert default_region("us") == "US"
    assert default_region(None) is None


def test_unknown_default_region_is_refused() -> None:
    """A code that is not a region is refused, quoting it as given with examples."""
    with pytest.raises(SpecError) as caught:
        default_region("xx")
    assert str(caught.value) == (
        "--default-region: 'xx' is not a region code; use two letters such as US, GB, IN"
    )


# --- calling hours, schedules, suppression lists, caps -----------------------------------------


def test_a_new_campaign_calls_from_8_to_21_in_each_callees_time_by_default() -> None:
    """Without --calling-hours, 08:00-21:00 local (the TCPA's hours); `any` lifts it; the list
    `default` is always honoured."""
    spec = new_campaign(NEW, PUBLIC_URL)
    assert spec.schedule.calling_hours == ((time(8), time(21)),)
    assert spec.schedule.has_local_rules
    assert spec.suppression_lists == ("default",)
    anyhour = new_campaign(replace(NEW, calling_hours="any"), PUBLIC_URL)
    assert anyhour.schedule.calling_hours is None
    assert not anyhour.schedule.has_local_rules


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("09:00-20:00", ((time(9), time(20)),)),
        ("09:00-12:00,14:00-20:00", ((time(9), time(12)), (time(14), time(20)))),
        ("14:00-20:00, 9:00-12:30", ((time(9), time(12, 30)), (time(14), time(20)))),
        ("09:00-12:00,11:00-13:00", ((time(9), time(13)),)),
        ("20:00-24:00,00:00-02:00", ((time(0), time(2)), (time(20), None))),
        ("00:00-24:00", None),
        ("ANY", None),
    ],
)
def test_calling_hours_are_ranges_of_the_day(text: str, hours: Any) -> None:
    """Ranges are sorted and merged; 24:00 ends the day; the whole day is `any`."""
    assert calling_hours(text) == hours


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-17", "'9' is not a time of day such as 08:00"),
        ("21:00-08:00", "a range over midnight is two ranges"),
        ("08:00-25:00", "'25:00' is not a time of day"),
        ("08:00-24:30", "'24:30' is past 24:00"),
        ("08:00", "'08:00' is not a range of hours"),
        ("08:00-12:00,", "'' is not a range of hours"),
    ],
)
def test_bad_calling_hours_name_the_option_and_the_fix(text: str, message: str) -> None:
    """A malformed range is refused with --calling-hours and what is wrong."""
    error = refused(replace(NEW, calling_hours=text))
    assert error.option == "--calling-hours"
    assert message in error.message


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-fri", ("mon", "tue", "wed", "thu", "fri")),
        ("mon,tue,sat", ("mon", "tue", "sat")),
        ("sat-sun,wed", ("wed", "sat", "sun")),
        ("fri-mon", ("mon", "fri", "sat", "sun")),
        ("Monday-Friday", ("mon", "tue", "wed", "thu", "fri")),
        ("mon-sun", None),
        (None, None),
    ],
)
def test_calling_days(text: str | None, days: tuple[str, ...] | None) -> None:
    """Days and ranges of days (wrapping over the week's end), in week order; all: None."""
    assert calling_days(text) == days


def test_schedule_options_are_checked() -> None:
    """Days, dates, instants (with an offset), the zone's form, list names and the cap are
    each refused with their option and the fix."""
    cases = [
        (replace(NEW, calling_days="mon-funday"), "--calling-days", "is not a day of the week"),
        (replace(NEW, skip_dates="2026-12-24,24/12"), "--skip-dates", "'24/12' is not a date"),
        (replace(NEW, start_at="2026-12-03T09:00"), "--start-at", "has no UTC offset"),
        (replace(NEW, end_at="tomorrow"), "--end-at", "is not an ISO 8601 time"),
        (replace(NEW, end_at="2020-01-01T00:00Z"), "--end-at", "has passed"),
        (replace(NEW, start_at="0001-01-01T00:00+01:00"), "--start-at", "between the years"),
        (replace(NEW, end_at="9999-12-31T23:59-05:00"), "--end-at", "between the years"),
        (
            replace(NEW, start_at="2026-12-03T09:00-05:00", end_at="2026-12-03T13:00Z"),
            "--end-at",
            "must be after --start-at",
        ),
        (replace(NEW, default_timezone="New York"), "--default-timezone", "IANA time zone"),
        (replace(NEW, suppression_lists=(" ",)), "--suppression-list", "1 to 100 characters"),
        (replace(NEW, max_calls_per_number_per_day=0), "--max-calls-per-number-per-day", "1"),
    ]
    for options, option, message in cases:
        error = refused(options)
        assert (error.option, message in error.message) == (option, True), error


def test_schedule_options_are_stored_on_the_spec() -> None:
    """Every option lands on the CampaignSpec, dates sorted, instants with their offsets."""
    spec = new_campaign(
        replace(
            NEW,
            calling_hours="09:00-20:00",
            calling_days="mon-fri",
            skip_dates="2026-12-25,2026-12-24",
            start_at="2026-12-03T09:00-05:00",
            end_at="2099-12-20T18:00Z",
            default_timezone="America/Chicago",
            suppression_lists=("clinic", "default", "clinic"),
            max_calls_per_number_per_day=2,
        ),
        PUBLIC_URL,
    )
    assert spec.schedule == Schedule(
        calling_hours=((time(9), time(20)),),
        calling_days=("mon", "tue", "wed", "thu", "fri"),
        skip_dates=(date(2026, 12, 24), date(2026, 12, 25)),
        start_at=datetime(2026, 12, 3, 14, 0, tzinfo=UTC),
        end_at=datetime(2099, 12, 20, 18, 0, tzinfo=UTC),
    )
    assert spec.default_time_zone == "America/Chicago"
    assert spec.suppression_lists == ("default", "clinic")
    assert spec.max_calls_per_number_per_day == 2
    assert spec.schedule.describe() == (
        "09:00-20:00 in each callee's local time, on mon,tue,wed,thu,fri, except "
        "2026-12-24,2026-12-25, from 2026-12-03T09:00:00-05:00, until 2099-12-20T18:00:00+00:00"
    )


def test_a_load_into_an_existing_campaign_keeps_its_schedule() -> None:
    """The schedule is the campaign's: a load into it cannot change it, and says so."""
    error = refused(
        replace(EXISTING, calling_hours="any", suppression_lists=("x",), default_timezone="UTC")
    )
    assert error.option == "--calling-hours, --default-timezone, --suppression-list"
    assert CANNOT_CHANGE in error.message


# --- campaign set ------------------------------------------------------------------------------


def test_pacing_changes_are_checked() -> None:
    """`campaign set`: a rate in range or `none` (the account's limit only), a batch size in
    range, and at least one of them; each refused with its option."""
    assert pacing_change("5", None) == PacingChange(cps_given=True, calls_per_second=5.0)
    assert pacing_change("none", 50) == PacingChange(
        cps_given=True, calls_per_second=None, batch_size=50
    )
    assert pacing_change(None, 10).describe() == "batch size 10"
    assert pacing_change("0.5", 10).describe() == "calls per second 0.5, batch size 10"
    assert pacing_change("none", None).describe() == "calls per second: the account's only"
    for cps, batch, option, message in (
        (None, None, None, "say what to change"),
        ("fast", None, "--calls-per-second", "'fast' is not a rate"),
        ("nan", None, "--calls-per-second", "must be a number"),
        ("0", None, "--calls-per-second", "must be between 0.01 and 1000"),
        (None, 1001, "--batch-size", "must be between 1 and 1000"),
    ):
        with pytest.raises(SpecError) as caught:
            pacing_change(cps, batch)
        assert (caught.value.option, message in caught.value.message) == (option, True)


# --- pacing: priority, concurrent calls, caller-ID pools --------------------------------------


def test_priority_and_concurrency_are_checked() -> None:
    """--priority defaults to 0 and is bounded; --max-concurrent-calls needs --track-calls (a
    call counts until its hangup callback), one line naming the option."""
    assert new_campaign(NEW, None).priority == 0
    assert new_campaign(replace(NEW, priority=-3), None).priority == -3
    assert "must be between -1000 and 1000" in str(refused(replace(NEW, priority=1001)))
    error = refused(replace(NEW, max_concurrent_calls=20))
    assert error.option == "--max-concurrent-calls"
    assert "needs --track-calls" in error.message
    tracked = new_campaign(replace(NEW, max_concurrent_calls=20, track_calls=True), PUBLIC_URL)
    assert tracked.max_concurrent_calls == 20


def test_several_caller_ids_make_a_rotating_pool() -> None:
    """--from A,B,C (and --from-file's numbers after them): each checked, kept once, in order;
    the first is the campaign's `from`; rotate unless --caller-id says local."""
    spec = new_campaign(
        replace(
            NEW,
            from_number="+14155550100, +12125550100",
            from_file_numbers=["+16465550100", "+14155550100"],
        ),
        None,
    )
    assert spec.from_number == "+14155550100"
    assert [member.number for member in spec.caller_ids] == [
        "+14155550100",
        "+12125550100",
        "+16465550100",
    ]
    assert spec.caller_id_mode == "rotate"
    assert spec.caller_ids[1].area_key == "area:+1212"
    assert spec.caller_ids[1].country_key == "country:+1"
    local = new_campaign(
        replace(NEW, from_number="+14155550100,+442071234567", caller_id_mode="LOCAL"), None
    )
    assert local.caller_id_mode == "local"
    assert local.caller_ids[1].area_key == "area:+4420"
    # One number alone is no pool, unless it has limits of its own.
    assert new_campaign(NEW, None).caller_ids == ()
    single = new_campaign(replace(NEW, max_calls_per_caller_id_per_day=50), None)
    assert [member.number for member in single.caller_ids] == ["+14155550100"]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"from_number": "+14155550100,,+12125550100"}, "--from: '+14155550100,,+12125550100'"),
        ({"from_number": "+14155550100,nope"}, "--from: 'nope': not a phone number"),
        ({"from_file_numbers": ["+14155550100", "12"]}, "--from-file: number 2:"),
        ({"from_number": None, "from_file_numbers": []}, "--from-file: the file has no numbers"),
        ({"caller_id_mode": "random"}, "--caller-id: 'random' is not rotate or local"),
        ({"calls_per_second_per_caller_id": 0.0}, "--calls-per-second-per-caller-id: must be"),
        ({"max_calls_per_caller_id_per_day": 0}, "--max-calls-per-caller-id-per-day: must be"),
    ],
)
def test_caller_id_pool_errors_name_the_option(change: dict[str, Any], line: str) -> None:
    """A bad number of the pool, an empty file, an unknown mode, a limit out of range: one line
    naming the option (and, for a file, the number's place in it)."""
    assert str(refused(replace(NEW, **change))).startswith(line)


def test_a_load_into_an_existing_campaign_cannot_change_its_pacing() -> None:
    """--priority, --max-concurrent-calls and the caller-ID options belong to a new campaign."""
    for change in (
        {"priority": 1},
        {"max_concurrent_calls": 5},
        {"caller_id_mode": "local"},
        {"from_file_numbers": ["+14155550100"]},
    ):
        assert CANNOT_CHANGE in str(refused(replace(EXISTING, **change)))


def test_set_changes_priority_and_the_cap_of_concurrent_calls() -> None:
    """`campaign set --priority N --max-concurrent-calls N|none`, each checked."""
    change = pacing_change(None, None, 7, "20")
    assert (change.priority, change.concurrency_given, change.max_concurrent_calls) == (7, True, 20)
    assert change.describe() == "priority 7, at most 20 concurrent calls"
    lifted = pacing_change(None, None, None, "none")
    assert (lifted.concurrency_given, lifted.max_concurrent_calls) == (True, None)
    assert lifted.describe() == "concurrent calls: the account's cap only"
    for cap, message in (("2.5", "whole number"), ("0", "must be between 1"), ("x", "'x' is not")):
        with pytest.raises(SpecError) as caught:
            pacing_change(None, None, None, cap)
        assert caught.value.option == "--max-concurrent-calls"
        assert message in caught.value.message


# --- what the call says -------------------------------------------------------------------------

SPOKEN = CampaignOptions(
    name="reminders", from_number="+14155550100", message="Hello {first_name}."
)


def test_a_message_makes_the_engine_serve_the_answer() -> None:
    """--message without --answer-url: the answer is served at CAMPAIGN_PUBLIC_URL; both
    together, or no CAMPAIGN_PUBLIC_URL, are refused with one line."""
    spec = new_campaign(SPOKEN, PUBLIC_URL)
    assert spec.content.message == "Hello {first_name}."
    assert spec.serve_answers_at == PUBLIC_URL
    assert spec.answer_url == f"{PUBLIC_URL}/plivo/answer"
    both = refused(replace(SPOKEN, answer_url="https://example.com/a.xml"), PUBLIC_URL)
    assert both.option == "--answer-url"
    assert "serves the call's XML itself" in both.message
    assert "CAMPAIGN_PUBLIC_URL" in str(refused(SPOKEN))
    nothing = refused(replace(NEW, answer_url=None), PUBLIC_URL)
    assert "--message TEXT, --play URL or --answer-xml FILE" in str(nothing)


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"gather": "1=ok,1=no"}, "--gather: key 1 is given twice"),
        ({"gather_prompt": "Press 1"}, "--gather-prompt: say which keys mean what"),
        ({"gather": "1=ok", "after": ("2=Bye",)}, "--after: key 2 is not one of --gather's"),
        ({"message": "  "}, "--message: is empty"),
        ({"on_machine": "voicemail"}, "--on-machine: Plivo says a machine answered only with"),
        (
            {"voicemail_message": "Hi", "call_parameters": {"machine_detection": "true"}},
            "--voicemail-message: is left only with --on-machine voicemail",
        ),
        ({"answer_xml": "<Response><Speak>x</Response>", "message": None}, "--answer-xml:"),
        ({"answer_xml": "<Response/>"}, "--answer-xml: the template is the whole answer"),
        (
            {"answer_xml": "<Response/>", "message": None, "gather": "1=ok"},
            "--gather: with --answer-xml, the template's <GetDigits",
        ),
    ],
)
def test_content_errors_name_the_option(change: dict[str, Any], line: str) -> None:
    """Each mistake in what the call says is one line naming the option."""
    assert str(refused(replace(SPOKEN, **change), PUBLIC_URL)).startswith(line)


def test_voice_options_need_served_content() -> None:
    """--voice, --gather and the like apply only to what the engine says."""
    error = refused(replace(NEW, voice="WOMAN"), PUBLIC_URL)
    assert error.option == "--voice"
    assert "give --message, --play or --answer-xml" in error.message
