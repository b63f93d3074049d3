"""/api/v1/campaigns…: list, one campaign, pause, resume, cancel, pacing, contacts, responses,
export. Each change goes through campaign/control.py, each option through the CLI's own click
declarations (campaign/api/options.py), so the API and the CLI keep one copy of every rule."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from campaign import control, queries
from campaign.api.answers import (
    decode_cursor,
    dumps,
    encode_cursor,
    json_answer,
    page_limit,
)
from campaign.api.options import parse_options
from campaign.api.problems import FieldError, Problem, validation
from campaign.api.requests import (
    API_POOL,
    API_SETTINGS,
    idempotent,
    read_json_object,
    request_digest,
)
from campaign.cli.campaigns import set_pacing as set_command
from campaign.config import Settings
from campaign.contact_filter import ContactFilter, FilterError
from campaign.export import (
    ExportError,
    OutputError,
    export_campaign,
    export_chunks,
    export_row,
)
from campaign.models import Campaign, CampaignStatus
from campaign.plivo import PlivoError
from campaign.specs import SpecError, pacing_change

NDJSON = "application/x-ndjson"
EXPORT_CHUNK_ROWS = 2000


def campaign_settings(campaign: Campaign) -> dict[str, Any]:
    """A campaign's settings, by the names of `campaign load`'s options."""
    content = campaign.content
    return {
        "from": campaign.from_number,
        "answer-url": campaign.answer_url,
        "call-parameters": campaign.call_parameters,
        "calls-per-second": campaign.calls_per_second,
        "batch-size": campaign.batch_size,
        "max-attempts": campaign.max_attempts,
        "priority": campaign.priority,
        "max-concurrent-calls": campaign.max_concurrent_calls,
        "track-calls": campaign.track_calls,
        "redial-on": list(campaign.redial_on),
        "redial-delays-s": list(campaign.redial_delays_s),
        "default-timezone": campaign.default_time_zone,
        "suppression-lists": list(campaign.suppression_lists),
        "max-calls-per-number-per-day": campaign.max_calls_per_number_per_day,
        "caller-id": campaign.caller_id_mode,
        "calls-per-second-per-caller-id": campaign.calls_per_second_per_caller_id,
        "max-calls-per-caller-id-per-day": campaign.max_calls_per_caller_id_per_day,
        "message": content.message,
        "voice": content.voice,
        "language": content.language,
        "play": content.play_url,
        "play-after": content.play_after_url,
        "gather": dict(content.gather) or None,
        "gather-prompt": content.gather_prompt,
        "on-machine": content.on_machine,
        "voicemail-message": content.voicemail_message,
        "status-reason": campaign.status_reason,
    }


async def _campaign(request: web.Request) -> Campaign:
    name = request.match_info["name"]
    campaign = await queries.campaign_by_name(request.app[API_POOL], name)
    if campaign is None:
        raise Problem(404, "not-found", str(control.no_campaign(name)))
    return campaign


def _control_problem(error: control.ControlError) -> Problem:
    if error.missing:
        return Problem(404, "not-found", str(error))
    if error.option is not None:
        field = error.option.lstrip("-")
        return Problem(422, "validation", str(error), [FieldError(field, error.message)])
    return Problem(409, "conflict", str(error))


def spec_problem(error: SpecError) -> Problem:
    """A SpecError as the CLI words it, naming the option (without its dashes) as the field."""
    field = (error.option or "settings").split("/")[0].strip().lstrip("-")
    return Problem(422, "validation", str(error), [FieldError(field, error.message)])


async def list_campaigns(request: web.Request) -> web.Response:
    """GET /api/v1/campaigns: every campaign with its counts, as `campaign list --json`."""
    pool = request.app[API_POOL]
    await queries.recover_expired_leases(pool)
    return json_answer({"campaigns": [row.as_json() for row in await queries.progress_all(pool)]})


async def _detail(request: web.Request, name: str) -> dict[str, Any]:
    pool = request.app[API_POOL]
    settings = request.app[API_SETTINGS]
    payload = await control.status_json(
        pool, name, account_max_concurrent_calls=settings.account_max_concurrent_calls or None
    )
    campaign = await queries.campaign_by_name(pool, name)
    if payload is None or campaign is None:
        raise Problem(404, "not-found", str(control.no_campaign(name)))
    payload["settings"] = campaign_settings(campaign)
    return payload


async def get_campaign(request: web.Request) -> web.Response:
    """GET /api/v1/campaigns/{name}: `campaign status NAME --json` and the campaign's settings."""
    await queries.recover_expired_leases(request.app[API_POOL])
    return json_answer(await _detail(request, request.match_info["name"]))


def _status_action(
    new_status: CampaignStatus, allowed: tuple[CampaignStatus, ...]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of POST /api/v1/campaigns/{name}/pause (or resume): as the command."""

    async def handle(request: web.Request) -> web.Response:
        _body, raw = await read_json_object(request)
        name = request.match_info["name"]

        async def answer() -> web.Response:
            pool = request.app[API_POOL]
            async with pool.acquire() as connection, connection.transaction():
                try:
                    await control.set_status(connection, name, new_status, allowed)
                except control.ControlError as error:
                    raise _control_problem(error) from None
            return json_answer(await _detail(request, name))

        return await idempotent(request, request_digest(request, raw), answer)

    return handle


pause = _status_action(CampaignStatus.PAUSED, control.PAUSABLE)
resume = _status_action(CampaignStatus.RUNNING, control.RESUMABLE)


async def cancel(request: web.Request) -> web.Response:
    """POST /api/v1/campaigns/{name}/cancel {"cancel_queued": bool}: as `campaign cancel`."""
    body, raw = await read_json_object(request)
    name = request.match_info["name"]
    unknown = sorted(set(body) - {"cancel_queued", "cancel-queued"})
    if unknown:
        raise validation(unknown[0], "no such option of `campaign cancel`")
    cancel_queued = body.get("cancel_queued", body.get("cancel-queued", False))
    if not isinstance(cancel_queued, bool):
        raise validation("cancel_queued", "must be true or false")
    settings = request.app[API_SETTINGS]
    if cancel_queued and not settings.has_plivo_credentials:
        raise validation("cancel_queued", "set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN to reach Plivo")

    async def answer() -> web.Response:
        pool = request.app[API_POOL]
        async with pool.acquire() as connection, connection.transaction():
            try:
                campaign, cancelled = await control.cancel(connection, name)
            except control.ControlError as error:
                raise _control_problem(error) from None
        result: dict[str, Any] = {"cancelled_contacts": cancelled}
        if cancel_queued:
            try:
                result["queued_calls"] = await _cancel_queued(request, campaign)
            except PlivoError as error:
                # The campaign is cancelled (committed); only Plivo's queue is left as it was.
                raise Problem(
                    502,
                    "plivo-failed",
                    f"the campaign is cancelled ({cancelled} contacts), but cancelling its calls"
                    f" queued at Plivo failed: {error}; run `campaign cancel {name}"
                    " --cancel-queued` again",
                ) from None
        result["campaign"] = await _detail(request, name)
        return json_answer(result)

    return await idempotent(request, request_digest(request, raw), answer)


async def _cancel_queued(request: web.Request, campaign: Campaign) -> dict[str, int]:
    return await cancel_queued(request.app[API_POOL], request.app[API_SETTINGS], campaign)


async def cancel_queued(
    pool: asyncpg.Pool, settings: Settings, campaign: Campaign
) -> dict[str, int]:
    """`--cancel-queued`: wait for the requests in flight, then cancel what Plivo holds queued
    (for the API and the dashboard)."""
    from campaign.cancellation import cancel_queued_calls, wait_for_requests_in_flight
    from campaign.cli.campaigns import IN_FLIGHT_MARGIN_S
    from campaign.plivo import PlivoClient, PlivoClientConfig, new_plivo_session

    left = await wait_for_requests_in_flight(
        pool, campaign, timeout_s=settings.plivo_timeout_s + IN_FLIGHT_MARGIN_S
    )
    async with new_plivo_session() as session:
        client = PlivoClient(session, PlivoClientConfig.from_settings(settings))
        removed, gone = await cancel_queued_calls(pool, client, campaign, settings)
    return {"cancelled": removed, "left_queue": gone, "without_reply": left}


async def set_pacing(request: web.Request) -> web.Response:
    """POST /api/v1/campaigns/{name}/pacing: `campaign set`'s options by name."""
    body, raw = await read_json_object(request)
    name = request.match_info["name"]
    params = parse_options(set_command, body, arguments=[name])
    try:
        change = pacing_change(
            params["calls_per_second"],
            params["batch_size"],
            params["priority"],
            params["max_concurrent_calls"],
        )
    except SpecError as error:
        raise spec_problem(error) from None

    async def answer() -> web.Response:
        pool = request.app[API_POOL]
        async with pool.acquire() as connection, connection.transaction():
            try:
                await control.set_pacing(connection, name, change)
            except control.ControlError as error:
                raise _control_problem(error) from None
        return json_answer(await _detail(request, name))

    return await idempotent(request, request_digest(request, raw), answer)


REDIAL_FIELDS = frozenset({"statuses", "outcomes", "time_zone", "response", "search", "dry_run"})


def _body_filter(body: dict[str, Any]) -> tuple[ContactFilter, bool]:
    """The filter and dry_run of a redial's JSON body, or a validation problem."""
    unknown = sorted(set(body) - REDIAL_FIELDS)
    if unknown:
        raise validation(
            unknown[0], f"no such field; the fields are: {', '.join(sorted(REDIAL_FIELDS))}"
        )
    lists: dict[str, tuple[str, ...]] = {}
    for field in ("statuses", "outcomes"):
        value = body.get(field, [])
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise validation(field, "must be a list of strings")
        lists[field] = tuple(value)
    texts: dict[str, str | None] = {}
    for field in ("time_zone", "response", "search"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise validation(field, "must be a string or null")
        texts[field] = value or None
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise validation("dry_run", "must be true or false")
    flt = ContactFilter(
        statuses=lists["statuses"],
        outcomes=lists["outcomes"],
        time_zone=texts["time_zone"],
        response=texts["response"],
        search=texts["search"],
    )
    try:
        return flt.checked(), dry_run
    except FilterError as error:
        raise validation(error.field, error.message) from error


async def redial(request: web.Request) -> web.Response:
    """POST /api/v1/campaigns/{name}/redial {statuses, outcomes, time_zone, response, search,
    dry_run}: as `campaign redial` -> {"matched", "redialable", "redialled"}."""
    body, raw = await read_json_object(request)
    name = request.match_info["name"]
    flt, dry_run = _body_filter(body)

    async def answer() -> web.Response:
        pool = request.app[API_POOL]
        async with pool.acquire() as connection, connection.transaction():
            try:
                counts = await control.redial_counts(connection, name, flt)
                redialled = 0 if dry_run else await control.redial(connection, name, flt)
            except control.ControlError as error:
                raise _control_problem(error) from None
        return json_answer(
            {
                "matched": counts.matched,
                "redialable": counts.redialable,
                "redialled": redialled,
                "dry_run": dry_run,
            }
        )

    return await idempotent(request, request_digest(request, raw), answer)


def _contact_json(record: Any) -> dict[str, Any]:
    contact = dict(record)
    contact["id"] = contact.pop("contact_id")
    return contact


def _query_filter(query: Any) -> ContactFilter:
    """The contact filter of a listing's query string: status and outcome (each may repeat),
    time_zone, response, q (or search)."""
    search = query.get("q", query.get("search"))
    flt = ContactFilter(
        statuses=tuple(query.getall("status", ())),
        outcomes=tuple(query.getall("outcome", ())),
        time_zone=query.get("time_zone"),
        response=query.get("response"),
        search=search,
    )
    try:
        return flt.checked()
    except FilterError as error:
        field = {"statuses": "status", "outcomes": "outcome", "search": "q"}.get(
            error.field, error.field
        )
        raise validation(field, error.message) from error


async def contacts(request: web.Request) -> web.Response:
    """GET /api/v1/campaigns/{name}/contacts?status=&outcome=&time_zone=&response=&q=&limit=
    &cursor=: a keyset page of the contacts the filter matches (campaign/contact_filter.py)."""
    query = request.query
    flt = _query_filter(query)
    limit = page_limit(query.get("limit"))
    after_id = decode_cursor(query.get("cursor"))
    campaign = await _campaign(request)
    records = await queries.contacts_page(
        request.app[API_POOL], campaign.id, after_id, flt=flt, limit=limit
    )
    next_cursor = encode_cursor(records[-1]["contact_id"]) if len(records) == limit else None
    return json_answer(
        {"contacts": [_contact_json(record) for record in records], "next_cursor": next_cursor}
    )


def _contact_id(request: web.Request) -> int:
    text = request.match_info["contact_id"]
    if not text.isascii() or not text.isdigit() or int(text) >= 2**63:
        raise Problem(404, "not-found", f"no contact {text!r}; contact ids are whole numbers")
    return int(text)


async def contact(request: web.Request) -> web.Response:
    """GET /api/v1/campaigns/{name}/contacts/{id}: the contact, its attempts, its call events."""
    contact_id = _contact_id(request)
    campaign = await _campaign(request)
    pool = request.app[API_POOL]
    record = await queries.contact_outcome(pool, campaign.id, contact_id)
    if record is None:
        raise Problem(404, "not-found", f"campaign {campaign.name!r} has no contact {contact_id}")
    result = _contact_json(record)
    result["attempts_made"] = [
        dict(row) for row in await queries.contact_attempts(pool, campaign.id, contact_id)
    ]
    result["call_events"] = [
        dict(row) for row in await queries.contact_call_events(pool, campaign.id, contact_id)
    ]
    return json_answer(result)


async def responses(request: web.Request) -> web.Response:
    """GET /api/v1/campaigns/{name}/responses?limit=&cursor=: the keys pressed, a keyset page."""
    limit = page_limit(request.query.get("limit"))
    after_id = decode_cursor(request.query.get("cursor"))
    campaign = await _campaign(request)
    records = await queries.responses_page(request.app[API_POOL], campaign.id, after_id, limit)
    next_cursor = encode_cursor(records[-1]["id"]) if len(records) == limit else None
    return json_answer({"responses": [dict(r) for r in records], "next_cursor": next_cursor})


def _wants_ndjson(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip() == NDJSON for part in accept.split(","))


async def export(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/campaigns/{name}/export: `campaign export`'s CSV, streamed a chunk at a
    time (or NDJSON, one object per contact, with `Accept: application/x-ndjson`)."""
    name = request.match_info["name"]
    ndjson = _wants_ndjson(request)
    escape = request.query.get("escape_formulas", "true")
    if escape not in ("true", "false"):
        raise validation("escape_formulas", "must be true or false")
    extension = "ndjson" if ndjson else "csv"
    response = web.StreamResponse(
        headers={
            "Content-Type": NDJSON if ndjson else "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{_file_name(name)}.{extension}"',
        }
    )
    buffer = io.StringIO()

    async def send() -> None:
        """What was written so far, to the client (headers first, once the campaign exists)."""
        if not response.prepared:
            await response.prepare(request)
        if buffer.tell():
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()

    pool = request.app[API_POOL]
    try:
        if ndjson:
            async with export_chunks(pool, name, chunk_rows=EXPORT_CHUNK_ROWS) as (header, chunks):
                async for records in chunks:
                    for record in records:
                        row = export_row(record, escape_formulas=False)
                        buffer.write(dumps(dict(zip(header, row, strict=True))) + "\n")
                    await send()
        else:
            await export_campaign(
                pool,
                name,
                buffer,
                chunk_rows=EXPORT_CHUNK_ROWS,
                escape_formulas=escape == "true",
                written=send,
            )
    except (ConnectionResetError, OutputError):
        if not response.prepared:
            raise
        # The client went away in the middle: nothing more to say to it.
        return response
    except ExportError as error:
        raise Problem(404, "not-found", str(error)) from None
    await send()
    await response.write_eof()
    return response


def _file_name(name: str) -> str:
    """A campaign's name as a download's file name (no quotes, slashes or control characters)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    return safe[:100] or "campaign"
