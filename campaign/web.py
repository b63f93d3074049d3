"""The HTTP side: Plivo's callbacks (signed), /healthz and /metrics, as one aiohttp app.

/metrics and /healthz read the database through a pool of their own (`status_pool`), never
the pool a worker dials and records with, and each read is single-flight: however many
requests arrive together, one statement runs, and the contact counts are read at most every
CAMPAIGN_METRICS_REFRESH_S. So no number of HTTP requests can hold a connection the worker
needs. Callbacks write through the main pool, and the answers the engine serves read through
it: they are the engine's work. Both batch: the callbacks arriving together are written in one
statement (CallbackRecorder), the answers' contacts read in one (AnswerLookup), which also keeps
each campaign's row, so that an answer costs its contact's fields and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import asyncpg
from aiohttp import web

from campaign import db, queries
from campaign.callbacks import (
    CALLBACK_PATHS,
    CAMPAIGN_PARAMETER,
    CallbackError,
    CallbackRecorder,
    parse_callback,
)
from campaign.config import Settings
from campaign.destinations import destination_of
from campaign.metrics import Metrics
from campaign.models import Campaign, RecordResult
from campaign.signature import SIGNATURE_V3_HEADER, SIGNATURE_V3_NONCE_HEADER, validate_signature_v3
from campaign.voice import (
    ANSWER_PATH,
    DESTINATION_PLACEHOLDER,
    DIGITS_PATH,
    EMPTY_XML,
    HANGUP_XML,
    INVALID_KEY,
    MissingValue,
)

logger = logging.getLogger(__name__)

# Plivo's callbacks are a few hundred bytes; anything much larger is not one.
CALLBACK_MAX_BYTES = 16 * 1024
# Where the HTTP API (campaign/api/, mounted by the commands that serve) lives.
API_PREFIX = "/api/v1"
HEALTH_DATABASE_TIMEOUT_S = 2.0
HEALTH_LOOP_LAG_LIMIT_S = 1.0
LOOP_TICK_S = 0.25


# Answers: the look-ups waiting are read in one statement, this many at most, and this many
# statements at once at most (each on a connection of the main pool, for one round trip).
ANSWER_LOOKUP_MAX_BATCH = 200
ANSWER_LOOKUP_READERS = 4
# How long a reader keeps its connection while more look-ups keep coming.
ANSWER_LOOKUP_HOLD_S = 0.05
# What a campaign says never changes after its load: its row is kept this long (then read
# again all the same), for this many campaigns at most.
CAMPAIGN_KEPT_S = 30.0
CAMPAIGNS_KEPT = 256

DEFAULT_METRICS_REFRESH_S = 5.0
# A read of the contact counts that takes longer is abandoned; scrapes get the last counts.
PROGRESS_READ_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the app needs from Settings. The tokens are secrets: never in a repr or a log."""

    public_url: str | None
    auth_tokens: tuple[str, ...] = field(repr=False)
    # CAMPAIGN_METRICS_TOKEN: the bearer token /metrics requires, if any.
    metrics_token: str | None = field(default=None, repr=False)
    metrics_refresh_s: float = DEFAULT_METRICS_REFRESH_S
    # CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS is set: every hangup frees one of its calls.
    account_capped: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WebConfig:
        token = settings.plivo_auth_token
        metrics_token = settings.metrics_token
        return cls(
            public_url=settings.public_url,
            auth_tokens=(token.get_secret_value(),) if token is not None else (),
            metrics_token=metrics_token.get_secret_value() if metrics_token is not None else None,
            metrics_refresh_s=settings.metrics_refresh_s,
            account_capped=settings.account_max_concurrent_calls > 0,
        )


class StatusReader:
    """The database reads of /metrics and /healthz, on their own pool, each single-flight.

    A request that comes while a read is running waits for that read instead of starting
    another; the contact counts are read again only when the last read is `refresh_s` old.
    A failed read keeps the last counts (and counts as a read, so a failing database is not
    asked at every scrape).
    """

    def __init__(self, pool: asyncpg.Pool, metrics: Metrics, refresh_s: float) -> None:
        self._pool = pool
        self._metrics = metrics
        self._refresh_s = refresh_s
        self._read_at: float | None = None
        self._progress_read: asyncio.Task[None] | None = None
        self._health_check: asyncio.Task[str] | None = None

    async def refresh_progress(self) -> None:
        """Make the contacts gauge at most `refresh_s` old."""
        now = asyncio.get_running_loop().time()
        if self._progress_read is None:
            if self._read_at is not None and now - self._read_at < self._refresh_s:
                return
            self._progress_read = asyncio.create_task(self._read_progress())
        # shield: a scrape that goes away does not cancel the read the others wait for.
        await asyncio.shield(self._progress_read)

    async def _read_progress(self) -> None:
        try:
            async with asyncio.timeout(PROGRESS_READ_TIMEOUT_S):
                rows = await queries.progress_all(self._pool)
            self._metrics.set_progress(rows)
        except db.DATABASE_ERRORS as error:  # TimeoutError is an OSError
            logger.warning(
                "/metrics: cannot read the contact counts (%s); serving the last ones",
                type(error).__name__,
            )
        finally:
            self._read_at = asyncio.get_running_loop().time()
            self._progress_read = None

    async def check_database(self) -> str:
        """`ok`, or why the database did not answer `SELECT 1` within the health time-out."""
        if self._health_check is None:
            self._health_check = asyncio.create_task(self._select_one())
        return await asyncio.shield(self._health_check)

    async def _select_one(self) -> str:
        try:
            async with asyncio.timeout(HEALTH_DATABASE_TIMEOUT_S):
                await self._pool.fetchval("SELECT 1")
            return "ok"
        except db.DATABASE_ERRORS as error:  # TimeoutError is an OSError
            return f"unreachable: {type(error).__name__}"
        finally:
            self._health_check = None


@dataclass(frozen=True, slots=True)
class AnswerContext:
    """A call's contact (its id and CSV fields) and its campaign."""

    contact_id: int
    fields: dict[str, str]
    campaign: Campaign


class AnswerLookup:
    """The contact and campaign of each answer and keypress request, many per round trip.

    Requests that arrive together share one statement, as CallbackRecorder's writes do: while
    one batch is read, the next gathers, so the rate follows the arrivals instead of the round
    trips. A reader keeps its connection for the batches that follow (`hold_s` at most), so a
    connection is taken from the pool, and reset when it goes back, once per burst instead of
    once per answer. A campaign's row is read once and kept `kept_s` (`size` campaigns at most,
    the one read longest ago dropped first): what a campaign says never changes after its load,
    so an answer reads only its contact's id and fields.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = ANSWER_LOOKUP_MAX_BATCH,
        readers: int = ANSWER_LOOKUP_READERS,
        hold_s: float = ANSWER_LOOKUP_HOLD_S,
        kept_s: float = CAMPAIGN_KEPT_S,
        size: int = CAMPAIGNS_KEPT,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_readers = readers
        self._hold_s = hold_s
        self._kept_s = kept_s
        self._size = size
        self._waiting: list[tuple[tuple[int, str], asyncio.Future[AnswerContext | None]]] = []
        self._readers: set[asyncio.Task[None]] = set()
        # campaign id → (when its row was read, loop time; the campaign), oldest read first.
        self._campaigns: dict[int, tuple[float, Campaign]] = {}

    async def context(self, campaign_id: int, destination: str) -> AnswerContext | None:
        """The contact of `campaign_id` called at `destination`, with its campaign; None when
        no contact is. Raises what the database raised."""
        future: asyncio.Future[AnswerContext | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(((campaign_id, destination), future))
        # Each reader takes what has gathered since the last one started.
        if len(self._readers) < self._max_readers:
            reader = asyncio.create_task(self._read_batches())
            self._readers.add(reader)
            reader.add_done_callback(self._readers.discard)
        return await future

    async def _read_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch: list[tuple[tuple[int, str], asyncio.Future[AnswerContext | None]]] = []
            connected = False
            try:
                async with self._pool.acquire() as connection:
                    connected = True
                    # The connection is kept for the batches that gather meanwhile (giving one
                    # back costs a reset, a round trip), but for `hold_s` at most: then it goes
                    # back, behind whoever waits for one (the dialer, say).
                    give_back_at = loop.time() + self._hold_s
                    while self._waiting and loop.time() < give_back_at:
                        batch = self._waiting[: self._max_batch]
                        del self._waiting[: self._max_batch]
                        contexts = await self._read(connection, [call for call, _ in batch])
                        for (_, future), context in zip(batch, contexts, strict=True):
                            if not future.done():
                                future.set_result(context)
                        batch = []
            except Exception as error:  # whatever it is, a future left unset would hang a request
                if not batch and not connected:
                    # No connection: those waiting first cannot be answered either.
                    batch = self._waiting[: self._max_batch]
                    del self._waiting[: self._max_batch]
                # (Connected and no batch: giving the connection back failed, after its
                # batches were answered.)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)

    async def _read(
        self, connection: queries.Connection, calls: list[tuple[int, str]]
    ) -> list[AnswerContext | None]:
        now = asyncio.get_running_loop().time()
        contacts = await queries.answer_contacts(connection, calls)
        campaigns: dict[int, Campaign] = {}
        unread: set[int] = set()
        for contact in contacts:
            if contact is None or contact.campaign_id in campaigns:
                continue
            kept = self._campaigns.get(contact.campaign_id)
            if kept is not None and now - kept[0] < self._kept_s:
                campaigns[contact.campaign_id] = kept[1]
            else:
                unread.add(contact.campaign_id)
        if unread:
            for campaign in await queries.campaigns_by_id(connection, sorted(unread)):
                campaigns[campaign.id] = campaign
                self._keep(campaign, now)
        return [
            None
            if contact is None or contact.campaign_id not in campaigns
            else AnswerContext(contact.contact_id, contact.fields, campaigns[contact.campaign_id])
            for contact in contacts
        ]

    def _keep(self, campaign: Campaign, read_at: float) -> None:
        self._campaigns.pop(campaign.id, None)
        self._campaigns[campaign.id] = (read_at, campaign)
        while len(self._campaigns) > self._size:
            del self._campaigns[next(iter(self._campaigns))]


class LoopWatch:
    """Measures how late the event loop runs a timer: a loop blocked by work cannot answer."""

    def __init__(self) -> None:
        self.lag_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + LOOP_TICK_S
            await asyncio.sleep(LOOP_TICK_S)
            self.lag_s = max(0.0, loop.time() - expected)


# Adds a front end's routes to the app (the dashboard's: campaign/dashboard/app.py installer).
AppInstaller = Callable[[web.Application], None]


METRICS_KEY = web.AppKey("metrics", Metrics)
RECORDER_KEY = web.AppKey("recorder", CallbackRecorder)
CONFIG_KEY = web.AppKey("config", WebConfig)
LOOP_WATCH_KEY = web.AppKey("loop_watch", LoopWatch)
STATUS_KEY = web.AppKey("status", StatusReader)
POOL_KEY = web.AppKey("pool", asyncpg.Pool)
ANSWERS_KEY = web.AppKey("answers", AnswerLookup)


def create_app(
    pool: asyncpg.Pool,
    metrics: Metrics,
    config: WebConfig,
    *,
    status_pool: asyncpg.Pool,
    api: web.Application | None = None,
    dashboard: AppInstaller | None = None,
) -> web.Application:
    """The app: callbacks under /plivo/ (recorded through `pool`), /healthz and /metrics (read
    through `status_pool`, which must not be `pool`: see the module's docstring), the HTTP
    API `api` (campaign/api/, on a pool of its own) under /api/v1/ when given, and the
    dashboard (campaign/dashboard/, on a pool of its own) at / when its installer is given."""
    app = web.Application(client_max_size=CALLBACK_MAX_BYTES)
    app[STATUS_KEY] = StatusReader(status_pool, metrics, config.metrics_refresh_s)
    app[METRICS_KEY] = metrics
    app[RECORDER_KEY] = CallbackRecorder(pool, metrics, account_capped=config.account_capped)
    app[CONFIG_KEY] = config
    app[LOOP_WATCH_KEY] = LoopWatch()
    app.cleanup_ctx.append(_watch_loop)
    for event, path in CALLBACK_PATHS.items():
        handler = _callback_handler(event)
        app.router.add_post(path, handler)
        app.router.add_get(path, handler)
    app[POOL_KEY] = pool
    app[ANSWERS_KEY] = AnswerLookup(pool)
    for path, content_handler in ((ANSWER_PATH, answer), (DIGITS_PATH, keypress)):
        app.router.add_post(path, content_handler)
        app.router.add_get(path, content_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    if api is not None:
        app.add_subapp(API_PREFIX, api)
    if dashboard is not None:
        dashboard(app)
    return app


async def _watch_loop(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[LOOP_WATCH_KEY].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _signed_url(request: web.Request, public_url: str | None) -> str:
    """The URL Plivo called, as it signed it: the public base plus the path and query."""
    if public_url is None:
        return str(request.url)
    return public_url + request.rel_url.path_qs


async def _signed_request(
    request: web.Request, event: str
) -> tuple[dict[str, str], dict[str, str]] | web.Response:
    """A request from Plivo, its V3 signature checked: its parameters and its query string; or
    the 403 that refuses it."""
    metrics = request.app[METRICS_KEY]
    config = request.app[CONFIG_KEY]
    form: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            metrics.callbacks_rejected.labels("too_large").inc()
            raise
        # Plivo posts application/x-www-form-urlencoded; every value of a key is signed.
        for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(key, []).append(value)
    body = {key: values[-1] for key, values in form.items()}
    query = dict(request.rel_url.query)
    nonce = request.headers.get(SIGNATURE_V3_NONCE_HEADER)
    signature = request.headers.get(SIGNATURE_V3_HEADER)
    url = _signed_url(request, config.public_url)
    # GET callbacks carry their parameters in the query, which the GET rule signs as such.
    signed_parameters = form if request.method == "POST" else {}
    if (
        not nonce
        or not signature
        or not config.auth_tokens
        or not validate_signature_v3(
            list(config.auth_tokens), url, nonce, signed_parameters, signature, request.method
        )
    ):
        metrics.callbacks_rejected.labels("signature").inc()
        logger.warning("%s request with a missing or wrong signature: refused", event)
        return web.Response(status=403, text="invalid signature\n")
    return (body if request.method == "POST" else query), query


def _callback_handler(event: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        metrics = request.app[METRICS_KEY]
        signed = await _signed_request(request, f"{event} callback")
        if isinstance(signed, web.Response):
            return signed
        payload, query = signed
        try:
            call_event = parse_callback(event, query, payload)
        except CallbackError as error:
            metrics.callbacks_rejected.labels("malformed").inc()
            logger.warning("%s callback refused: %s", event, error)
            return web.Response(status=400, text=f"{error}\n")
        result = await request.app[RECORDER_KEY].record(call_event)
        if result == RecordResult.RETRY:
            # The reply to its request is being recorded right now: Plivo retries a 503.
            return web.Response(status=503, text="retry\n", headers={"Retry-After": "1"})
        # 200 even for an unknown call: Plivo would retry anything else, and nothing will change.
        return web.Response(text=f"{result.value}\n")

    return handle


def _xml(document: str) -> web.Response:
    return web.Response(text=document, content_type="application/xml")


def _call_of(payload: dict[str, str], query: dict[str, str]) -> tuple[int, str] | None:
    """The campaign id (our query string) and the destination (Plivo's To) of a call."""
    campaign = query.get(CAMPAIGN_PARAMETER, "")
    to = payload.get("To", "").strip()
    if not campaign.isdigit() or not to:
        return None
    return int(campaign), destination_of(to)


def _engine_url(request: web.Request) -> str:
    """The base URL Plivo reaches this engine at."""
    public_url = request.app[CONFIG_KEY].public_url
    return public_url if public_url is not None else str(request.url.origin())


async def answer(request: web.Request) -> web.Response:
    """Plivo's answer request of a campaign whose content the engine serves: the contact's own
    XML, its fields escaped; a polite hang-up for a call we do not know (never an error page:
    the callee would hear Plivo's error message)."""
    signed = await _signed_request(request, "answer")
    if isinstance(signed, web.Response):
        return signed
    payload, query = signed
    metrics = request.app[METRICS_KEY]
    call = _call_of(payload, query)
    context = None
    if call is not None:
        try:
            context = await request.app[ANSWERS_KEY].context(*call)
        except db.DATABASE_ERRORS as error:
            # Never an error page: the callee would hear Plivo's error message.
            logger.error(
                "answer for campaign %d: the database failed (%s); hung up", call[0], error
            )
    if call is None or context is None or not context.campaign.content.serves_answer:
        metrics.callbacks.labels("answer", "unknown").inc()
        return _xml(HANGUP_XML)
    campaign_id, destination = call
    content = context.campaign.content
    machine = payload.get("Machine", "").strip().lower() == "true"
    try:
        document = content.answer_xml(
            {**context.fields, DESTINATION_PLACEHOLDER: destination},
            digits_url=f"{_engine_url(request)}{DIGITS_PATH}?{CAMPAIGN_PARAMETER}={campaign_id}",
            machine=machine,
        )
    except MissingValue as missing:
        # Only a contact changed in SQL since its load can miss a value the load checked.
        logger.warning(
            "answer for contact %d: %s; the call is hung up", context.contact_id, missing
        )
        metrics.callbacks.labels("answer", "unknown").inc()
        return _xml(HANGUP_XML)
    if machine:
        try:
            await queries.record_machine_action(
                request.app[POOL_KEY],
                campaign_id,
                destination,
                content.on_machine or "message",
                payload.get("CallUUID") or None,
            )
        except db.DATABASE_ERRORS as error:
            logger.error("recording a machine on campaign %d: %s", campaign_id, error)
    metrics.callbacks.labels("answer", "recorded").inc()
    return _xml(document)


async def keypress(request: web.Request) -> web.Response:
    """The `action` of the answer's <GetDigits>: the key the callee pressed, recorded once per
    attempt with its meaning (an opt-out suppresses the number at once); then what the campaign
    says after that key."""
    signed = await _signed_request(request, "digits")
    if isinstance(signed, web.Response):
        return signed
    payload, query = signed
    metrics = request.app[METRICS_KEY]
    call = _call_of(payload, query)
    digits = payload.get("Digits", "").strip()
    context = None
    try:
        if call is not None and digits:
            context = await request.app[ANSWERS_KEY].context(*call)
        if call is None or context is None:
            metrics.callbacks.labels("digits", "unknown").inc()
            return _xml(EMPTY_XML)
        campaign_id, destination = call
        content = context.campaign.content
        meaning = content.gather.get(digits, INVALID_KEY)
        result = await queries.record_keypress(
            request.app[POOL_KEY],
            campaign_id=campaign_id,
            destination=destination,
            call_uuid=payload.get("CallUUID") or None,
            digits=digits,
            meaning=meaning,
            opt_out_reason=(
                f"opt-out: pressed {digits} on a call of campaign {context.campaign.name} at "
                f"{datetime.now(UTC).isoformat(timespec='seconds')}"
            ),
        )
    except db.DATABASE_ERRORS as error:
        # Plivo does not retry an action: say so loudly (an opt-out must then be entered by
        # hand with `campaign suppress add`), and end the call politely.
        logger.error(
            "key %s pressed on a call of campaign %s to %s was NOT recorded: the database "
            "failed (%s)",
            digits,
            query.get(CAMPAIGN_PARAMETER),
            payload.get("To"),
            error,
        )
        return _xml(EMPTY_XML)
    metrics.callbacks.labels("digits", result).inc()
    try:
        return _xml(
            content.after_keypress_xml(
                digits, {**context.fields, DESTINATION_PLACEHOLDER: destination}
            )
        )
    except MissingValue:
        return _xml(EMPTY_XML)


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers and the event loop is responsive, else 503."""
    lag_s = request.app[LOOP_WATCH_KEY].lag_s
    database = await request.app[STATUS_KEY].check_database()
    healthy = database == "ok" and lag_s < HEALTH_LOOP_LAG_LIMIT_S
    return web.json_response(
        {"status": "ok" if healthy else "failing", "database": database, "loop_lag_s": lag_s},
        status=200 if healthy else 503,
    )


def bearer_token_matches(authorization: str | None, token: str) -> bool:
    """True when an `Authorization` header is `Bearer <token>` (compared in constant time)."""
    if authorization is None or not authorization.isascii():
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus' text format, the contact counts at most CAMPAIGN_METRICS_REFRESH_S old;
    401 without the bearer token when CAMPAIGN_METRICS_TOKEN is set."""
    token = request.app[CONFIG_KEY].metrics_token
    if token is not None and not bearer_token_matches(request.headers.get("Authorization"), token):
        # Checked before any read: a scrape without the token costs the database nothing.
        return web.Response(
            status=401,
            text="send the token of CAMPAIGN_METRICS_TOKEN as Authorization: Bearer <token>\n",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    await request.app[STATUS_KEY].refresh_progress()
    return web.Response(
        body=request.app[METRICS_KEY].exposition(),
        headers={"Content-Type": "text/plain; version=0.0.4"},
    )


@contextlib.asynccontextmanager
async def serving(
    pool: asyncpg.Pool,
    metrics: Metrics,
    config: WebConfig,
    host: str,
    port: int,
    *,
    status_pool: asyncpg.Pool,
    api: web.Application | None = None,
    dashboard: AppInstaller | None = None,
) -> AsyncIterator[str]:
    """Serve the app on host:port (0: a free port) while the block runs; yields its base URL."""
    runner = web.AppRunner(
        create_app(pool, metrics, config, status_pool=status_pool, api=api, dashboard=dashboard),
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        logger.info("serving callbacks, /healthz and /metrics on %s:%s", bound_host, bound_port)
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()
