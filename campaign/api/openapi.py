"""The OpenAPI 3.1 document of /api/v1/ (served at /api/v1/openapi.json).

The load settings' schema is made from `campaign load`'s own click options (their types, ranges
and choices), so the document cannot drift from what the API accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import click

from campaign import __version__
from campaign.api.answers import PAGE_DEFAULT, PAGE_MAX
from campaign.api.loads import REFUSED_OPTIONS
from campaign.api.options import option_key
from campaign.api.problems import PROBLEM_JSON
from campaign.api.requests import IDEMPOTENCY_KEY_MAX_CHARS
from campaign.cli.campaigns import set_pacing as set_command
from campaign.cli.load import load as load_command
from campaign.contact_filter import OUTCOMES
from campaign.models import CONTACT_STATUSES

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str | list[str]) -> Schema:
    kinds = kind if isinstance(kind, list) else [kind]
    return {"type": [*kinds, "null"]}


def _option_schema(option: click.Option) -> Schema:
    """One option's JSON schema, from its click type."""
    kind = option.type
    schema: Schema
    if option.is_flag:
        schema = {"type": "boolean"}
    elif isinstance(kind, click.IntRange):
        schema = {"type": "integer"}
        if kind.min is not None:
            schema["minimum"] = kind.min
        if kind.max is not None:
            schema["maximum"] = kind.max
    elif isinstance(kind, click.FloatRange):
        schema = {"type": "number"}
        if kind.min is not None:
            schema["minimum"] = kind.min
        if kind.max is not None:
            schema["maximum"] = kind.max
    elif isinstance(kind, click.Choice):
        schema = {"type": "string", "enum": list(kind.choices)}
    else:
        schema = {"type": ["string", "number"]}
    if option.multiple:
        schema = {"oneOf": [schema, {"type": "array", "items": schema}]}
    if option.help:
        schema["description"] = option.help
    return schema


def _options_schema(command: click.Command, refused: frozenset[str]) -> Schema:
    properties: dict[str, Schema] = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        long_names = [opt for opt in param.opts if opt.startswith("--")]
        if not long_names:
            continue
        key = option_key(long_names[0])
        if key in refused or key in ("help", "version"):
            continue
        properties[key] = _option_schema(param)
    return {
        "type": "object",
        "description": f"`campaign {command.name}`'s options by name (snake_case accepted too)",
        "properties": properties,
    }


PROBLEM: Schema = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

PROGRESS: Schema = {
    "type": "object",
    "description": "A campaign's contacts by status and how their calls ended (`campaign list "
    "--json`)",
    "required": ["campaign_id", "campaign", "status", "total", *CONTACT_STATUSES],
    "properties": {
        "campaign_id": {"type": "integer"},
        "campaign": {"type": "string"},
        **{
            status: {"type": "integer", "description": f"contacts {status}"}
            for status in CONTACT_STATUSES
        },
        "status": {
            "type": "string",
            "enum": ["draft", "running", "paused", "completed", "cancelled"],
        },
        "total": {"type": "integer"},
        "created_at": {"type": "string"},
        "answered": {"type": "integer"},
        "busy": {"type": "integer"},
        "no_answer": {"type": "integer"},
        "call_failed": {"type": "integer"},
        "timeout": {"type": "integer"},
        "answer_rate": _nullable("number"),
        "waiting_for_window": {"type": "integer"},
        "responses": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}

CAMPAIGN: Schema = {
    "description": "`campaign status NAME --json`, and the campaign's settings",
    "allOf": [
        _ref("Progress"),
        {
            "type": "object",
            "required": ["settings"],
            "properties": {
                "schedule": {"type": "object"},
                "next_window_opens_at": _nullable("string"),
                "pacing": {"type": "object"},
                "settings": {"type": "object"},
            },
        },
    ],
}

REJECTED_ROW: Schema = {
    "type": "object",
    "required": ["line", "value", "reason"],
    "properties": {
        "line": {"type": "integer"},
        "value": {"type": "string"},
        "reason": {"type": "string"},
    },
}

LOAD: Schema = {
    "type": "object",
    "description": "The load's summary, its first 1,000 rejected rows, and where all are",
    "required": ["campaign", "campaign_id", "loaded", "duplicates", "suppressed", "rejected"],
    "properties": {
        "campaign": {"type": "string"},
        "campaign_id": {"type": "integer"},
        "status": {"type": "string"},
        "rows_read": {"type": "integer"},
        "loaded": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"},
        "suppressed": {"type": "integer"},
        "load_id": {"type": "integer"},
        "rejected_rows": {"type": "array", "items": _ref("RejectedRow"), "maxItems": 1000},
        "rejects_url": {"type": "string"},
        "campaign_url": {"type": "string"},
    },
}

CONTACT: Schema = {
    "type": "object",
    "required": ["id", "destination", "status", "outcome", "attempts"],
    "properties": {
        "id": {"type": "integer"},
        "destination": {"type": "string"},
        "raw_destination": {"type": "string"},
        "line_number": _nullable("integer"),
        "fields": {"type": "object"},
        "status": {"type": "string", "enum": list(CONTACT_STATUSES)},
        "outcome": {"type": "string"},
        "attempts": {"type": "integer"},
        "call_status": _nullable("string"),
        "hangup_cause": _nullable("string"),
        "duration_s": _nullable("integer"),
        "answered_at": _nullable("string"),
        "ended_at": _nullable("string"),
        "machine": _nullable(["boolean", "string"]),
        "request_uuid": _nullable("string"),
        "call_uuid": _nullable("string"),
        "caller_id": _nullable("string"),
        "response": _nullable("string"),
        "last_error": _nullable("string"),
        "updated_at": {"type": "string"},
    },
}

CONTACT_DETAIL: Schema = {
    "allOf": [
        _ref("Contact"),
        {
            "type": "object",
            "required": ["attempts_made", "call_events"],
            "properties": {
                "attempts_made": {"type": "array", "items": {"type": "object"}},
                "call_events": {"type": "array", "items": {"type": "object"}},
            },
        },
    ]
}


def _page(key: str, item: Schema) -> Schema:
    return {
        "type": "object",
        "required": [key, "next_cursor"],
        "properties": {
            key: {"type": "array", "items": item},
            "next_cursor": {
                **_nullable("string"),
                "description": "Pass as `cursor` for the next page; null on the last page",
            },
        },
    }


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    responses: dict[str, Schema],
    *,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    writes: bool = False,
) -> Schema:
    operation: Schema = {
        "summary": summary,
        "responses": {
            **responses,
            "default": {
                "description": "A problem (400, 401, 403, 404, 409, 413, 415, 422, 500)",
                "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
            },
        },
    }
    params = list(parameters or [])
    if writes:
        params.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = body
    return operation


NAME = {"$ref": "#/components/parameters/CampaignName"}
PAGE = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
ESCAPE = {
    "name": "escape_formulas",
    "in": "query",
    "description": "false: write cells as stored (default true, as `campaign export`)",
    "schema": {"type": "string", "enum": ["true", "false"]},
}


def _json_body(schema: Schema, *, required: bool = False) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _upload_body(settings_required: bool) -> Schema:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["settings", "file"] if settings_required else ["file"],
                    "properties": {
                        "settings": _ref("LoadSettings"),
                        "file": {
                            "type": "string",
                            "contentMediaType": "text/csv",
                            "description": "The CSV, as `campaign load` reads it",
                        },
                    },
                },
                "encoding": {"settings": {"contentType": "application/json"}},
            }
        },
    }


@cache
def openapi_document() -> Schema:
    """The document (built once)."""
    campaign_answer = _json(_ref("Campaign"), "The campaign now")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "campaign HTTP API",
            "version": __version__,
            "description": "Bulk-dial Plivo voice campaigns: the CLI's operations over HTTP. "
            "Every request needs `Authorization: Bearer KEY` (`campaign api-key create`). "
            "Every POST takes an `Idempotency-Key`.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"apiKey": []}],
        "paths": {
            "/openapi.json": {
                "get": _operation(
                    "This document", {"200": _json({"type": "object"}, "The OpenAPI document")}
                )
            },
            "/campaigns": {
                "get": _operation(
                    "List campaigns (`campaign list --json`)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["campaigns"],
                                "properties": {
                                    "campaigns": {"type": "array", "items": _ref("Progress")}
                                },
                            },
                            "Every campaign, oldest first",
                        )
                    },
                ),
                "post": _operation(
                    "Create a campaign from a CSV (`campaign load FILE --name …`)",
                    {"201": _json(_ref("Load"), "Loaded")},
                    body=_upload_body(True),
                    writes=True,
                ),
            },
            "/campaigns/{name}": {
                "get": _operation(
                    "One campaign: `campaign status NAME --json` and its settings",
                    {"200": campaign_answer},
                    parameters=[NAME],
                )
            },
            "/campaigns/{name}/files": {
                "post": _operation(
                    "Add a CSV to a campaign (`campaign load FILE --campaign NAME`)",
                    {"200": _json(_ref("Load"), "Loaded")},
                    parameters=[NAME],
                    body=_upload_body(False),
                    writes=True,
                )
            },
            "/campaigns/{name}/pause": {
                "post": _operation(
                    "Pause (`campaign pause`)",
                    {"200": campaign_answer},
                    parameters=[NAME],
                    writes=True,
                )
            },
            "/campaigns/{name}/resume": {
                "post": _operation(
                    "Resume (`campaign resume`)",
                    {"200": campaign_answer},
                    parameters=[NAME],
                    writes=True,
                )
            },
            "/campaigns/{name}/cancel": {
                "post": _operation(
                    "Cancel (`campaign cancel [--cancel-queued]`)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["cancelled_contacts", "campaign"],
                                "properties": {
                                    "cancelled_contacts": {"type": "integer"},
                                    "queued_calls": {"type": "object"},
                                    "campaign": _ref("Campaign"),
                                },
                            },
                            "Cancelled",
                        )
                    },
                    parameters=[NAME],
                    body=_json_body(
                        {
                            "type": "object",
                            "properties": {"cancel_queued": {"type": "boolean"}},
                        }
                    ),
                    writes=True,
                )
            },
            "/campaigns/{name}/redial": {
                "post": _operation(
                    "Dial again the settled contacts a filter matches (`campaign redial`): "
                    "failed, or fired/queued once their call ended, on no suppression list; "
                    "never one in flight or of unknown fate",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["matched", "redialable", "redialled", "dry_run"],
                                "properties": {
                                    "matched": {"type": "integer", "minimum": 0},
                                    "redialable": {"type": "integer", "minimum": 0},
                                    "redialled": {"type": "integer", "minimum": 0},
                                    "dry_run": {"type": "boolean"},
                                },
                            },
                            "How many matched, could be and were dialled again",
                        )
                    },
                    parameters=[NAME],
                    body=_json_body(_ref("ContactFilter")),
                    writes=True,
                )
            },
            "/campaigns/{name}/pacing": {
                "post": _operation(
                    "Change pacing (`campaign set`)",
                    {"200": campaign_answer},
                    parameters=[NAME],
                    body=_json_body(_ref("PacingSettings"), required=True),
                    writes=True,
                )
            },
            "/campaigns/{name}/contacts": {
                "get": _operation(
                    "Contacts with their outcomes, a page at a time (keyset: stable while "
                    "contacts change)",
                    {"200": _json(_page("contacts", _ref("Contact")), "A page")},
                    parameters=[
                        NAME,
                        {
                            "name": "status",
                            "in": "query",
                            "description": "Any of these statuses (repeat the parameter).",
                            "style": "form",
                            "explode": True,
                            "schema": {
                                "type": "array",
                                "items": {"type": "string", "enum": list(CONTACT_STATUSES)},
                            },
                        },
                        {
                            "name": "outcome",
                            "in": "query",
                            "description": "Any of these outcomes (repeat the parameter).",
                            "style": "form",
                            "explode": True,
                            "schema": {
                                "type": "array",
                                "items": {"type": "string", "enum": list(OUTCOMES)},
                            },
                        },
                        {
                            "name": "time_zone",
                            "in": "query",
                            "description": "An IANA time zone among the contact's zones.",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "response",
                            "in": "query",
                            "description": "What the latest keypress meant (--gather).",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "q",
                            "in": "query",
                            "description": "Text the destination contains.",
                            "schema": {"type": "string"},
                        },
                        *PAGE,
                    ],
                )
            },
            "/campaigns/{name}/contacts/{contact_id}": {
                "get": _operation(
                    "One contact with its attempts and call events",
                    {"200": _json(_ref("ContactDetail"), "The contact")},
                    parameters=[
                        NAME,
                        {
                            "name": "contact_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        },
                    ],
                )
            },
            "/campaigns/{name}/responses": {
                "get": _operation(
                    "The keys callees pressed, a page at a time",
                    {"200": _json(_page("responses", {"type": "object"}), "A page")},
                    parameters=[NAME, *PAGE],
                )
            },
            "/campaigns/{name}/export": {
                "get": _operation(
                    "`campaign export`: every contact with its outcome, streamed",
                    {
                        "200": {
                            "description": "CSV, or NDJSON with `Accept: application/x-ndjson`",
                            "content": {
                                "text/csv": {"schema": {"type": "string"}},
                                "application/x-ndjson": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    parameters=[NAME, ESCAPE],
                )
            },
            "/loads/{load_id}/rejects": {
                "get": _operation(
                    "Every rejected row of a load made through the API, as CSV",
                    {
                        "200": {
                            "description": "line,value,reason",
                            "content": {"text/csv": {"schema": {"type": "string"}}},
                        }
                    },
                    parameters=[
                        {
                            "name": "load_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        },
                        ESCAPE,
                    ],
                )
            },
            "/suppression-lists": {
                "get": _operation(
                    "The suppression lists (`campaign suppress list`)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["lists"],
                                "properties": {
                                    "lists": {"type": "array", "items": {"type": "object"}}
                                },
                            },
                            "Every list",
                        )
                    },
                )
            },
            "/suppression-lists/{list}": {
                "get": _operation(
                    "The numbers on a list (`campaign suppress list --list NAME`)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["list", "numbers"],
                                "properties": {
                                    "list": {"type": "string"},
                                    "numbers": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                            "The numbers",
                        )
                    },
                    parameters=[{"$ref": "#/components/parameters/ListName"}],
                )
            },
            "/suppression-lists/{list}/numbers": {
                "post": _operation(
                    "Put numbers on a list (`campaign suppress add`)",
                    {"200": _json({"type": "object"}, "What was added")},
                    parameters=[{"$ref": "#/components/parameters/ListName"}],
                    body=_json_body(
                        {
                            "type": "object",
                            "required": ["numbers"],
                            "properties": {
                                "numbers": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "minItems": 1,
                                },
                                "reason": {"type": "string"},
                                "default-region": {"type": "string"},
                            },
                        },
                        required=True,
                    ),
                    writes=True,
                )
            },
            "/suppression-lists/{list}/numbers/{number}": {
                "delete": _operation(
                    "Take a number off a list (`campaign suppress remove`)",
                    {"200": _json({"type": "object"}, "What was removed")},
                    parameters=[
                        {"$ref": "#/components/parameters/ListName"},
                        {
                            "name": "number",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "default-region", "in": "query", "schema": {"type": "string"}},
                    ],
                )
            },
        },
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from `campaign api-key create NAME [--read-only]`",
                }
            },
            "parameters": {
                "CampaignName": {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "ListName": {
                    "name": "list",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "description": "A retry with the same key and body gets the first answer "
                    "(kept 24 h); another body with it gets 422",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": IDEMPOTENCY_KEY_MAX_CHARS,
                    },
                },
            },
            "schemas": {
                "Problem": PROBLEM,
                "Progress": PROGRESS,
                "Campaign": CAMPAIGN,
                "RejectedRow": REJECTED_ROW,
                "Load": LOAD,
                "Contact": CONTACT,
                "ContactDetail": CONTACT_DETAIL,
                "LoadSettings": _options_schema(load_command, REFUSED_OPTIONS),
                "PacingSettings": _options_schema(set_command, frozenset()),
                "ContactFilter": {
                    "type": "object",
                    "description": "Which contacts (campaign/contact_filter.py): each field "
                    "left out or empty matches all; fields combine with AND, the values of a "
                    "list with OR. dry_run: only count.",
                    "additionalProperties": False,
                    "properties": {
                        "statuses": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(CONTACT_STATUSES)},
                        },
                        "outcomes": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(OUTCOMES)},
                        },
                        "time_zone": {"type": ["string", "null"]},
                        "response": {"type": ["string", "null"]},
                        "search": {"type": ["string", "null"]},
                        "dry_run": {"type": "boolean"},
                    },
                },
            },
        },
    }
