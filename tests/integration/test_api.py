"""The HTTP API (/api/v1/) over loopback against a real database: keys, problem details, loads,
idempotency, the campaign's controls, pages of contacts, export, suppression, responses."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from api_fixtures import NEW_CAMPAIGN, Api, numbers_csv, running_api, upload
from plivo_fixtures import AUTH_ID, AUTH_TOKEN, simulator_config
from pydantic import SecretStr

from campaign import control, queries
from campaign.config import Settings
from campaign.export import export_campaign
from campaign.simulator import running_simulator


@pytest.fixture
async def api(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[Api]:
    async with running_api(pool, status_pool, settings) as running:
        yield running


async def _create(api: Api, name: str, csv_text: str, **settings: object) -> dict[str, Any]:
    status, body, _ = await api.call(
        "POST", "/campaigns", data=upload({**NEW_CAMPAIGN, "name": name, **settings}, csv_text)
    )
    assert status == 201, body
    assert isinstance(body, dict)
    return body


# --- keys -------------------------------------------------------------------------------------


async def test_requests_without_a_valid_key_get_401_problems(api: Api, pool: asyncpg.Pool) -> None:
    """No header, another scheme, an unknown key and a revoked key are each a 401 problem that
    never repeats the key sent."""
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer cpk_wrong"}):
        async with api.session.get(api.url + "/campaigns", headers=headers) as response:
            assert response.status == 401
            assert response.content_type == "application/problem+json"
            body = await response.json(content_type=None)
            assert body["status"] == 401
            assert body["type"].endswith("unauthorized")
            assert "cpk_wrong" not in json.dumps(body)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    await queries.revoke_api_key(pool, "tests")
    status, body, _ = await api.call("GET", "/campaigns")
    assert status == 401
    assert api.key not in json.dumps(body)


async def test_a_read_only_key_reads_but_cannot_write(api: Api) -> None:
    """A read-only key lists campaigns (200) and gets 403 for any POST, before anything runs."""
    status, body, _ = await api.call("GET", "/campaigns", key=api.read_only_key)
    assert status == 200
    assert body == {"campaigns": []}
    status, body, _ = await api.call(
        "POST",
        "/campaigns",
        key=api.read_only_key,
        data=upload({**NEW_CAMPAIGN, "name": "nope"}, numbers_csv(2)),
    )
    assert status == 403
    assert body["type"].endswith("forbidden")
    status, _, _ = await api.call("GET", "/campaigns/nope", key=api.read_only_key)
    assert status == 404


async def test_keys_never_reach_the_log(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    """Requests with good, bad and read-only keys, and failures, log no key."""
    caplog.set_level(logging.DEBUG)
    await api.call("GET", "/campaigns")
    await api.call("GET", "/campaigns", key="cpk_not-a-key")
    await api.call("POST", "/campaigns/x/pause", key=api.read_only_key)
    await api.call(
        "POST",
        "/campaigns",
        data=b"garbage",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    )
    for key in (api.key, api.read_only_key, "cpk_not-a-key"):
        assert key not in caplog.text


# --- loads ------------------------------------------------------------------------------------


async def test_create_from_a_csv_answers_the_summary_and_the_rejected_rows(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A new campaign from a CSV with a duplicate and bad rows: the summary's counts, each
    rejected row with its line and reason, all of them at the rejects URL, and the campaign's
    figures the same as `campaign status --json`."""
    text = numbers_csv(5, bad=3) + "+14155551000,again\n"
    body = await _create(api, "first", text, **{"calls-per-second": 2, "paused": True})
    assert body["loaded"] == 5
    assert body["duplicates"] == 1
    assert body["rejected"] == 3
    assert body["suppressed"] == 0
    assert body["status"] == "paused"
    rejected = body["rejected_rows"]
    assert [row["line"] for row in rejected] == [7, 8, 9]
    assert all(row["reason"] for row in rejected)
    status, rejects_csv, response = await api.call(
        "GET", str(body["rejects_url"]).removeprefix("/api/v1")
    )
    assert status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(rejects_csv)))
    assert rows[0] == ["line", "value", "reason"]
    assert [row[0] for row in rows[1:]] == ["7", "8", "9"]
    status, detail, _ = await api.call("GET", "/campaigns/first")
    assert status == 200
    expected = await control.status_json(pool, "first", account_max_concurrent_calls=None)
    assert expected is not None
    assert {key: detail[key] for key in expected} == json.loads(json.dumps(expected))
    assert detail["settings"]["calls-per-second"] == 2
    assert detail["settings"]["from"] == "+14155550100"


async def test_more_than_a_thousand_rejects_are_cut_inline_but_all_at_the_url(api: Api) -> None:
    """1,200 bad rows: 1,000 inline, 1,200 at the rejects URL."""
    body = await _create(api, "many-bad", numbers_csv(1, bad=1200))
    assert body["rejected"] == 1200
    assert len(body["rejected_rows"]) == 1000
    _, text, _ = await api.call("GET", str(body["rejects_url"]).removeprefix("/api/v1"))
    assert len(list(csv.reader(io.StringIO(text)))) == 1201


async def test_bad_settings_get_422_with_the_clis_words(api: Api) -> None:
    """A value out of range (click's own message), an unknown option, a file option, a rule of
    specs.py (no caller ID): each a 422 naming the field."""
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"batch-size": 0}, "batch-size", "0 is not in the range 1<=x<=1000"),
        ({"no-such-thing": 1}, "no-such-thing", "no such option of `campaign load`"),
        ({"from-file": "/etc/passwd"}, "from-file", "is not available over the API"),
        ({"track-calls": "yes"}, "track-calls", "must be true or false"),
    ]
    for extra, field, words in cases:
        status, body, response = await api.call(
            "POST",
            "/campaigns",
            data=upload({**NEW_CAMPAIGN, "name": "bad", **extra}, numbers_csv(2)),
        )
        assert status == 422, body
        assert response.content_type == "application/problem+json"
        assert body["errors"][0]["field"] == field
        assert words in body["errors"][0]["message"]
    status, body, _ = await api.call(
        "POST",
        "/campaigns",
        data=upload({"name": "no-from", "answer-url": "https://e.com/a"}, numbers_csv(2)),
    )
    assert status == 422
    assert body["errors"][0]["field"] == "from"
    status, _, _ = await api.call("GET", "/campaigns/bad")
    assert status == 404


async def test_malformed_requests_get_problems_never_500(api: Api) -> None:
    """Garbage bodies, wrong types, bad cursors and limits, unknown paths: 4xx problems."""
    cases: list[tuple[str, str, dict[str, object]]] = [
        ("POST", "/campaigns", {"data": b"\x00\xff garbage"}),
        (
            "POST",
            "/campaigns",
            {
                "data": b"--zz\r\nnonsense",
                "headers": {"Content-Type": "multipart/form-data; boundary=zz"},
            },
        ),
        ("POST", "/campaigns", {"data": upload(None, "phone\n+14155550101\n")}),
        ("POST", "/campaigns", {"data": upload({"name": "x"}, "")}),
        (
            "POST",
            "/campaigns/x/pacing",
            {"data": b"[1, 2", "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", "/campaigns/x/pacing", {"json": [1, 2]}),
        ("POST", "/campaigns/x/pacing", {"json": {"batch-size": {"a": 1}}}),
        ("GET", "/campaigns/x/contacts?cursor=%%%", {}),
        ("GET", "/campaigns/x/contacts?limit=0", {}),
        ("GET", "/campaigns/x/contacts?limit=99999999999999999999", {}),
        ("GET", "/campaigns/x/contacts/abc", {}),
        ("GET", "/campaigns/x/contacts/99999999999999999999999", {}),
        ("GET", "/nothing/here", {}),
        ("PUT", "/campaigns", {}),
        ("GET", "/loads/123456/rejects", {}),
        ("POST", "/suppression-lists/default/numbers", {"json": {"numbers": "+14155550101"}}),
        ("POST", "/campaigns/x/pause", {"headers": {"Idempotency-Key": ""}}),
    ]
    for method, path, kwargs in cases:
        status, body, response = await api.call(method, path, **kwargs)  # type: ignore[arg-type]
        assert 400 <= status < 500, (method, path, status, body)
        assert response.content_type == "application/problem+json", (method, path)
        assert body["status"] == status
        assert body["title"]
        assert body["detail"]
        assert "Traceback" not in json.dumps(body)


async def test_add_a_file_to_a_campaign(api: Api) -> None:
    """POST …/files loads into the campaign; a setting of a new campaign is refused with the
    CLI's words; the campaign's total grows."""
    await _create(api, "grow", numbers_csv(3))
    status, body, _ = await api.call(
        "POST", "/campaigns/grow/files", data=upload(None, numbers_csv(4, start=2000))
    )
    assert status == 200
    assert body["loaded"] == 4
    assert body["campaign"] == "grow"
    status, body, _ = await api.call(
        "POST",
        "/campaigns/grow/files",
        data=upload({"calls-per-second": 3}, numbers_csv(1, start=3000)),
    )
    assert status == 422
    assert "--calls-per-second" in body["detail"]
    status, body, _ = await api.call(
        "POST", "/campaigns/none/files", data=upload(None, numbers_csv(1))
    )
    assert status == 422
    assert "no campaign named 'none'" in body["detail"]
    _, detail, _ = await api.call("GET", "/campaigns/grow")
    assert detail["total"] == 7


# --- idempotency ------------------------------------------------------------------------------


async def test_a_retried_load_loads_once_and_gets_the_first_answer(
    api: Api, pool: asyncpg.Pool
) -> None:
    """The same Idempotency-Key and body: the first answer again, marked replayed, and no second
    load; the same key with another body: 422."""
    key = {"Idempotency-Key": "load-1"}
    settings = {**NEW_CAMPAIGN, "name": "once"}
    first = await api.call("POST", "/campaigns", data=upload(settings, numbers_csv(3)), headers=key)
    again = await api.call("POST", "/campaigns", data=upload(settings, numbers_csv(3)), headers=key)
    assert first[0] == again[0] == 201
    assert first[1] == again[1]
    assert again[2].headers["Idempotent-Replayed"] == "true"
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 3
    other = await api.call(
        "POST", "/campaigns/once/files", data=upload(None, numbers_csv(1, start=5000)), headers=key
    )
    assert other[0] == 422
    assert other[1]["type"].endswith("idempotency-key-reused")
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 3


async def test_an_idempotency_key_expires_after_a_day(api: Api, pool: asyncpg.Pool) -> None:
    """A key whose record is older than 24 hours is taken afresh."""
    key = {"Idempotency-Key": "pause-1"}
    await _create(api, "aging", numbers_csv(1))
    assert (await api.call("POST", "/campaigns/aging/pause", headers=key))[0] == 200
    await pool.execute("UPDATE api_idempotency SET created_at = now() - interval '25 hours'")
    status, body, response = await api.call("POST", "/campaigns/aging/resume", headers=key)
    assert status == 200
    assert body["status"] == "running"
    assert "Idempotent-Replayed" not in response.headers


# --- controls ---------------------------------------------------------------------------------


async def test_pause_resume_cancel_and_pacing(api: Api, pool: asyncpg.Pool) -> None:
    """The controls change the campaign as the CLI does, and refuse what the CLI refuses."""
    await _create(api, "ctl", numbers_csv(4))
    status, body, _ = await api.call("POST", "/campaigns/ctl/pause")
    assert status == 200
    assert body["status"] == "paused"
    status, body, _ = await api.call("POST", "/campaigns/ctl/resume")
    assert status == 200
    assert body["status"] == "running"
    status, body, _ = await api.call(
        "POST", "/campaigns/ctl/pacing", json={"calls-per-second": 7, "batch-size": 20}
    )
    assert status == 200
    assert body["settings"]["calls-per-second"] == 7
    assert body["settings"]["batch-size"] == 20
    status, body, _ = await api.call("POST", "/campaigns/ctl/pacing", json={})
    assert status == 422
    assert "say what to change" in body["detail"]
    status, body, _ = await api.call(
        "POST", "/campaigns/ctl/pacing", json={"max-concurrent-calls": 3}
    )
    assert status == 422
    assert body["errors"][0]["field"] == "max-concurrent-calls"
    status, body, _ = await api.call("POST", "/campaigns/ctl/cancel", json={"cancel_queued": True})
    assert status == 422
    assert "PLIVO_AUTH_ID" in body["detail"]
    status, body, _ = await api.call("POST", "/campaigns/ctl/cancel")
    assert status == 200
    assert body["cancelled_contacts"] == 4
    assert body["campaign"]["status"] == "cancelled"
    status, body, _ = await api.call("POST", "/campaigns/ctl/resume")
    assert status == 409
    assert "is cancelled" in body["detail"]
    status, body, _ = await api.call("POST", "/campaigns/nobody/pause")
    assert status == 404


# --- contacts ---------------------------------------------------------------------------------


async def _all_pages(api: Api, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, body, _ = await api.call("GET", f"{path}&cursor={cursor}")
        assert status == 200, body
        found.extend(body["contacts"])
        if body["next_cursor"] is None:
            return found
        cursor = body["next_cursor"]


async def test_contacts_page_by_an_opaque_cursor_stable_while_contacts_change(
    api: Api, pool: asyncpg.Pool
) -> None:
    """250 contacts in pages of 100: each once, in load order; contacts that change status and a
    file added between pages neither repeat nor skip one; filters by status and outcome."""
    await _create(api, "pages", numbers_csv(250), paused=True)
    status, first, _ = await api.call("GET", "/campaigns/pages/contacts?limit=100")
    assert status == 200
    assert len(first["contacts"]) == 100
    # Meanwhile: contacts of the first page change, and more are loaded.
    await pool.execute(
        "UPDATE contacts SET status = 'failed' "
        "WHERE id IN (SELECT id FROM contacts ORDER BY id LIMIT 50)"
    )
    await api.call("POST", "/campaigns/pages/files", data=upload(None, numbers_csv(10, start=5000)))
    rest = await _all_pages(api, "/campaigns/pages/contacts?limit=100")
    ids = [contact["id"] for contact in rest]
    assert len(ids) == len(set(ids)) == 260
    assert ids == sorted(ids)
    status, body, _ = await api.call("GET", "/campaigns/pages/contacts?status=failed&limit=1000")
    assert len(body["contacts"]) == 50
    assert body["next_cursor"] is None
    status, body, _ = await api.call("GET", "/campaigns/pages/contacts?outcome=failed&limit=1000")
    assert {c["outcome"] for c in body["contacts"]} == {"failed"}
    assert len(body["contacts"]) == 50
    contact = rest[0]
    assert contact["destination"] == "+14155551000"
    assert contact["line_number"] == 2
    assert contact["fields"] == {"name": "person 0"}


async def test_one_contact_with_its_attempts_and_call_events(api: Api, pool: asyncpg.Pool) -> None:
    """A contact's own answer holds its outcome, its attempts and its call events (empty before
    a call); an unknown id is a 404."""
    await _create(api, "one", numbers_csv(2))
    contact_id = await pool.fetchval("SELECT min(id) FROM contacts")
    status, body, _ = await api.call("GET", f"/campaigns/one/contacts/{contact_id}")
    assert status == 200
    assert body["id"] == contact_id
    assert body["attempts_made"] == []
    assert body["call_events"] == []
    status, _, _ = await api.call("GET", f"/campaigns/one/contacts/{contact_id + 100}")
    assert status == 404


# --- export -----------------------------------------------------------------------------------


async def test_export_is_campaign_exports_csv_and_ndjson_on_request(
    api: Api, pool: asyncpg.Pool
) -> None:
    """The CSV is byte for byte `campaign export`'s; NDJSON has one object per contact with the
    same columns."""
    await _create(api, "out", numbers_csv(30) + "=HYPERLINK(1),x\n")
    expected = io.StringIO()
    await export_campaign(pool, "out", expected)
    status, text, response = await api.call("GET", "/campaigns/out/export")
    assert status == 200
    assert response.content_type == "text/csv"
    assert text.replace("\r\n", "\n") == expected.getvalue().replace("\r\n", "\n")
    status, text, response = await api.call(
        "GET", "/campaigns/out/export", headers={"Accept": "application/x-ndjson"}
    )
    assert status == 200
    assert response.content_type == "application/x-ndjson"
    lines = [json.loads(line) for line in text.splitlines()]
    header = next(csv.reader(io.StringIO(expected.getvalue())))
    assert len(lines) == 30
    assert list(lines[0]) == header
    status, body, _ = await api.call("GET", "/campaigns/missing/export")
    assert status == 404
    assert body["type"].endswith("not-found")


# --- suppression and responses ----------------------------------------------------------------


async def test_suppression_lists_add_list_remove(api: Api) -> None:
    """Numbers go on a list and off it as `campaign suppress` puts them; a bad one refuses the
    whole request naming it; a file name is never opened."""
    status, body, _ = await api.call(
        "POST",
        "/suppression-lists/dnc/numbers",
        json={
            "numbers": ["+14155550123", "(415) 555-0124"],
            "default-region": "US",
            "reason": "asked",
        },
    )
    assert status == 200
    assert body["added"] == 2
    status, body, _ = await api.call("GET", "/suppression-lists")
    assert body["lists"][0]["list"] == "dnc"
    assert body["lists"][0]["numbers"] == 2
    status, body, _ = await api.call("GET", "/suppression-lists/dnc")
    assert status == 200
    assert [n["destination"] for n in body["numbers"]] == [
        "+14155550123",
        "+14155550124",
    ]
    status, body, _ = await api.call(
        "POST", "/suppression-lists/dnc/numbers", json={"numbers": ["+14155550125", "bogus"]}
    )
    assert status == 422
    assert body["errors"][0]["field"] == "numbers/2"
    status, body, _ = await api.call(
        "POST", "/suppression-lists/dnc/numbers", json={"numbers": ["/etc/passwd"]}
    )
    assert status == 422
    status, body, _ = await api.call("DELETE", "/suppression-lists/dnc/numbers/%2B14155550123")
    assert status == 200
    assert body["removed"] == ["+14155550123"]
    _, body, _ = await api.call("GET", "/suppression-lists/dnc")
    assert [n["destination"] for n in body["numbers"]] == ["+14155550124"]


async def test_responses_page(api: Api, pool: asyncpg.Pool) -> None:
    """The keys pressed on a campaign's calls, with the contact's number, page by page."""
    await _create(api, "keys", numbers_csv(3))
    campaign_id = await pool.fetchval("SELECT id FROM campaigns WHERE name = 'keys'")
    for contact_id in await pool.fetch("SELECT id FROM contacts ORDER BY id"):
        await pool.execute(
            "INSERT INTO responses (campaign_id, contact_id, attempt, digits, meaning) "
            "VALUES ($1, $2, 1, '1', 'confirmed')",
            campaign_id,
            contact_id["id"],
        )
    status, body, _ = await api.call("GET", "/campaigns/keys/responses?limit=2")
    assert status == 200
    assert len(body["responses"]) == 2
    assert body["next_cursor"]
    assert body["responses"][0]["destination"] == "+14155551000"
    _, rest, _ = await api.call(
        "GET", f"/campaigns/keys/responses?limit=2&cursor={body['next_cursor']}"
    )
    assert len(rest["responses"]) == 1
    assert rest["next_cursor"] is None


# --- the API's own pool -----------------------------------------------------------------------


async def test_the_api_never_uses_the_dialing_pool(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """With every connection of the dialing pool held, the API still answers: it reads and
    writes through its own."""
    async with running_api(pool, status_pool, settings) as api:
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        try:
            status, _, _ = await api.call("GET", "/campaigns")
            assert status == 200
            status, _, _ = await api.call(
                "POST", "/campaigns", data=upload({**NEW_CAMPAIGN, "name": "own"}, numbers_csv(2))
            )
            assert status == 201
        finally:
            for connection in held:
                await pool.release(connection)


async def test_a_retry_while_the_first_request_runs_gets_409(api: Api, pool: asyncpg.Pool) -> None:
    """A key taken by a request that has not answered yet: a retry gets 409 with Retry-After
    and changes nothing; a request that failed frees its key for the retry."""
    await _create(api, "busy", numbers_csv(1))
    status, _, _ = await api.call(
        "POST", "/campaigns/none/pause", headers={"Idempotency-Key": "k1"}
    )
    assert status == 404
    assert await pool.fetchval("SELECT count(*) FROM api_idempotency") == 0
    status, _, _ = await api.call(
        "POST", "/campaigns/busy/pause", headers={"Idempotency-Key": "k1"}
    )
    assert status == 200
    # As if that request were still running: its key is taken, no answer is kept yet.
    await pool.execute("UPDATE api_idempotency SET status = NULL, content_type = NULL, body = NULL")
    status, body, response = await api.call(
        "POST", "/campaigns/busy/pause", headers={"Idempotency-Key": "k1"}
    )
    assert status == 409
    assert body["type"].endswith("idempotency-key-in-use")
    assert response.headers["Retry-After"] == "1"


async def test_cancel_with_cancel_queued_asks_plivo(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> None:
    """With Plivo's credentials set, cancel with cancel_queued cancels the campaign and then
    the calls Plivo holds queued for it, and answers what that did (none were queued here)."""
    async with running_simulator(simulator_config()) as plivo:
        with_plivo = settings.model_copy(
            update={
                "plivo_auth_id": AUTH_ID,
                "plivo_auth_token": SecretStr(AUTH_TOKEN),
                "plivo_api_url": plivo.base_url,
            }
        )
        async with running_api(pool, status_pool, with_plivo) as api:
            await _create(api, "queued", numbers_csv(3))
            status, body, _ = await api.call(
                "POST", "/campaigns/queued/cancel", json={"cancel_queued": True}
            )
    assert status == 200, body
    assert body["cancelled_contacts"] == 3
    assert body["queued_calls"] == {"cancelled": 0, "left_queue": 0, "without_reply": 0}


# --- inputs found by a review -----------------------------------------------------------------


async def test_a_nul_in_a_rejected_row_is_shown_not_a_server_error(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A phone cell holding a NUL rejects its row; the load commits and answers 201 with the
    row shown as \\0 (PostgreSQL's text cannot hold a NUL: before, the answer was a 500 after
    the load had committed, and a retry loaded again)."""
    body = await _create(api, "nul", numbers_csv(2) + "+1415\x005550000,nul\n")
    assert body["loaded"] == 2
    assert body["rejected"] == 1
    assert body["rejected_rows"][0]["value"] == "+1415\\05550000"
    status, rejects_csv, _ = await api.call("GET", str(body["rejects_url"]).removeprefix("/api/v1"))
    assert status == 200
    assert "\\0" in rejects_csv


async def test_values_the_database_cannot_store_are_refused_not_a_server_error(
    api: Api,
) -> None:
    """A NUL in a campaign's name in the path, and a 300-character suppression "number" (too
    long for a file name, which `suppress add` looks for): 4xx problems, not 500."""
    status, body, _ = await api.call("GET", "/campaigns/a%00b")
    assert status in (404, 422)
    assert body["type"].startswith("urn:campaign:problem:")
    status, body, _ = await api.call(
        "POST", "/suppression-lists/dnc/numbers", json={"numbers": ["1" * 300]}
    )
    assert status == 422
    status, body, _ = await api.call(
        "POST",
        "/suppression-lists/dnc/numbers",
        json={"numbers": ["+14155550101"], "reason": "\ud800"},
    )
    assert 400 <= status < 500


async def test_a_key_whose_request_died_unanswered_is_taken_again_by_the_same_body(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A request whose process died after taking its Idempotency-Key (never answered): after 10
    minutes the same body takes the key again and is answered (before: 409 for 24 hours);
    another body still gets 422."""
    key = {"Idempotency-Key": "died-1"}
    await _create(api, "orphan", numbers_csv(1))
    assert (await api.call("POST", "/campaigns/orphan/pause", headers=key))[0] == 200
    await pool.execute(
        "UPDATE api_idempotency SET status = NULL, content_type = NULL, body = NULL,"
        " created_at = now() - interval '11 minutes'"
    )
    status, _body, response = await api.call("POST", "/campaigns/orphan/pause", headers=key)
    assert status == 200
    assert "Idempotent-Replayed" not in response.headers
    other = await api.call("POST", "/campaigns/orphan/resume", headers=key)
    assert other[0] == 422
