"""POST /api/v1/campaigns/{name}/redial and the contacts listing's filters over loopback, against
a real database: the same filter and the same rules as `campaign redial` (campaign/control.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from api_fixtures import NEW_CAMPAIGN, Api, numbers_csv, running_api, upload

from campaign.config import Settings


@pytest.fixture
async def api(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[Api]:
    async with running_api(pool, status_pool, settings) as running:
        yield running


async def _campaign_with_outcomes(api: Api, pool: asyncpg.Pool) -> list[str]:
    """Campaign `r` of four contacts, settled as a worker and callbacks would leave them: the
    first failed, the second fired and busy (in New York), the third answered with the key
    meaning `confirmed`, the fourth of unknown fate. Their destinations, in order."""
    status, body, _ = await api.call(
        "POST", "/campaigns", data=upload({**NEW_CAMPAIGN, "name": "r"}, numbers_csv(4))
    )
    assert status == 201, body
    rows = await pool.fetch("SELECT id, destination FROM contacts ORDER BY id")
    failed, busy, answered, unknown = (row["id"] for row in rows)
    await pool.execute("UPDATE contacts SET attempts = 1")
    await pool.execute("UPDATE contacts SET status = 'failed' WHERE id = $1", failed)
    await pool.execute(
        "UPDATE contacts SET status = 'fired', call_status = 'busy',"
        " time_zones = '{America/New_York}' WHERE id = $1",
        busy,
    )
    await pool.execute(
        "UPDATE contacts SET status = 'fired', call_status = 'completed' WHERE id = $1", answered
    )
    await pool.execute(
        "INSERT INTO responses (campaign_id, contact_id, attempt, digits, meaning)"
        " SELECT campaign_id, id, 1, '1', 'confirmed' FROM contacts WHERE id = $1",
        answered,
    )
    await pool.execute("UPDATE contacts SET status = 'unknown' WHERE id = $1", unknown)
    await pool.execute("UPDATE campaigns SET status = 'completed'")
    return [row["destination"] for row in rows]


async def _listed(api: Api, query: str) -> list[str]:
    status, body, _ = await api.call("GET", f"/campaigns/r/contacts?{query}")
    assert status == 200, body
    return [contact["destination"] for contact in body["contacts"]]


async def test_the_listing_filters_by_every_field_of_the_filter(
    api: Api, pool: asyncpg.Pool
) -> None:
    """status and outcome (each repeatable), time_zone, response and q pick the contacts the
    redial would consider; the old single status/outcome parameters still work; a bad value is
    a 422 naming the parameter."""
    failed, busy, answered, unknown = await _campaign_with_outcomes(api, pool)
    assert await _listed(api, "status=failed") == [failed]
    assert await _listed(api, "status=failed&status=unknown") == [failed, unknown]
    assert await _listed(api, "outcome=busy&outcome=answered") == [busy, answered]
    assert await _listed(api, "time_zone=America/New_York") == [busy]
    assert await _listed(api, "response=confirmed") == [answered]
    assert await _listed(api, f"q={answered[-4:]}") == [answered]
    assert await _listed(api, f"search={busy[-4:]}") == [busy]
    assert await _listed(api, "status=fired&outcome=answered") == [answered]
    for query, field in (
        ("status=done", "status"),
        ("outcome=gone", "outcome"),
        ("time_zone=Mars/Olympus", "time_zone"),
    ):
        status, body, _ = await api.call("GET", f"/campaigns/r/contacts?{query}")
        assert status == 422
        assert body["errors"][0]["field"] == field


async def test_redial_counts_then_redials_the_settled_contacts(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A dry run counts (matched, redialable) and changes nothing; the redial sets the settled
    contacts the filter matches pending (never the one of unknown fate) and the completed
    campaign runs again; a retry with the same Idempotency-Key replays the first answer and
    redials nothing more."""
    failed, busy, answered, unknown = await _campaign_with_outcomes(api, pool)
    status, body, _ = await api.call("POST", "/campaigns/r/redial", json={"dry_run": True})
    assert status == 200
    assert body == {"matched": 4, "redialable": 3, "redialled": 0, "dry_run": True}
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'pending'") == 0
    key = {"Idempotency-Key": "redial-1"}
    request = {"outcomes": ["busy", "failed", "unknown"], "time_zone": None}
    status, body, _ = await api.call("POST", "/campaigns/r/redial", json=request, headers=key)
    assert status == 200
    assert body == {"matched": 3, "redialable": 2, "redialled": 2, "dry_run": False}
    rows = await pool.fetch("SELECT destination, status FROM contacts ORDER BY id")
    assert [row["status"] for row in rows] == ["pending", "pending", "fired", "unknown"]
    assert await pool.fetchval("SELECT status FROM campaigns") == "running"
    again = await api.call("POST", "/campaigns/r/redial", json=request, headers=key)
    assert again[0] == 200
    assert again[1] == body
    assert again[2].headers["Idempotent-Replayed"] == "true"
    status, body, _ = await api.call("POST", "/campaigns/r/redial", json={"search": answered})
    assert (status, body["redialled"]) == (200, 1)
    rows = await pool.fetch("SELECT destination, status FROM contacts")
    statuses = {row["destination"]: row["status"] for row in rows}
    assert statuses == {failed: "pending", busy: "pending", answered: "pending", unknown: "unknown"}


async def test_redial_refuses_bad_input_a_read_only_key_and_a_cancelled_campaign(
    api: Api, pool: asyncpg.Pool
) -> None:
    """Problem details: 422 naming the field for an unknown field, status, outcome, zone or a
    wrong type; 403 for a read-only key; 404 for no such campaign; 409 naming the fix for a
    cancelled campaign. Nothing changes."""
    await _campaign_with_outcomes(api, pool)
    for request, field in (
        ({"statuses": ["done"]}, "statuses"),
        ({"outcomes": ["gone"]}, "outcomes"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"statuses": "failed"}, "statuses"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"status": ["failed"]}, "status"),
    ):
        status, body, _ = await api.call("POST", "/campaigns/r/redial", json=request)
        assert status == 422, request
        assert body["errors"][0]["field"] == field
    status, _, _ = await api.call("POST", "/campaigns/r/redial", json={}, key=api.read_only_key)
    assert status == 403
    status, _, _ = await api.call("POST", "/campaigns/none/redial", json={})
    assert status == 404
    await pool.execute("UPDATE campaigns SET status = 'cancelled'")
    status, body, _ = await api.call("POST", "/campaigns/r/redial", json={})
    assert status == 409
    assert "campaign load" in body["detail"]
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE status = 'pending'") == 0
