"""The dashboard over real HTTP on loopback against real Postgres: login and sessions, CSRF,
read-only keys, every action through the control code with its audit row, escaping, paging."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import urllib.request
from html import escape

import aiohttp
import asyncpg
import pytest
from api_fixtures import serve_process
from clock_fixtures import Clock
from dashboard_fixtures import Browser, Dashboard, numbers_csv, running_dashboard
from yarl import URL

from campaign import queries
from campaign.config import Settings

XSS = "<img src=x onerror=alert(1)>"
SCRIPT_END = "</script>"


async def campaign_status(pool: asyncpg.Pool, name: str) -> str:
    status: str = await pool.fetchval("SELECT status FROM campaigns WHERE name = $1", name)
    return status


async def audit_actions(pool: asyncpg.Pool) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch("SELECT key_name, action, campaign FROM dashboard_audit ORDER BY id")
    return [(r["key_name"], r["action"], r["campaign"]) for r in rows]


async def loaded(browser: Browser, name: str, rows: int = 5, **fields: str) -> str:
    status, text, _ = await browser.upload(name, numbers_csv(rows), **fields)
    assert status == 201, text
    return text


@pytest.fixture
async def dashboard(pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings) -> Dashboard:  # type: ignore[misc]  # an async generator fixture
    async with running_dashboard(pool, status_pool, settings) as running:
        yield running


async def test_a_right_key_logs_in_with_a_strict_http_only_cookie(dashboard: Dashboard) -> None:
    """A right key: 303 to `next`, a session cookie HttpOnly, SameSite=Strict, Path=/ and not
    Secure over http; the page then names the key (escaped) and carries the CSP headers."""
    browser = await dashboard.browser()
    response = await browser.login(dashboard.key, next_path="/audit")
    assert response.headers["Location"] == "/audit"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("campaign_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie
    status, text, page = await browser.get("/")
    assert status == 200
    assert '<strong data-testid="key-name">writer &lt;b&gt;</strong>' in text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"


async def test_next_never_leaves_the_site(dashboard: Dashboard) -> None:
    """A `next` naming another origin sends the login to / instead."""
    browser = await dashboard.browser()
    response = await browser.login(dashboard.key, next_path="//evil.example/x")
    assert response.headers["Location"] == "/"


async def test_wrong_and_revoked_keys_are_refused(dashboard: Dashboard) -> None:
    """A wrong key gets 401 and the form with its error; a revoked key too; and a session
    whose key is revoked ends at once (the next page asks for a login)."""
    browser = await dashboard.browser()
    status, text, _ = await browser.post("/login", data={"key": "cpk_wrong", "next": "/"})
    assert status == 401
    assert 'data-testid="login-error"' in text
    assert 'id="login-form"' in text
    assert "campaign_session" not in browser.session.cookie_jar.filter_cookies(URL(browser.url))
    logged_in = await dashboard.browser(dashboard.key)
    assert (await logged_in.get("/"))[0] == 200
    await queries.revoke_api_key(dashboard.pool, "writer <b>")
    status, _, response = await logged_in.get("/")
    assert status == 303
    assert response.headers["Location"].startswith("/login?next=")
    status, _, _ = await browser.post("/login", data={"key": dashboard.key, "next": "/"})
    assert status == 401


async def test_pages_without_a_session_send_to_the_login(dashboard: Dashboard) -> None:
    """Without a session a page is 303 to /login?next=…, the event stream 401, a POST 403."""
    browser = await dashboard.browser()
    status, _, response = await browser.get("/campaigns/x/contacts?status=failed")
    assert status == 303
    location = URL(response.headers["Location"])
    assert location.path == "/login"
    assert location.query["next"] == "/campaigns/x/contacts?status=failed"
    assert (await browser.get("/events"))[0] == 401
    assert (await browser.post("/campaigns/x/pause", data={"csrf": "x"}))[0] == 403
    status, text, _ = await browser.get("/static/dashboard.js")
    assert status == 200
    assert "EventSource" in text


async def test_secure_cookie_behind_an_https_public_url(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """With CAMPAIGN_PUBLIC_URL on https the session cookie is Secure."""
    secure = settings.model_copy(update={"public_url": "https://dialer.example.com"})
    async with running_dashboard(pool, status_pool, secure) as running:
        browser = await running.browser()
        response = await browser.login(running.key)
        assert "Secure" in response.headers["Set-Cookie"]


async def test_a_session_ends_after_its_idle_time_on_the_database_clock(
    clock: Clock, pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """A request within CAMPAIGN_DASHBOARD_IDLE_S of the last keeps the session; one after
    that much inactivity (on the database's clock) is sent to the login."""
    short = settings.model_copy(update={"dashboard_idle_s": 600.0})
    async with running_dashboard(pool, status_pool, short) as running:
        browser = await running.browser(running.key)
        await clock.advance(590)
        assert (await browser.get("/"))[0] == 200
        await clock.advance(590)
        assert (await browser.get("/"))[0] == 200
        await clock.advance(601)
        status, _, response = await browser.get("/")
        assert status == 303
        assert response.headers["Location"].startswith("/login")


async def test_logout_ends_the_session(dashboard: Dashboard) -> None:
    """After logout the same cookie opens nothing; logout without the CSRF token is 403."""
    browser = await dashboard.browser(dashboard.key)
    token = browser.session.cookie_jar.filter_cookies(URL(browser.url))
    stolen = token["campaign_session"].value
    assert (await browser.post("/logout", data={}))[0] == 403
    status, _, response = await browser.action("/logout")
    assert status == 303
    assert response.headers["Location"] == "/login"
    assert await dashboard.pool.fetchval("SELECT count(*) FROM dashboard_sessions") == 0
    other = await dashboard.browser()
    status, _, _ = await other.get("/", cookies={"campaign_session": stolen})
    assert status == 303


async def test_only_hashes_of_session_tokens_are_stored(dashboard: Dashboard) -> None:
    """The cookie's token is nowhere in the database: only its SHA-256."""
    browser = await dashboard.browser(dashboard.key)
    token = browser.session.cookie_jar.filter_cookies(URL(browser.url))
    value = token["campaign_session"].value
    stored = await dashboard.pool.fetchval("SELECT token_sha256 FROM dashboard_sessions")
    assert len(stored) == 32
    assert value.encode() not in stored


async def test_a_post_without_the_right_csrf_token_changes_nothing(dashboard: Dashboard) -> None:
    """Pause without a token, with a wrong one, or with another session's: 403, still running."""
    browser = await dashboard.browser(dashboard.key)
    await loaded(browser, "calls")
    assert (await browser.post("/campaigns/calls/pause", data={}))[0] == 403
    assert (await browser.action("/campaigns/calls/pause", csrf="0" * 64))[0] == 403
    other = await dashboard.browser(dashboard.key)
    other_token = await other.csrf()
    assert (await browser.action("/campaigns/calls/pause", csrf=other_token))[0] == 403
    assert await campaign_status(dashboard.pool, "calls") == "running"
    assert [a for _, a, _ in await audit_actions(dashboard.pool)] == ["load"]


async def test_a_read_only_key_sees_no_action_and_its_posts_are_refused(
    dashboard: Dashboard,
) -> None:
    """A read-only key's pages have no action form (only the logout), and its POSTs, even with
    its own valid CSRF token, are 403 and change nothing."""
    writer = await dashboard.browser(dashboard.key)
    await loaded(writer, "calls")
    reader = await dashboard.browser(dashboard.read_only_key)
    for path in ("/", "/campaigns/calls", "/campaigns/calls/contacts", "/suppression", "/new"):
        status, text, _ = await reader.get(path)
        assert status == 200, path
        assert 'data-testid="read-only"' in text
        forms = re.findall(r"<form[^>]*>", text)
        assert all('method="get"' in f or 'id="logout-form"' in f for f in forms), (path, forms)
        assert 'id="pause"' not in text
        assert 'id="redial"' not in text
        assert 'id="confirm"' not in text
    token = await reader.csrf()
    for path in ("/campaigns/calls/pause", "/campaigns/calls/cancel", "/suppression/add"):
        assert (await reader.action(path, {"list": "x", "numbers": "+14155550123"}, csrf=token))[
            0
        ] == 403
    assert await campaign_status(dashboard.pool, "calls") == "running"
    assert await dashboard.pool.fetchval("SELECT count(*) FROM suppressions") == 0


async def test_each_action_goes_through_the_control_code_and_is_audited(
    dashboard: Dashboard,
) -> None:
    """Pause, resume, pacing, cancel: each changes the campaign as the CLI would, comes back to
    the campaign page with a flash, and writes an audit row shown at /audit."""
    browser = await dashboard.browser(dashboard.key)
    await loaded(browser, "calls")
    status, _, response = await browser.action("/campaigns/calls/pause")
    assert status == 303
    assert response.headers["Location"] == "/campaigns/calls"
    assert await campaign_status(dashboard.pool, "calls") == "paused"
    status, text, _ = await browser.get("/campaigns/calls")
    assert 'data-testid="flash"' in text
    assert "is paused" in text
    assert '<span data-testid="status" data-field="status">paused</span>' in text
    await browser.action("/campaigns/calls/resume")
    assert await campaign_status(dashboard.pool, "calls") == "running"
    await browser.action(
        "/campaigns/calls/pacing", {"cps": "3.5", "priority": "7", "max_concurrent_calls": ""}
    )
    row = await dashboard.pool.fetchrow(
        "SELECT calls_per_second, priority FROM campaigns WHERE name = 'calls'"
    )
    assert row is not None
    assert (row["calls_per_second"], row["priority"]) == (3.5, 7)
    status, _, _ = await browser.action("/campaigns/calls/pacing", {"cps": "fast"})
    assert status == 303
    assert (
        await dashboard.pool.fetchval("SELECT calls_per_second FROM campaigns WHERE name = 'calls'")
        == 3.5
    )
    await browser.action("/campaigns/calls/cancel")
    assert await campaign_status(dashboard.pool, "calls") == "cancelled"
    assert (
        await dashboard.pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'cancelled'")
        == 5
    )
    actions = await audit_actions(dashboard.pool)
    assert actions == [
        ("writer <b>", "load", "calls"),
        ("writer <b>", "pause", "calls"),
        ("writer <b>", "resume", "calls"),
        ("writer <b>", "pacing", "calls"),
        ("writer <b>", "cancel", "calls"),
    ]
    status, text, _ = await browser.get("/audit")
    assert text.count("<td>writer &lt;b&gt;</td>") == 5
    assert "<td>cancel</td>" in text


async def test_bulk_redial_of_the_filter(dashboard: Dashboard) -> None:
    """The count the dialog shows is what the redial then does: failed contacts of the filter
    become pending; the action is audited."""
    browser = await dashboard.browser(dashboard.key)
    await loaded(browser, "calls", rows=6)
    await dashboard.pool.execute(
        "UPDATE contacts SET status = 'failed', attempts = 1 WHERE id IN "
        "(SELECT id FROM contacts ORDER BY id LIMIT 4)"
    )
    status, text, _ = await browser.get("/campaigns/calls/contacts?status=failed")
    assert 'id="redial"' in text
    assert 'data-count-url="/campaigns/calls/redial-count?status=failed"' in text
    async with browser.session.get(
        browser.url + "/campaigns/calls/redial-count?status=failed"
    ) as r:
        assert (await r.json()) == {"count": 4}
    status, _, _response = await browser.action("/campaigns/calls/redial", {"status": "failed"})
    assert status == 303
    assert (
        await dashboard.pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'pending'") == 6
    )
    assert (await audit_actions(dashboard.pool))[-1] == ("writer <b>", "redial", "calls")


async def test_suppression_add_and_remove(dashboard: Dashboard) -> None:
    """Numbers added through the form are on the list (and shown); one removed is gone."""
    browser = await dashboard.browser(dashboard.key)
    await browser.action(
        "/suppression/add", {"list": "dnc", "numbers": "+14155550123\n+14155550124"}
    )
    status, text, _ = await browser.get("/suppression")
    assert "+14155550123" in text
    assert "+14155550124" in text
    await browser.action("/suppression/remove", {"list": "dnc", "number": "+14155550123"})
    numbers = await dashboard.pool.fetch("SELECT destination FROM suppressions ORDER BY 1")
    assert [r["destination"] for r in numbers] == ["+14155550124"]
    status, _, _ = await browser.action("/suppression/add", {"list": "dnc", "numbers": "nope"})
    assert status == 303
    assert await dashboard.pool.fetchval("SELECT count(*) FROM suppressions") == 1
    actions = [a for _, a, _ in await audit_actions(dashboard.pool)]
    assert actions == ["suppress-add", "suppress-remove"]


async def test_failed_webhooks_are_redelivered(dashboard: Dashboard) -> None:
    """A failed delivery is listed at /webhooks; redelivering makes it pending again."""
    browser = await dashboard.browser(dashboard.key)
    await loaded(browser, "calls", rows=1)
    endpoint = await dashboard.pool.fetchval(
        "INSERT INTO webhook_endpoints (url, secret) VALUES ('https://hooks.example.com/x',"
        " 'whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0') RETURNING id"
    )
    delivery = await dashboard.pool.fetchval(
        "INSERT INTO webhook_deliveries (type, campaign_id, endpoint_id, data, status, attempts,"
        " last_error) SELECT 'campaign.completed', id, $1, '{}', 'failed', 8, 'HTTP 500'"
        " FROM campaigns RETURNING id",
        endpoint,
    )
    _status, text, _ = await browser.get("/webhooks")
    assert f'data-delivery-id="{delivery}"' in text
    assert 'id="redeliver-failed"' in text
    await browser.action("/webhooks/redeliver")
    assert (
        await dashboard.pool.fetchval(
            "SELECT status FROM webhook_deliveries WHERE id = $1", delivery
        )
        == "pending"
    )
    assert (await audit_actions(dashboard.pool))[-1][1] == "webhook-redeliver"


async def test_failed_logins_from_one_address_are_refused_for_a_while(
    clock: Clock, pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """After CAMPAIGN_DASHBOARD_LOGIN_FAILURES wrong keys from one address, even the right key
    is refused (429, Retry-After) until the window has passed on the database clock."""
    tight = settings.model_copy(
        update={"dashboard_login_failures": 3, "dashboard_login_window_s": 300.0}
    )
    async with running_dashboard(pool, status_pool, tight) as running:
        browser = await running.browser()
        for _ in range(3):
            assert (await browser.post("/login", data={"key": "cpk_guess"}))[0] == 401
        status, text, response = await browser.post("/login", data={"key": running.key})
        assert status == 429
        assert int(response.headers["Retry-After"]) > 0
        assert "too many failed logins" in text
        await clock.advance(301)
        status, _, _ = await browser.post("/login", data={"key": running.key})
        assert status == 303


async def test_user_text_is_escaped_everywhere(dashboard: Dashboard) -> None:
    """A campaign name, a CSV field and a rejected row holding markup appear as text: the raw
    payloads are never in the HTML, their escaped forms are."""
    browser = await dashboard.browser(dashboard.key)
    name = f"x{XSS}{SCRIPT_END}"
    csv_text = f"phone,name\n+14155550177,{XSS}\n{XSS},{SCRIPT_END}\n"
    status, text, _ = await browser.upload(name, csv_text)
    assert status == 201, text
    contact_id = await dashboard.pool.fetchval("SELECT id FROM contacts")
    pages = [
        text,
        (await browser.get("/"))[1],
        (await browser.get(f"/campaigns/{escape_path(name)}"))[1],
        (await browser.get(f"/campaigns/{escape_path(name)}/contacts/{contact_id}"))[1],
        (await browser.get("/audit"))[1],
    ]
    for page in pages:
        assert XSS not in page
        # The only </script> is that of the page's own script element.
        assert page.count(SCRIPT_END) == 1
        assert page.count("<script") == 1
    assert escape(XSS) in pages[0]  # the rejected row and the name
    assert escape(XSS) in pages[3]  # the contact's field


def escape_path(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


async def test_an_upload_shows_rejected_rows_with_their_lines(dashboard: Dashboard) -> None:
    """A CSV with a bad row is loaded without it, and the answer lists the row with its line;
    bad settings are a 422 page naming the option, and nothing is loaded."""
    browser = await dashboard.browser(dashboard.key)
    csv_text = "phone,name\n+14155550170,a\nnot-a-number,b\n+14155550171,c\n"
    status, text, _ = await browser.upload("calls", csv_text)
    assert status == 201
    assert 'data-testid="load-summary"' in text
    assert "loaded 2" in text
    assert re.search(r'<td class="line">3</td><td class="value">not-a-number</td>', text)
    status, text, _ = await browser.upload("other", csv_text, settings_json='{"max-attempts": 0}')
    assert status == 422
    assert "max-attempts" in text
    status, text, _ = await browser.upload("other", csv_text, settings_json="[1]")
    assert status == 422
    assert await dashboard.pool.fetchval("SELECT count(*) FROM campaigns") == 1


async def test_contacts_pages_are_stable_and_filtered(dashboard: Dashboard) -> None:
    """Keyset pages of 50 cover every contact once, in id order, even when contacts change
    status between pages; the status and number filters keep to what matches."""
    browser = await dashboard.browser(dashboard.key)
    await loaded(browser, "calls", rows=120)
    seen: list[int] = []
    path: str | None = "/campaigns/calls/contacts"
    pages = 0
    while path is not None:
        status, text, _ = await browser.get(path)
        assert status == 200
        seen += [int(i) for i in re.findall(r'data-contact-id="(\d+)"', text)]
        found = re.search(r'<a id="next-page" href="([^"]+)"', text)
        path = (
            None
            if found is None
            else "/campaigns/calls/contacts" + found.group(1).replace("&amp;", "&")
        )
        if pages == 0:
            await dashboard.pool.execute("UPDATE contacts SET status = 'failed' WHERE id % 2 = 0")
        pages += 1
    ids = [r["id"] for r in await dashboard.pool.fetch("SELECT id FROM contacts ORDER BY id")]
    assert seen == ids
    assert pages == 3
    status, text, _ = await browser.get("/campaigns/calls/contacts?status=failed")
    shown = [int(i) for i in re.findall(r'data-contact-id="(\d+)"', text)]
    assert shown
    assert all(i % 2 == 0 for i in shown)
    status, text, _ = await browser.get("/campaigns/calls/contacts?q=5551005")
    assert re.findall(r"<td>(\+1[0-9]+)</td>", text) == ["+14155551005"]


async def test_a_contact_timeline(dashboard: Dashboard) -> None:
    """A contact's page lists its requests and callbacks in time order."""
    browser = await dashboard.browser(dashboard.key)
    await loaded(browser, "calls", rows=1)
    contact = await dashboard.pool.fetchrow("SELECT id, campaign_id, destination FROM contacts")
    assert contact is not None
    request_id = await dashboard.pool.fetchval(
        "INSERT INTO dial_requests (campaign_id, worker_id, destinations, outcome, http_status,"
        " replied_at, latency_ms) VALUES ($1, 'w', ARRAY[$2], 'fired', 201, now(), 120)"
        " RETURNING id",
        contact["campaign_id"],
        contact["destination"],
    )
    await dashboard.pool.execute(
        "INSERT INTO call_events (event, campaign_id, contact_id, dial_request_id, call_status,"
        " payload, dedupe_key) VALUES ('hangup', $1, $2, $3, 'busy', '{\"CallStatus\": \"busy\"}',"
        " 'k1')",
        contact["campaign_id"],
        contact["id"],
        request_id,
    )
    status, text, _ = await browser.get(f"/campaigns/calls/contacts/{contact['id']}")
    assert status == 200
    timeline = text[text.index('<ol id="timeline">') :]
    assert timeline.index("[request] attempt 1: request fired") < timeline.index(
        "[callback] callback hangup: busy"
    )
    status, text, _ = await browser.get("/campaigns/calls")
    assert 'data-field="latency.requests">1<' in text


async def read_snapshots(browser: Browser, path: str, count: int) -> list[str]:
    """The data of the first `count` snapshot events of the stream at `path`."""
    found: list[str] = []
    async with browser.session.get(browser.url + path) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event = None
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                found.append(line[6:])
                if len(found) == count:
                    return found
    return found


async def test_two_pages_share_each_snapshot(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """Two pages watching one campaign get the same snapshots from one computation each
    (the hub counts them): not one per page."""
    paced = settings.model_copy(update={"dashboard_refresh_s": 0.3, "dashboard_poll_s": 0.3})
    async with running_dashboard(pool, status_pool, paced) as running:
        first = await running.browser(running.key)
        second = await running.browser(running.key)
        await loaded(first, "calls")
        before = running.hub.computations
        one, two = await asyncio.gather(
            read_snapshots(first, "/events?campaign=calls", 3),
            read_snapshots(second, "/events?campaign=calls", 3),
        )
        assert one[-1] == two[-1] or one[-2] == two[-2] or one[-1] == two[-2]
        assert '"name":"calls"' in one[0]
        # Each page got 3; together they cost at most 4 computations, not 6.
        assert running.hub.computations - before <= 4
        # The pages gone, the hub stops computing (once it notices, at its next write).
        async with asyncio.timeout(5):
            while running.hub.watching:  # noqa: ASYNC110  # polls a count no event reports
                await asyncio.sleep(0.05)
        stopped_at = running.hub.computations
        await asyncio.sleep(1.0)
        assert running.hub.computations == stopped_at


async def test_a_page_opened_after_an_action_never_shows_the_state_before_it(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """While another page keeps a campaign's snapshots coming, a pause on the dashboard and
    the campaign page opened after it: that page's first snapshot already says paused (before,
    it got the hub's last snapshot, from before the pause, and showed "running" again)."""
    paced = settings.model_copy(update={"dashboard_refresh_s": 0.5, "dashboard_poll_s": 30.0})
    async with running_dashboard(pool, status_pool, paced) as running:
        watcher = await running.browser(running.key)
        actor = await running.browser(running.key)
        await loaded(actor, "calls")
        stream = await watcher.session.get(running.url + "/events?campaign=calls")
        await stream.content.readuntil(b"event: snapshot")
        status, text, _ = await actor.action("/campaigns/calls/pause")
        assert status == 303, text
        snapshot = json.loads((await read_snapshots(actor, "/events?campaign=calls", 1))[0])
        stream.release()
    assert snapshot["status"] == "paused"


async def test_an_open_page_does_not_hold_the_server_when_it_stops(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """Stopping the server (what SIGTERM does: the runner's cleanup) while a page's /events
    stream is open ends the stream at once, and the server stops within seconds; before,
    aiohttp waited its 60 s for the stream's handler."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with running_dashboard(pool, status_pool, settings) as running:
            page = Browser(running.url, session)
            await page.login(running.key)
            await loaded(page, "calls")
            stream = await session.get(running.url + "/events?campaign=calls")
            await stream.content.readuntil(b"event: snapshot")
            stopping_at = loop.time()
        stopped_s = loop.time() - stopping_at
        await asyncio.wait_for(stream.content.read(), 5)  # the stream has ended
        stream.release()
    assert stopped_s < 5


async def test_a_change_wakes_the_stream_before_the_poll(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """With a 30 s fallback poll, a pause made on the dashboard (which NOTIFYs) reaches an open
    stream within a couple of seconds."""
    slow = settings.model_copy(update={"dashboard_refresh_s": 0.2, "dashboard_poll_s": 30.0})
    async with running_dashboard(pool, status_pool, slow) as running:
        browser = await running.browser(running.key)
        await loaded(browser, "calls")

        async def pause_soon() -> None:
            await asyncio.sleep(0.5)
            await browser.action("/campaigns/calls/pause")

        async with asyncio.timeout(5):
            snapshots, _ = await asyncio.gather(
                read_snapshots(browser, "/events?campaign=calls", 2), pause_soon()
            )
        assert '"status":"running"' in snapshots[0]
        assert '"status":"paused"' in snapshots[1]


def test_campaign_serve_prints_and_serves_the_dashboard(
    campaign_command: list[str], cli_env: dict[str, str]
) -> None:
    """`campaign serve` prints the dashboard's URL, and serves its login page there."""
    with serve_process(campaign_command, cli_env) as (base, process):
        with urllib.request.urlopen(base + "/login", timeout=5) as response:
            page = response.read().decode()
            assert 'id="login-form"' in page
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
    assert f"dashboard: {base}/" in out
