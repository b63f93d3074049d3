"""The OpenAPI 3.1 document of /api/v1/: a valid document, served, describing every route the
app has, and every answer of a session of requests conforms to it (status, media type, body)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from api_fixtures import NEW_CAMPAIGN, Api, numbers_csv, running_api, upload
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from campaign.api.app import create_api_app
from campaign.api.openapi import openapi_document
from campaign.config import Settings


@pytest.fixture
async def api(
    pool: asyncpg.Pool, status_pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[Api]:
    async with running_api(pool, status_pool, settings) as running:
        yield running


def test_the_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document."""
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented_and_every_documented_path_is_routed(
    pool_free_settings: Settings,
) -> None:
    """The app's routes and the document's paths are the same set, method for method."""
    app = create_api_app(None, pool_free_settings)  # type: ignore[arg-type]  # routes only
    routed = {
        (re.sub(r"\{(\w+)\}", r"{\1}", route.resource.canonical), route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {
        (path, method)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    assert routed == documented


@pytest.fixture
def pool_free_settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path)


def _operation(method: str, path: str) -> dict[str, Any]:
    """The document's operation for a concrete path (`/campaigns/x/contacts`)."""
    for template, operations in openapi_document()["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method in operations:
            operation: dict[str, Any] = operations[method]
            return operation
    raise AssertionError(f"{method} {path} is not in the document")


def check_answer(method: str, path: str, status: int, content_type: str, body: str) -> None:
    """The answer's status, media type and (JSON) body are what the document says."""
    document = openapi_document()
    responses = _operation(method.lower(), path.split("?")[0])["responses"]
    response = responses.get(str(status), responses["default"])
    assert content_type in response["content"], (method, path, status, content_type)
    if "json" in content_type:
        schema = {
            **response["content"][content_type]["schema"],
            "components": document["components"],
        }
        OAS31Validator(schema).validate(json.loads(body))


async def test_answers_conform_to_the_document(api: Api, pool: asyncpg.Pool) -> None:
    """A session touching every operation, successes and failures: each answer conforms."""
    form = upload({**NEW_CAMPAIGN, "name": "doc"}, numbers_csv(5, bad=2))
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/openapi.json", {}),
        ("POST", "/campaigns", {"data": form}),
        ("POST", "/campaigns", {"data": b"x"}),
        ("GET", "/campaigns", {}),
        ("GET", "/campaigns/doc", {}),
        ("GET", "/campaigns/none", {}),
        ("POST", "/campaigns/doc/files", {"data": upload(None, numbers_csv(2, start=3000))}),
        ("POST", "/campaigns/doc/pause", {}),
        ("POST", "/campaigns/doc/resume", {}),
        ("POST", "/campaigns/doc/pacing", {"json": {"priority": 5}}),
        ("POST", "/campaigns/doc/pacing", {"json": {"priority": 5000}}),
        ("GET", "/campaigns/doc/contacts?limit=2", {}),
        ("GET", "/campaigns/doc/contacts?cursor=nope", {}),
        ("GET", "/campaigns/doc/contacts?status=pending&status=failed&q=555&time_zone=UTC", {}),
        ("GET", "/campaigns/doc/contacts?time_zone=Mars/Olympus", {}),
        ("POST", "/campaigns/doc/redial", {"json": {"statuses": ["failed"], "dry_run": True}}),
        ("POST", "/campaigns/doc/redial", {"json": {"outcomes": ["hung up"]}}),
        ("POST", "/campaigns/doc/redial", {"json": {}}),
        ("GET", "/campaigns/doc/responses", {}),
        ("GET", "/campaigns/doc/export", {}),
        ("GET", "/loads/1/rejects", {}),
        ("GET", "/suppression-lists", {}),
        ("POST", "/suppression-lists/x/numbers", {"json": {"numbers": ["+14155550199"]}}),
        ("GET", "/suppression-lists/x", {}),
        ("DELETE", "/suppression-lists/x/numbers/%2B14155550199", {}),
        ("POST", "/campaigns/doc/cancel", {}),
    ]
    for method, path, kwargs in requests:
        status, _, response = await api.call(method, path, **kwargs)
        check_answer(method, path, status, response.content_type, await response.text())
    contact_id = await pool.fetchval("SELECT min(id) FROM contacts")
    status, _, response = await api.call("GET", f"/campaigns/doc/contacts/{contact_id}")
    check_answer(
        "GET", "/campaigns/doc/contacts/1", status, response.content_type, await response.text()
    )
