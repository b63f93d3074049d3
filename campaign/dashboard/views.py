"""The dashboard's pages and actions. Each handler gets the request's live session; each action
goes through the code the CLI and the API run, and is written to dashboard_audit."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

import aiohttp_jinja2
import asyncpg
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from campaign import control, queries
from campaign.api.answers import decode_cursor, encode_cursor
from campaign.api.campaigns import cancel_queued
from campaign.api.keys import key_hash
from campaign.api.loads import SPOOL_CHUNK_BYTES, display_name, load_upload
from campaign.api.options import parse_options
from campaign.api.problems import Problem
from campaign.cli.campaigns import set_pacing as set_command
from campaign.config import Settings
from campaign.contact_filter import OUTCOMES, ContactFilter
from campaign.dashboard import security
from campaign.dashboard.hub import CLOSED, Hub
from campaign.dashboard.security import Session
from campaign.dashboard.snapshots import campaign_snapshot, campaigns_snapshot
from campaign.models import CONTACT_STATUSES, CampaignStatus
from campaign.plivo import PlivoError
from campaign.queries import dashboard as dq
from campaign.queries import webhooks as webhook_queries
from campaign.queries.suppressions import SuppressedNumber
from campaign.specs import SpecError, list_name, pacing_change
from campaign.suppression import (
    RefusedValues,
    add_to_list,
    is_file_argument,
    reason_text,
    remove_from_list,
)

logger = logging.getLogger(__name__)

CONTACTS_PAGE_ROWS = 50
AUDIT_ROWS = 200
FORM_MAX_BYTES = 1024 * 1024
SETTINGS_MAX_BYTES = 256 * 1024
SSE_KEEPALIVE_S = 15.0
# The few `campaign load` options the upload form has fields for (the rest go in `settings`).
UPLOAD_FIELDS = ("from", "answer-url", "message", "calls-per-second", "calling-hours")


@dataclass
class Dashboard:
    """The dashboard's state: its own pool, the settings, the snapshot hub."""

    pool: asyncpg.Pool
    settings: Settings
    hub: Hub


DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)
FORM_KEY = web.RequestKey("dashboard_form", dict[str, list[str]])

Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def _state(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD_KEY]


def _local_path(target: str | None) -> str:
    """`next`, if it is a path of this site (never another origin), else `/`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(char) < 0x20 for char in target):
        return "/"
    return target


def see_other(location: str) -> web.Response:
    """303 to `location` (a path of this site)."""
    return web.Response(status=303, headers={"Location": location})


def _forbidden(text: str) -> web.Response:
    return web.Response(status=403, text=text + "\n")


async def _read_form(request: web.Request) -> dict[str, list[str]]:
    """An urlencoded form body (up to FORM_MAX_BYTES)."""
    body = await request.content.read(FORM_MAX_BYTES + 1)
    if len(body) > FORM_MAX_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=FORM_MAX_BYTES, actual_size=len(body), text="form too large\n"
        )
    try:
        return parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the form is not UTF-8\n") from None


def _field(form: Mapping[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def page(
    handler: Handler, *, json_answer: bool = False
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page: its session, else 303 to /login?next=… (a JSON answer: 401)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        found = await security.session_of(request, state.pool, state.settings.dashboard_idle_s)
        if found is None and json_answer:
            return web.json_response({"error": "log in first"}, status=401)
        if found is None:
            raise web.HTTPSeeOther("/login?" + urlencode({"next": request.rel_url.path_qs}))
        return await handler(request, found[0])

    return wrapped


def action(
    handler: Handler, *, multipart: bool = False
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A POST that changes something: a writer's session and the session's CSRF token, else 403
    before anything is read or changed. (A multipart form's token is checked by its handler,
    before its file is read.)"""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        found = await security.session_of(request, state.pool, state.settings.dashboard_idle_s)
        if found is None:
            return _forbidden("log in first (your session ended)")
        session = found[0]
        if not session.writer:
            return _forbidden(f"the key {session.key.name!r} is read-only: it cannot act")
        if multipart:
            if request.content_type != "multipart/form-data":
                return _forbidden("missing or wrong CSRF token")
        else:
            if request.content_type != "application/x-www-form-urlencoded":
                return _forbidden("missing or wrong CSRF token")
            form = await _read_form(request)
            if not _csrf_ok(session, _field(form, "csrf")):
                return _forbidden("missing or wrong CSRF token")
            request[FORM_KEY] = form
        response = await handler(request, session)
        # Its change is committed: every live page computes again (at once in this process;
        # others learn of it by NOTIFY), and a page opened now waits for that snapshot.
        state.hub.wake()
        return response

    return wrapped


def _csrf_ok(session: Session, given: str) -> bool:
    return bool(given) and given.isascii() and hmac.compare_digest(session.csrf, given)


def _flash_of(request: web.Request) -> str | None:
    value = request.cookies.get(security.FLASH_COOKIE)
    return None if not value else unquote(value)[:500]


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    session: Session | None,
    *,
    status: int = 200,
) -> web.Response:
    flash = _flash_of(request)
    response = aiohttp_jinja2.render_template(
        template,
        request,
        {**context, "session": session, "flash": flash, "outcome_names": OUTCOMES},
        status=status,
    )
    if flash is not None:
        response.del_cookie(security.FLASH_COOKIE, path="/")
    return response


def _back(request: web.Request, location: str, message: str) -> web.Response:
    """303 to `location`, which shows `message` once."""
    response = see_other(location)
    response.set_cookie(
        security.FLASH_COOKIE,
        quote(message[:500]),
        httponly=True,
        samesite="Strict",
        path="/",
        secure=security.secure_cookies(_state(request).settings.public_url),
    )
    return response


async def _audit(
    state: Dashboard,
    session: Session,
    what: str,
    campaign: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    await dq.write_dashboard_audit(state.pool, session.key.name, what, campaign, detail or {})


def _campaign_url(name: str) -> str:
    return "/campaigns/" + quote(name, safe="")


# --- Login ------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    """GET /login."""
    return render(
        request, "login.html", {"next": _local_path(request.query.get("next")), "error": None}, None
    )


async def login(request: web.Request) -> web.StreamResponse:
    """POST /login: a right key opens a session (303 to `next`); a wrong one is 401; too many
    failures from one address are 429 (see security.py)."""
    state = _state(request)
    settings = state.settings
    form = await _read_form(request)
    target = _local_path(_field(form, "next"))
    address = security.client_address(request)
    window_s = settings.dashboard_login_window_s
    failures, retry_after_s = await dq.login_failures(state.pool, address, window_s)
    if failures >= settings.dashboard_login_failures:
        response = render(
            request,
            "login.html",
            {
                "next": target,
                "error": f"too many failed logins from your address; try again in "
                f"{max(1, int(retry_after_s + 0.999))} s",
            },
            None,
            status=429,
        )
        response.headers["Retry-After"] = str(max(1, int(retry_after_s + 0.999)))
        return response
    key = _field(form, "key").strip()
    found = None
    if key and len(key) <= 200:
        digest = key_hash(key)
        found = await queries.api_key_by_hash(state.pool, digest)
        if found is not None and not hmac.compare_digest(found[1], digest):
            found = None
    if found is None:
        await dq.record_login_failure(state.pool, address, window_s)
        return render(
            request,
            "login.html",
            {"next": target, "error": "that key is not valid (unknown or revoked)"},
            None,
            status=401,
        )
    token = security.new_token()
    await dq.create_dashboard_session(
        state.pool, security.token_hash(token), found[0].id, idle_s=settings.dashboard_idle_s
    )
    response = see_other(target)
    security.set_session_cookie(
        response, token, secure=security.secure_cookies(settings.public_url)
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: the session ends (CSRF-checked, as every POST)."""
    state = _state(request)
    found = await security.session_of(request, state.pool, state.settings.dashboard_idle_s)
    if found is None:
        raise web.HTTPSeeOther("/login")
    form = await _read_form(request)
    if not _csrf_ok(found[0], _field(form, "csrf")):
        return _forbidden("missing or wrong CSRF token")
    await dq.end_dashboard_session(state.pool, found[0].token_sha256)
    response = see_other("/login")
    response.del_cookie(security.COOKIE_NAME, path="/")
    return response


# --- Pages ------------------------------------------------------------------------------------


async def campaigns_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /: every campaign."""
    state = _state(request)
    snapshot = await campaigns_snapshot(state.pool, state.settings)
    return render(request, "campaigns.html", {"snapshot": snapshot}, session)


async def campaign_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /campaigns/{name}: one campaign, live."""
    state = _state(request)
    name = request.match_info["name"]
    snapshot = await campaign_snapshot(state.pool, state.settings, name)
    if snapshot is None:
        raise web.HTTPNotFound(text=f"no campaign named {name!r}\n")
    return render(
        request,
        "campaign.html",
        {"c": snapshot, "statuses": CONTACT_STATUSES, "url": _campaign_url(name)},
        session,
    )


def _filter_of(query: Mapping[str, list[str]]) -> ContactFilter:
    def many(name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v for v in query.get(name, []) if v in allowed)

    def one(name: str) -> str | None:
        value = (query.get(name) or [""])[0].strip()
        return value[:200] or None

    return ContactFilter(
        statuses=many("status", CONTACT_STATUSES),
        outcomes=many("outcome", OUTCOMES),
        time_zone=one("time_zone"),
        response=one("response"),
        search=one("q"),
    )


def _filter_query(flt: ContactFilter) -> list[tuple[str, str]]:
    pairs = [("status", s) for s in flt.statuses] + [("outcome", o) for o in flt.outcomes]
    for name, value in (
        ("time_zone", flt.time_zone),
        ("response", flt.response),
        ("q", flt.search),
    ):
        if value is not None:
            pairs.append((name, value))
    return pairs


def _query_lists(request: web.Request) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for name, value in request.query.items():
        lists.setdefault(name, []).append(value)
    return lists


async def contacts_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /campaigns/{name}/contacts: filters and keyset pages."""
    state = _state(request)
    name = request.match_info["name"]
    campaign = await queries.campaign_by_name(state.pool, name)
    if campaign is None:
        raise web.HTTPNotFound(text=f"no campaign named {name!r}\n")
    flt = _filter_of(_query_lists(request))
    try:
        after_id = decode_cursor(request.query.get("cursor"))
    except Problem:
        raise web.HTTPBadRequest(text="that cursor is not one of this page's\n") from None
    rows = await queries.contacts_page(
        state.pool, campaign.id, after_id, flt=flt, limit=CONTACTS_PAGE_ROWS + 1
    )
    next_url = None
    if len(rows) > CONTACTS_PAGE_ROWS:
        rows = rows[:CONTACTS_PAGE_ROWS]
        cursor = encode_cursor(rows[-1]["contact_id"])
        next_url = "?" + urlencode([*_filter_query(flt), ("cursor", cursor)])
    time_zones = await dq.dashboard_time_zones(state.pool, campaign.id)
    responses = sorted(set(campaign.content.gather.values())) if campaign.content.gather else []
    return render(
        request,
        "contacts.html",
        {
            "name": name,
            "url": _campaign_url(name),
            "rows": rows,
            "flt": flt,
            "filter_pairs": _filter_query(flt),
            "count_url": _campaign_url(name) + "/redial-count?" + urlencode(_filter_query(flt)),
            "next_url": next_url,
            "first_url": "?" + urlencode(_filter_query(flt)) if after_id else None,
            "statuses": CONTACT_STATUSES,
            "outcomes": OUTCOMES,
            "time_zones": time_zones,
            "responses": responses,
        },
        session,
    )


async def contact_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /campaigns/{name}/contacts/{id}: one contact's timeline."""
    state = _state(request)
    name = request.match_info["name"]
    text = request.match_info["contact_id"]
    campaign = await queries.campaign_by_name(state.pool, name)
    if campaign is None or not text.isascii() or not text.isdigit() or int(text) >= 2**63:
        raise web.HTTPNotFound(text="no such contact\n")
    contact_id = int(text)
    async with state.pool.acquire() as connection:
        contact = await queries.contact_outcome(connection, campaign.id, contact_id)
        if contact is None:
            raise web.HTTPNotFound(text="no such contact\n")
        attempts = await queries.contact_attempts(connection, campaign.id, contact_id)
        events = await queries.contact_call_events(connection, campaign.id, contact_id)
        responses = await dq.dashboard_contact_responses(connection, campaign.id, contact_id)
        deliveries = await dq.dashboard_contact_deliveries(connection, campaign.id, contact_id)
    timeline: list[dict[str, Any]] = []
    for row in attempts:
        timeline.append(
            {
                "at": row["sent_at"],
                "kind": "request",
                "title": f"attempt {row['attempt']}: request "
                + (row["request_outcome"] or "in flight"),
                "detail": " · ".join(
                    str(part)
                    for part in (
                        row["http_status"] and f"HTTP {row['http_status']}",
                        row["error"],
                        row["request_uuid"] and f"request {row['request_uuid']}",
                        row["caller_id"] and f"from {row['caller_id']}",
                    )
                    if part
                ),
            }
        )
        if row["call_status"] is not None:
            timeline.append(
                {
                    "at": row["replied_at"] or row["sent_at"],
                    "kind": "attempt",
                    "title": f"attempt {row['attempt']}: call {row['call_status']}",
                    "detail": " · ".join(
                        str(p)
                        for p in (
                            row["hangup_cause"],
                            row["duration_s"] and f"{row['duration_s']} s",
                        )
                        if p
                    ),
                }
            )
    for row in events:
        timeline.append(
            {
                "at": row["received_at"],
                "kind": "callback",
                "title": f"callback {row['event']}: {row['call_status'] or ''}",
                "detail": json.dumps(row["payload"], sort_keys=True)[:500],
            }
        )
    for row in responses:
        timeline.append(
            {
                "at": row["received_at"],
                "kind": "response",
                "title": f"pressed {row['digits']}: {row['meaning']}",
                "detail": f"attempt {row['attempt']}",
            }
        )
    for row in deliveries:
        timeline.append(
            {
                "at": row["occurred_at"],
                "kind": "webhook",
                "title": f"webhook {row['type']}: {row['status']}",
                "detail": " · ".join(
                    str(p)
                    for p in (
                        row["url"],
                        f"{row['attempts']} attempts",
                        row["last_status"] and f"HTTP {row['last_status']}",
                        row["last_error"],
                    )
                    if p
                ),
            }
        )
    timeline.sort(key=lambda item: item["at"])
    return render(
        request,
        "contact.html",
        {"name": name, "url": _campaign_url(name), "contact": contact, "timeline": timeline},
        session,
    )


async def redial_count(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /campaigns/{name}/redial-count?filter…: how many contacts a redial would dial again."""
    state = _state(request)
    name = request.match_info["name"]
    flt = _filter_of(_query_lists(request))
    async with state.pool.acquire() as connection:
        try:
            count = await control.redial_count(connection, name, flt)
        except control.ControlError as error:
            return web.json_response({"error": str(error)}, status=404 if error.missing else 409)
    return web.json_response({"count": count})


async def new_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /new: a campaign from a CSV."""
    return render(request, "new.html", {"values": {}, "errors": [], "detail": None}, session)


async def suppression_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /suppression: the lists and their numbers (the first 500 of each list shown)."""
    state = _state(request)
    lists = await queries.suppression_lists(state.pool)
    numbers: dict[str, list[SuppressedNumber]] = {}
    async with state.pool.acquire() as connection, connection.transaction(readonly=True):
        for item in lists:
            shown: list[SuppressedNumber] = []
            async for chunk in queries.suppressed_number_chunks(connection, item.name, 500):
                shown.extend(chunk)
                break
            numbers[item.name] = shown
    return render(request, "suppression.html", {"lists": lists, "numbers": numbers}, session)


async def webhooks_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /webhooks: the failed deliveries."""
    pool = _state(request).pool
    rows = await webhook_queries.webhook_deliveries(pool, failed_only=True, limit=200)
    return render(request, "webhooks.html", {"rows": rows}, session)


async def audit_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /audit: the latest actions."""
    rows = await dq.dashboard_audit(_state(request).pool, AUDIT_ROWS)
    return render(request, "audit.html", {"rows": rows}, session)


# --- Actions ----------------------------------------------------------------------------------


def _status_action(new_status: CampaignStatus, allowed: tuple[CampaignStatus, ...]) -> Handler:
    async def handle(request: web.Request, session: Session) -> web.StreamResponse:
        state = _state(request)
        name = request.match_info["name"]
        async with state.pool.acquire() as connection, connection.transaction():
            try:
                await control.set_status(connection, name, new_status, allowed)
            except control.ControlError as error:
                return _back(request, _campaign_url(name), f"not done: {error}")
        what = {CampaignStatus.PAUSED: "pause", CampaignStatus.RUNNING: "resume"}[new_status]
        await _audit(state, session, what, name)
        return _back(request, _campaign_url(name), f"campaign {name} is {new_status.value}")

    return handle


pause = _status_action(CampaignStatus.PAUSED, control.PAUSABLE)
resume = _status_action(CampaignStatus.RUNNING, control.RESUMABLE)


async def cancel(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /campaigns/{name}/cancel (cancel_queued=on: also Plivo's queued calls)."""
    state = _state(request)
    name = request.match_info["name"]
    form: dict[str, list[str]] = request[FORM_KEY]
    cancel_queued_calls = _field(form, "cancel_queued") in ("on", "true", "1")
    if cancel_queued_calls and not state.settings.has_plivo_credentials:
        return _back(
            request,
            _campaign_url(name),
            "not done: cancelling queued calls needs PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN",
        )
    async with state.pool.acquire() as connection, connection.transaction():
        try:
            campaign, cancelled = await control.cancel(connection, name)
        except control.ControlError as error:
            return _back(request, _campaign_url(name), f"not done: {error}")
    message = f"campaign {name} is cancelled ({cancelled:,} contacts not dialled)"
    detail: dict[str, Any] = {"cancelled_contacts": cancelled, "cancel_queued": cancel_queued_calls}
    if cancel_queued_calls:
        try:
            queued = await cancel_queued(state.pool, state.settings, campaign)
            detail["queued_calls"] = queued
            message += f"; {queued['cancelled']:,} queued calls cancelled at Plivo"
        except PlivoError as error:
            message += f"; cancelling its queued calls at Plivo failed: {error}"
    await _audit(state, session, "cancel", name, detail)
    return _back(request, _campaign_url(name), message)


async def set_pacing(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /campaigns/{name}/pacing: cps, max_concurrent_calls, priority as `campaign set`
    (an empty field: unchanged; `none` lifts a cap)."""
    state = _state(request)
    name = request.match_info["name"]
    form = request[FORM_KEY]
    given = {
        option: _field(form, field).strip()
        for option, field in (
            ("calls-per-second", "cps"),
            ("max-concurrent-calls", "max_concurrent_calls"),
            ("priority", "priority"),
        )
        if _field(form, field).strip()
    }
    try:
        params = parse_options(set_command, given, arguments=[name])
        change = pacing_change(
            params["calls_per_second"],
            params["batch_size"],
            params["priority"],
            params["max_concurrent_calls"],
        )
    except Problem as problem:
        return _back(request, _campaign_url(name), f"not done: {problem.detail}")
    except SpecError as error:
        return _back(request, _campaign_url(name), f"not done: {error}")
    async with state.pool.acquire() as connection, connection.transaction():
        try:
            await control.set_pacing(connection, name, change)
        except control.ControlError as error:
            return _back(request, _campaign_url(name), f"not done: {error}")
    await _audit(state, session, "pacing", name, given)
    return _back(request, _campaign_url(name), f"campaign {name}: {change.describe()}")


async def redial(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /campaigns/{name}/redial: dial again every contact matching the filter."""
    state = _state(request)
    name = request.match_info["name"]
    form: dict[str, list[str]] = request[FORM_KEY]
    flt = _filter_of(form)
    back = _campaign_url(name) + "/contacts?" + urlencode(_filter_query(flt))
    async with state.pool.acquire() as connection, connection.transaction():
        try:
            count = await control.redial(connection, name, flt)
        except control.ControlError as error:
            return _back(request, back, f"not done: {error}")
    await _audit(state, session, "redial", name, {"redialled": count, "filter": _filter_query(flt)})
    return _back(request, back, f"{count:,} contacts of {name} will be dialled again")


async def _read_field(part: BodyPartReader, limit: int) -> bytes:
    """A form field's bytes, `limit` at most (a 413 past that, never read whole first)."""
    data = bytearray()
    while chunk := await part.read_chunk(SPOOL_CHUNK_BYTES):
        data.extend(chunk)
        if len(data) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
    return bytes(data)


async def _read_new_form(
    request: web.Request, session: Session, folder: Path
) -> tuple[dict[str, str], Path | None, str] | web.Response:
    """The upload form's fields and its spooled file; 403 unless its CSRF token comes first."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        return _forbidden("missing or wrong CSRF token")
    fields: dict[str, str] = {}
    spool: Path | None = None
    upload_name = "file"
    checked = False
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text="nested multipart parts are not taken\n")
            if not checked:
                if part.name != "csrf" or not _csrf_ok(
                    session, (await _read_field(part, 200)).decode(errors="replace")
                ):
                    return _forbidden("missing or wrong CSRF token")
                checked = True
            elif part.name == "file" and spool is None:
                upload_name = display_name(part.filename)
                spool = folder / "upload.csv"
                with spool.open("wb") as out:
                    while chunk := await part.read_chunk(SPOOL_CHUNK_BYTES):
                        out.write(chunk)
            elif part.name is not None:
                data = await _read_field(part, SETTINGS_MAX_BYTES)
                fields[part.name] = data.decode(errors="replace")
    except (ValueError, AssertionError, UnicodeDecodeError, HttpProcessingError):
        raise web.HTTPBadRequest(text="the form cannot be read\n") from None
    if not checked:
        return _forbidden("missing or wrong CSRF token")
    return fields, spool, upload_name


async def new_campaign(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /new: a campaign from an uploaded CSV and its settings, through the API's load
    path (same options, same checks); the answer shows the rejected rows and their lines."""
    state = _state(request)
    with tempfile.TemporaryDirectory(prefix="campaign-dashboard-") as directory:
        folder = Path(directory)
        read = await _read_new_form(request, session, folder)
        if isinstance(read, web.Response):
            return read
        fields, spool, upload_name = read
        values = {k: v for k, v in fields.items() if k != "csrf"}

        def refused(detail: str, errors: list[tuple[str, str]]) -> web.Response:
            return render(
                request,
                "new.html",
                {"values": values, "errors": errors, "detail": detail},
                session,
                status=422,
            )

        options: dict[str, Any] = {}
        text = fields.get("settings", "").strip()
        if text:
            try:
                parsed = json.loads(text)
            except ValueError as error:
                return refused(f"settings: is not JSON: {error}", [])
            if not isinstance(parsed, dict):
                return refused("settings: must be a JSON object of `campaign load` options", [])
            options.update(parsed)
        for name in UPLOAD_FIELDS:
            value = fields.get(name, "").strip()
            if value:
                options[name] = value
        options["name"] = fields.get("name", "").strip()
        if spool is None or spool.stat().st_size == 0:
            return refused("file: choose the CSV file to load", [("file", "missing")])
        try:
            run = await load_upload(
                state.pool, state.settings, folder, spool, upload_name, options, None
            )
            result = await run()
        except Problem as problem:
            return refused(problem.detail, [(e.field, e.message) for e in problem.errors])
        campaign = str(result["campaign"])
        await _audit(
            state,
            session,
            "load",
            campaign,
            {k: result[k] for k in ("rows_read", "loaded", "duplicates", "rejected", "suppressed")},
        )
        return render(
            request,
            "loaded.html",
            {"result": result, "url": _campaign_url(campaign)},
            session,
            status=201,
        )


async def suppress_add(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /suppression/add: numbers (one a line, or separated by commas) onto a list."""
    state = _state(request)
    form = request[FORM_KEY]
    try:
        name = list_name("list", _field(form, "list").strip())
    except SpecError as error:
        return _back(request, "/suppression", f"not done: {error}")
    numbers = [
        value.strip()
        for line in _field(form, "numbers").splitlines()
        for value in line.split(",")
        if value.strip()
    ]
    if not numbers:
        return _back(request, "/suppression", "not done: give at least one number")
    if any(is_file_argument(number) for number in numbers):
        return _back(request, "/suppression", "not done: give numbers, not file names")
    try:
        reason = reason_text(_field(form, "reason").strip() or None)
        summary = await add_to_list(state.pool, numbers, name, reason)
    except SpecError as error:
        return _back(request, "/suppression", f"not done: {error}")
    except RefusedValues as error:
        return _back(request, "/suppression", f"not done: {error}")
    await _audit(state, session, "suppress-add", None, {"list": name, "added": summary.added})
    return _back(request, "/suppression", f"{summary.added:,} numbers added to list {name}")


async def suppress_remove(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /suppression/remove: one number off a list."""
    state = _state(request)
    form = request[FORM_KEY]
    name = _field(form, "list").strip()
    number = _field(form, "number").strip()
    try:
        summary = await remove_from_list(state.pool, [number], name)
    except RefusedValues as error:
        return _back(request, "/suppression", f"not done: {error}")
    await _audit(
        state, session, "suppress-remove", None, {"list": name, "removed": summary.removed}
    )
    return _back(request, "/suppression", f"{len(summary.removed)} number removed from list {name}")


async def redeliver(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /webhooks/redeliver: `id` (one delivery) or `failed` (every failed one), as
    `campaign webhook redeliver` does."""
    state = _state(request)
    form = request[FORM_KEY]
    text = _field(form, "id").strip()
    if text:
        if not text.isascii() or not text.isdigit() or int(text) >= 2**63:
            return _back(request, "/webhooks", "not done: no such delivery")
        ids = [int(text)]
    else:
        rows = await webhook_queries.webhook_deliveries(state.pool, failed_only=True, limit=10_000)
        ids = [row.id for row in rows]
    again = await webhook_queries.redeliver_webhook_deliveries(state.pool, ids)
    await _audit(state, session, "webhook-redeliver", None, {"deliveries": again[:100]})
    return _back(request, "/webhooks", f"{len(again)} deliveries will be sent again")


# --- Live -------------------------------------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    """GET /events?campaign=NAME: the snapshots of the campaign (or, without `campaign`, of the
    campaigns list) as Server-Sent Events, from the hub; 401 without a session. The stream ends
    when the session would expire (it does not keep the session alive: a page left open is not
    a person at it), and the page then asks for a login."""
    state = _state(request)
    found = await security.peek_session(request, state.pool, state.settings.dashboard_idle_s)
    if found is None:
        return web.Response(status=401, text="log in first\n")
    key = request.query.get("campaign") or None
    if key is not None and await queries.campaign_by_name(state.pool, key) is None:
        return web.Response(status=404, text="no such campaign\n")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + found[1]
    with contextlib.suppress(ConnectionResetError):
        async with state.hub.watch(key) as queue:
            await response.write(b"retry: 2000\n\n")
            while loop.time() < ends_at:
                try:
                    async with asyncio.timeout(min(SSE_KEEPALIVE_S, ends_at - loop.time())):
                        snapshot = await queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if snapshot == CLOSED:
                    break  # the server stops
                data = json.dumps(snapshot, separators=(",", ":"), default=str)
                await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
    return response


def routes(app: web.Application) -> None:
    """Add the dashboard's routes to `app` (at /)."""
    router = app.router
    router.add_get("/login", login_page)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_get("/", page(campaigns_page))
    router.add_get("/new", page(new_page))
    router.add_post("/new", action(new_campaign, multipart=True))
    router.add_get("/suppression", page(suppression_page))
    router.add_post("/suppression/add", action(suppress_add))
    router.add_post("/suppression/remove", action(suppress_remove))
    router.add_get("/webhooks", page(webhooks_page))
    router.add_post("/webhooks/redeliver", action(redeliver))
    router.add_get("/audit", page(audit_page))
    router.add_get("/events", events)
    router.add_get("/campaigns/{name}", page(campaign_page))
    router.add_post("/campaigns/{name}/pause", action(pause))
    router.add_post("/campaigns/{name}/resume", action(resume))
    router.add_post("/campaigns/{name}/cancel", action(cancel))
    router.add_post("/campaigns/{name}/pacing", action(set_pacing))
    router.add_post("/campaigns/{name}/redial", action(redial))
    router.add_get("/campaigns/{name}/redial-count", page(redial_count, json_answer=True))
    router.add_get("/campaigns/{name}/contacts", page(contacts_page))
    router.add_get("/campaigns/{name}/contacts/{contact_id}", page(contact_page))
