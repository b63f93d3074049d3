"""The /api/v1/ sub-application: its middlewares (problem details, API keys) and its routes."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from campaign.api import campaigns, lists, loads
from campaign.api.answers import json_answer
from campaign.api.auth import API_KEY, authenticate, require_writer
from campaign.api.openapi import openapi_document
from campaign.api.problems import Handler, problem_middleware
from campaign.api.requests import API_POOL, API_SETTINGS
from campaign.config import Settings


@web.middleware
async def key_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request needs a live API key; a read-only key may only read."""
    key = await authenticate(request.app[API_POOL], request.headers.get("Authorization"))
    require_writer(request, key)
    request[API_KEY] = key
    return await handler(request)


async def openapi(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json: the OpenAPI 3.1 document of this API."""
    return json_answer(openapi_document())


def create_api_app(pool: asyncpg.Pool, settings: Settings) -> web.Application:
    """The /api/v1/ sub-application, on its own pool `pool`."""
    app = web.Application(middlewares=[problem_middleware, key_middleware])
    app[API_POOL] = pool
    app[API_SETTINGS] = settings
    router = app.router
    router.add_get("/openapi.json", openapi)
    router.add_get("/campaigns", campaigns.list_campaigns)
    router.add_post("/campaigns", loads.create_campaign)
    router.add_get("/campaigns/{name}", campaigns.get_campaign)
    router.add_post("/campaigns/{name}/files", loads.add_file)
    router.add_post("/campaigns/{name}/pause", campaigns.pause)
    router.add_post("/campaigns/{name}/resume", campaigns.resume)
    router.add_post("/campaigns/{name}/cancel", campaigns.cancel)
    router.add_post("/campaigns/{name}/redial", campaigns.redial)
    router.add_post("/campaigns/{name}/pacing", campaigns.set_pacing)
    router.add_get("/campaigns/{name}/contacts", campaigns.contacts)
    router.add_get("/campaigns/{name}/contacts/{contact_id}", campaigns.contact)
    router.add_get("/campaigns/{name}/responses", campaigns.responses)
    router.add_get("/campaigns/{name}/export", campaigns.export)
    router.add_get("/loads/{load_id}/rejects", loads.rejects)
    router.add_get("/suppression-lists", lists.lists)
    router.add_get("/suppression-lists/{list}", lists.numbers)
    router.add_post("/suppression-lists/{list}/numbers", lists.add)
    router.add_delete("/suppression-lists/{list}/numbers/{number}", lists.remove)
    return app
