"""/api/v1/suppression-lists…: the do-not-call lists (`campaign suppress list | add | remove`),
through campaign/suppression.py, the code the commands run."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from campaign import queries, specs
from campaign.api.answers import dumps, json_answer
from campaign.api.campaigns import spec_problem
from campaign.api.problems import FieldError, Problem, validation
from campaign.api.requests import API_POOL, idempotent, read_json_object, request_digest
from campaign.specs import SpecError
from campaign.suppression import (
    RefusedValues,
    add_to_list,
    is_file_argument,
    reason_text,
    remove_from_list,
)

NUMBERS_MAX = 100_000
LIST_CHUNK_ROWS = 5000


def _list_name(request: web.Request) -> str:
    try:
        return specs.list_name("list", request.match_info["list"])
    except SpecError as error:
        raise spec_problem(error) from None


def _region(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise validation("default-region", "must be a string such as US")
    try:
        return specs.default_region(value)
    except SpecError as error:
        raise spec_problem(error) from None


def _refused(error: RefusedValues) -> Problem:
    """The bad values, each as `suppress add` lists it (argument N is numbers[N-1])."""
    errors = [
        FieldError(bad.where.replace("argument ", "numbers/"), f"{bad.value!r}: {bad.reason}")
        for bad in error.shown
    ]
    return Problem(422, "validation", str(error), errors)


async def lists(request: web.Request) -> web.Response:
    """GET /api/v1/suppression-lists: every list with its count and newest addition."""
    found = await queries.suppression_lists(request.app[API_POOL])
    return json_answer({"lists": [entry.as_json() for entry in found]})


async def numbers(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/suppression-lists/{list}: the numbers on it, streamed from a cursor."""
    name = _list_name(request)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    pool = request.app[API_POOL]
    async with pool.acquire() as connection, connection.transaction(readonly=True):
        await response.prepare(request)
        await response.write(f'{{"list": {dumps(name)}, "numbers": ['.encode())
        first = True
        async for chunk in queries.suppressed_number_chunks(connection, name, LIST_CHUNK_ROWS):
            text = ", ".join(dumps(number.as_json()) for number in chunk)
            await response.write(((", " if not first else "") + text).encode())
            first = False
        await response.write(b"]}")
    await response.write_eof()
    return response


def _numbers(body: dict[str, Any]) -> list[str]:
    values = body.get("numbers")
    if not isinstance(values, list) or not values:
        raise validation("numbers", "must be a non-empty list of numbers")
    if len(values) > NUMBERS_MAX:
        raise validation("numbers", f"at most {NUMBERS_MAX:,} numbers a request")
    for index, value in enumerate(values, start=1):
        if not isinstance(value, str):
            raise validation(f"numbers/{index}", "must be a string")
        if is_file_argument(value):
            # `suppress add` reads an argument that names a file; the API never opens one.
            raise validation(f"numbers/{index}", f"{value!r}: is not a number")
    return values


async def add(request: web.Request) -> web.Response:
    """POST /api/v1/suppression-lists/{list}/numbers: put `numbers` on the list (with a
    `reason`; numbers without + read in `default-region`)."""
    name = _list_name(request)
    body, raw = await read_json_object(request)
    unknown = sorted(set(body) - {"numbers", "reason", "default-region", "default_region"})
    if unknown:
        raise validation(unknown[0], "no such field; send numbers, reason, default-region")
    values = _numbers(body)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise validation("reason", "must be a string")
    try:
        stored_reason = reason_text(reason)
    except SpecError as error:
        raise spec_problem(error) from None
    region = _region(body.get("default-region", body.get("default_region")))

    async def answer() -> web.Response:
        try:
            summary = await add_to_list(
                request.app[API_POOL], values, name, stored_reason, default_region=region
            )
        except RefusedValues as error:
            raise _refused(error) from None
        return json_answer(summary.as_json())

    return await idempotent(request, request_digest(request, raw), answer)


async def remove(request: web.Request) -> web.Response:
    """DELETE /api/v1/suppression-lists/{list}/numbers/{number}: take a number off the list."""
    name = _list_name(request)
    region = _region(request.query.get("default-region"))
    try:
        summary = await remove_from_list(
            request.app[API_POOL], [request.match_info["number"]], name, default_region=region
        )
    except RefusedValues as error:
        raise _refused(error) from None
    return json_answer(summary.as_json())
