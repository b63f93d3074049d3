"""Loads through the API: POST /api/v1/campaigns (a new campaign from a CSV) and
POST /api/v1/campaigns/{name}/files (a CSV added to one), and each load's rejected rows.

The body is multipart/form-data: a `settings` part, a JSON object of `campaign load`'s options
by name (parsed by that command's own click declarations: campaign/api/options.py), and a
`file` part, the CSV. The file is streamed to a temporary file a chunk at a time (never whole
in memory), hashed as it goes for the Idempotency-Key, and loaded by campaign/importer.py, the
code `campaign load` runs. The answer is the load's summary with its first rejected rows; all
of them are kept (api_load_rejects) and served at the answer's `rejects_url`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import asyncpg
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from campaign import queries
from campaign.api.answers import json_answer
from campaign.api.campaigns import spec_problem
from campaign.api.options import parse_options
from campaign.api.problems import FieldError, Problem, validation
from campaign.api.requests import API_POOL, API_SETTINGS, idempotent, request_digest
from campaign.cli.load import load as load_command
from campaign.cli.load import load_plan
from campaign.config import Settings
from campaign.destinations import LoadError, Rejected
from campaign.formulas import neutralise, neutralise_phone
from campaign.importer import CsvSource, load_csv
from campaign.models import CampaignSpec
from campaign.specs import SpecError
from campaign.webhooks.urls import WebhookUrlRefused, campaign_endpoint

# Rejected rows the answer lists; the rest are at its rejects_url.
REJECTS_INLINE = 1000
SETTINGS_MAX_BYTES = 256 * 1024
SPOOL_CHUNK_BYTES = 256 * 1024
REJECTS_COPY_ROWS = 5000
# `load` options that name files on the server, or only shape the CLI's own output.
REFUSED_OPTIONS = frozenset(
    {
        "campaign",
        "from-file",
        "answer-xml",
        "rejects",
        "jobs",
        "json",
        "escape-formulas",
        "no-escape-formulas",
    }
)


class RejectsSpool:
    """The load's observer: the first REJECTS_INLINE rejected rows kept, all of them written to
    a temporary CSV file (copied to the database once the load is done)."""

    def __init__(self, handle: IO[str]) -> None:
        self.inline: list[dict[str, Any]] = []
        self.count = 0
        self._handle = handle
        self._writer = csv.writer(handle)

    def rejected(self, row: Rejected) -> None:
        self.count += 1
        # A NUL is one of the reasons a row is rejected, and PostgreSQL's text cannot hold it:
        # shown as \0, as the CLI's rejects file does not need to.
        value = row.raw_value.replace("\x00", "\\0")
        if len(self.inline) < REJECTS_INLINE:
            self.inline.append({"line": row.line_number, "value": value, "reason": row.reason})
        self._writer.writerow([row.line_number, value, row.reason])

    def progressed(self, bytes_read: int) -> None:
        """(No progress bar over HTTP.)"""

    def rows(self) -> Iterator[tuple[int, str, str]]:
        self._handle.flush()
        self._handle.seek(0)
        for line, value, reason in csv.reader(self._handle):
            yield int(line), value, reason


async def _read_upload(
    request: web.Request, folder: Path, *, settings_required: bool
) -> tuple[dict[str, Any], Path, str, bytes]:
    """The settings, the spooled CSV file, its name as uploaded, and the request's digest."""
    if request.content_type != "multipart/form-data":
        raise Problem(
            415,
            "unsupported-media-type",
            "send multipart/form-data with a `settings` part (JSON) and a `file` part (the CSV)",
        )
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as error:
        raise Problem(400, "bad-request", f"the multipart body cannot be read: {error}") from None
    settings_bytes: bytes | None = None
    spool: Path | None = None
    upload_name = "file"
    file_digest = hashlib.sha256()
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise validation("body", "nested multipart parts are not taken")
            if part.name == "settings" and settings_bytes is None:
                read = bytearray()
                while chunk := await part.read_chunk(SPOOL_CHUNK_BYTES):
                    read.extend(chunk)
                    if len(read) > SETTINGS_MAX_BYTES:
                        raise Problem(
                            413,
                            "payload-too-large",
                            f"settings: larger than {SETTINGS_MAX_BYTES:,} bytes",
                        )
                settings_bytes = bytes(read)
            elif part.name == "file" and spool is None:
                upload_name = _display_name(part.filename)
                spool = folder / "upload.csv"
                with spool.open("wb") as out:
                    while chunk := await part.read_chunk(SPOOL_CHUNK_BYTES):
                        file_digest.update(chunk)
                        out.write(chunk)
            else:
                raise validation(
                    str(part.name), "unexpected part; send one `settings` part and one `file` part"
                )
    except (ValueError, AssertionError, UnicodeDecodeError, HttpProcessingError) as error:
        raise Problem(400, "bad-request", f"the multipart body cannot be read: {error}") from None
    if spool is None:
        raise validation("file", "missing: send the CSV as a part named `file`")
    if settings_bytes is None:
        if settings_required:
            raise validation(
                "settings", "missing: send a part named `settings` holding a JSON object"
            )
        settings_bytes = b"{}"
    try:
        settings = json.loads(settings_bytes)
    except (UnicodeDecodeError, ValueError) as error:
        raise validation("settings", f"is not JSON: {error}") from None
    if not isinstance(settings, dict):
        raise validation("settings", "must be a JSON object of `campaign load` options by name")
    digest = request_digest(request, settings_bytes, file_digest.digest())
    return settings, spool, upload_name, digest


def _display_name(filename: str | None) -> str:
    """The uploaded file's name for messages (its last path part), or `file`."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[:200]
    return name or "file"


async def load_upload(
    pool: asyncpg.Pool,
    app_settings: Settings,
    folder: Path,
    spool: Path,
    upload_name: str,
    settings: dict[str, Any],
    existing: str | None,
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The load of a spooled CSV with `settings` (`campaign load`'s options by name), checked
    now (a 422 Problem for a bad option or settings); the returned function runs it and gives
    the summary with the first rejected rows (all kept in api_load_rejects), or a 422 Problem
    when the file cannot be loaded. The API and the dashboard load through this one path."""
    fixed = [] if existing is None else [f"--campaign={existing}"]
    params = parse_options(
        load_command,
        settings,
        refused=REFUSED_OPTIONS,
        arguments=[str(spool)],
        fixed=fixed,
    )
    try:
        target, options = load_plan(params, app_settings.public_url)
    except SpecError as error:
        raise spec_problem(error) from None
    if isinstance(target, CampaignSpec):
        try:
            target = await campaign_endpoint(
                target,
                app_settings,
                given=params.get("webhook_url") is not None,
            )
        except WebhookUrlRefused as error:
            raise validation("webhook-url", str(error)) from None
    # One validating thread: the API shares its process with the callbacks it serves.
    options = dataclasses.replace(options, jobs=1)
    planned = target

    async def run() -> dict[str, Any]:
        with (folder / "rejects.csv").open("w+", encoding="utf-8", newline="") as handle:
            spool_rejects = RejectsSpool(handle)
            source = CsvSource(spool)
            try:
                summary = await load_csv(pool, source, planned, options, spool_rejects)
            except LoadError as error:
                message = str(error).replace(str(spool), upload_name)
                errors = [
                    FieldError(f"line {row['line']}", row["reason"]) for row in spool_rejects.inline
                ]
                raise Problem(422, "validation", message, errors) from None
            finally:
                source.close()
            result: dict[str, Any] = summary.as_json()
            async with pool.acquire() as connection, connection.transaction():
                load_id = await queries.create_api_load(connection, summary.campaign.id, result)
                await queries.copy_api_load_rejects(connection, load_id, spool_rejects.rows())
        result["load_id"] = load_id
        result["rejected_rows"] = spool_rejects.inline
        result["rejects_url"] = f"/api/v1/loads/{load_id}/rejects"
        result["campaign_url"] = f"/api/v1/campaigns/{quote(summary.campaign.name, safe='')}"
        return result

    return run


async def _load(request: web.Request, existing: str | None) -> web.Response:
    with tempfile.TemporaryDirectory(prefix="campaign-api-") as directory:
        folder = Path(directory)
        settings, spool, upload_name, digest = await _read_upload(
            request, folder, settings_required=existing is None
        )
        run = await load_upload(
            request.app[API_POOL],
            request.app[API_SETTINGS],
            folder,
            spool,
            upload_name,
            settings,
            existing,
        )

        async def answer() -> web.Response:
            return json_answer(await run(), status=201 if existing is None else 200)

        return await idempotent(request, digest, answer)


async def create_campaign(request: web.Request) -> web.Response:
    """POST /api/v1/campaigns: a new campaign from a CSV (`campaign load FILE --name …`)."""
    return await _load(request, None)


async def add_file(request: web.Request) -> web.Response:
    """POST /api/v1/campaigns/{name}/files: a CSV added (`campaign load FILE --campaign NAME`)."""
    return await _load(request, request.match_info["name"])


async def rejects(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/loads/{id}/rejects: every rejected row of a load, as CSV (line, value,
    reason), formulas written as text as `--rejects` writes them, streamed."""
    text = request.match_info["load_id"]
    if not text.isascii() or not text.isdigit() or int(text) >= 2**63:
        raise Problem(404, "not-found", f"no load {text!r}")
    load_id = int(text)
    escape = request.query.get("escape_formulas", "true")
    if escape not in ("true", "false"):
        raise validation("escape_formulas", "must be true or false")
    pool = request.app[API_POOL]
    if not await queries.api_load_exists(pool, load_id):
        raise Problem(404, "not-found", f"no load {load_id}")
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8"})
    await response.prepare(request)
    await response.write(b"line,value,reason\r\n")
    async with pool.acquire() as connection, connection.transaction(readonly=True):
        async for records in queries.api_load_reject_chunks(connection, load_id, REJECTS_COPY_ROWS):
            lines: list[str] = []
            for record in records:
                value, reason = record["value"], record["reason"]
                if escape == "true":
                    value, reason = neutralise_phone(value), neutralise(reason)
                lines.append(_csv_line([str(record["line_number"]), value, reason]))
            await response.write("".join(lines).encode())
    await response.write_eof()
    return response


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()
