"""Settings from the environment: prefixed names, bounds, secrets kept secret, units in names."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PLIVO_API_URL = "https://api.plivo.com"
# reconcile_after_s must exceed the lease by this much.
RECONCILE_MARGIN_S = 60.0
# The Standard Webhooks / Svix schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_WEBHOOK_RETRY_DELAYS = "0,5,300,1800,7200,18000,36000,36000"
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105  # the prefix of every secret, not one


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable and the fix."""


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("campaign")


class Settings(BaseSettings):
    """Every setting of the engine. Environment variable names are given beside each field."""

    model_config = SettingsConfigDict(
        env_prefix="CAMPAIGN_",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    # CAMPAIGN_DATABASE_URL: unset means the embedded PostgreSQL in CAMPAIGN_DATA_DIR.
    database_url: str | None = None
    # CAMPAIGN_DATA_DIR: where the embedded PostgreSQL keeps its data.
    data_dir: Path = Field(default_factory=_default_data_dir)
    # CAMPAIGN_LOG_LEVEL: what is logged to stderr.
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    # CAMPAIGN_DATABASE_POOL_SIZE: connections per process.
    database_pool_size: int = Field(default=10, ge=2, le=100)

    # The Plivo account, with the names Plivo's own SDKs read.
    plivo_auth_id: str | None = Field(
        default=None, validation_alias=AliasChoices("PLIVO_AUTH_ID", "plivo_auth_id")
    )
    plivo_auth_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PLIVO_AUTH_TOKEN", "plivo_auth_token")
    )
    plivo_api_url: str = Field(
        default=DEFAULT_PLIVO_API_URL,
        validation_alias=AliasChoices("PLIVO_API_URL", "plivo_api_url"),
    )

    # CAMPAIGN_PLIVO_CONNECT_TIMEOUT_S / CAMPAIGN_PLIVO_TIMEOUT_S: per Make-a-call request.
    plivo_connect_timeout_s: float = Field(default=5.0, ge=0.1, le=60.0)
    plivo_timeout_s: float = Field(default=30.0, ge=0.5, le=300.0)
    # Retries of requests that were certainly not sent (connect errors, 503, 429).
    plivo_retry_attempts: int = Field(default=5, ge=1, le=20)
    plivo_retry_budget_s: float = Field(default=60.0, ge=0.1, le=3600.0)
    plivo_backoff_initial_s: float = Field(default=0.5, ge=0.001, le=60.0)
    plivo_backoff_max_s: float = Field(default=30.0, ge=0.001, le=600.0)

    # The Plivo account's limits, shared by every worker through Postgres. 0 turns a limit off
    # (for simulators and benchmarks only: Plivo always has both).
    # CAMPAIGN_ACCOUNT_CPS: outbound calls per second of the account (Plivo's default is 2).
    account_cps: float = Field(default=2.0, ge=0.0, le=100_000.0)
    # CAMPAIGN_API_REQUESTS_PER_WINDOW / CAMPAIGN_API_WINDOW_S: Plivo's 300 requests per 5 s.
    api_requests_per_window: int = Field(default=300, ge=0, le=1_000_000)
    api_window_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    # CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS: calls of the account live at once, at most, shared by
    # every worker (0: no cap; Plivo's India accounts have one, by default CPS x 25). Set it
    # alike on every worker. A call counts until its hangup callback (campaigns without
    # --track-calls: until ring_timeout + time_limit after Plivo's reply).
    account_max_concurrent_calls: int = Field(default=0, ge=0, le=1_000_000)

    # The worker. CAMPAIGN_WORKER_ID: how this worker names itself in leases (default host:pid).
    worker_id: str | None = Field(default=None, min_length=1, max_length=200)
    # Batches in flight at once per worker process.
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    # How long a claimed or sending contact stays with a worker that stopped answering. Must
    # outlast one request with its retries (CAMPAIGN_PLIVO_TIMEOUT_S + ..._RETRY_BUDGET_S).
    worker_lease_s: float = Field(default=180.0, ge=1.0, le=86_400.0)
    # How often an idle worker looks for work when no notification wakes it.
    worker_poll_interval_s: float = Field(default=1.0, ge=0.01, le=300.0)
    # Contacts whose request was not sent wait this long, doubling per attempt, up to the max.
    worker_backoff_s: float = Field(default=30.0, ge=0.0, le=86_400.0)
    worker_backoff_max_s: float = Field(default=3600.0, ge=0.0, le=604_800.0)
    # A batch carries at most this many seconds' worth of calls, so calls are spread smoothly.
    worker_pace_window_s: float = Field(default=0.1, ge=0.001, le=60.0)
    # On SIGTERM, how long requests in flight may take to finish before the worker gives up.
    worker_stop_timeout_s: float = Field(default=30.0, ge=0.1, le=3600.0)
    # `campaign reconcile`: how long after a request a call absent from Plivo's look-ups is
    # taken as never placed. At least the lease and a margin (checked below).
    reconcile_after_s: float = Field(default=900.0, ge=0.0, le=604_800.0)
    # CAMPAIGN_MAX_CALLS_PER_NUMBER_PER_DAY: calls placed to one number by every campaign in the
    # previous 24 h, at most (0: no cap). Set it alike on every worker.
    max_calls_per_number_per_day: int = Field(default=0, ge=0, le=1000)
    # The circuit breaker: after this many requests in a row whose fate is unknown (a 5xx storm,
    # a PLIVO_API_URL that redirects), a worker pauses its campaigns. 0 turns it off.
    pause_after_unknown_requests: int = Field(default=3, ge=0, le=1000)

    # Callbacks and operations: served by `campaign serve`, and by `campaign worker` when
    # CAMPAIGN_HTTP_PORT is set. CAMPAIGN_PUBLIC_URL is the base URL Plivo reaches them at.
    http_host: str = Field(default="127.0.0.1", min_length=1)
    http_port: int | None = Field(default=None, ge=1, le=65535)
    public_url: str | None = None
    # How long a fired call that may be redialled waits for its hangup callback before the
    # campaign can complete without it.
    callback_wait_s: float = Field(default=3600.0, ge=0.0, le=604_800.0)
    # /metrics: the contact counts are read at most this often (on a connection of their own,
    # one read however many scrapes), and CAMPAIGN_METRICS_TOKEN, when set, is the bearer token
    # a scrape must send (`Authorization: Bearer …`).
    metrics_refresh_s: float = Field(default=5.0, ge=0.1, le=3600.0)
    metrics_token: SecretStr | None = None

    # Webhooks (campaign/webhooks). CAMPAIGN_WEBHOOK_URL: the endpoint of every campaign loaded
    # without --webhook-url. CAMPAIGN_WEBHOOK_SECRET (`whsec_` and base64 of 24 to 64 bytes):
    # signs every endpoint's events; unset, each endpoint has its own, generated with it.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Seconds before each attempt after an event (the first) and after each failed attempt;
    # after the last, the delivery is failed. Each gets up to 10 % of jitter.
    webhook_retry_delays: str = DEFAULT_WEBHOOK_RETRY_DELAYS
    # Allow endpoints on loopback, private and link-local addresses (refused by default: SSRF).
    webhook_allow_private: bool = False
    # An attempt that has no 2xx within this long is a failure.
    webhook_timeout_s: float = Field(default=15.0, ge=0.1, le=300.0)
    # How often a deliverer looks for due deliveries; deliveries sent at once per endpoint.
    webhook_poll_interval_s: float = Field(default=0.5, ge=0.01, le=60.0)
    webhook_batch_size: int = Field(default=100, ge=1, le=1000)

    # The dashboard (campaign/dashboard/, served at /). A session ends after this long without
    # a request (on the database's clock). Logins from one address are refused (429) after
    # this many failures within CAMPAIGN_DASHBOARD_LOGIN_WINDOW_S. Live pages get a snapshot at
    # most every CAMPAIGN_DASHBOARD_REFRESH_S (sooner: never; later: only when nothing changed).
    dashboard_idle_s: float = Field(default=1800.0, ge=1.0, le=604_800.0)
    dashboard_login_failures: int = Field(default=5, ge=1, le=1000)
    dashboard_login_window_s: float = Field(default=900.0, ge=1.0, le=86_400.0)
    dashboard_refresh_s: float = Field(default=1.0, ge=0.1, le=60.0)
    dashboard_poll_s: float = Field(default=2.0, ge=0.1, le=600.0)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be the http(s) URL Plivo reaches this service at")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _lease_outlasts_a_request(self) -> Settings:
        needed = self.plivo_timeout_s + self.plivo_retry_budget_s
        if self.worker_lease_s <= needed:
            raise ValueError(
                f"CAMPAIGN_WORKER_LEASE_S ({self.worker_lease_s:g}) must be longer than one request"
                f" with its retries, CAMPAIGN_PLIVO_TIMEOUT_S + CAMPAIGN_PLIVO_RETRY_BUDGET_S "
                f"({needed:g}); raise it or lower those"
            )
        return self

    @model_validator(mode="after")
    def _reconcile_waits_out_a_lease(self) -> Settings:
        # A request is `sending` until its lease runs out; a look-up before that may miss a call
        # its worker is still placing, and reconcile would dial the contact twice.
        needed = self.worker_lease_s + RECONCILE_MARGIN_S
        if self.reconcile_after_s < needed:
            raise ValueError(
                f"CAMPAIGN_RECONCILE_AFTER_S ({self.reconcile_after_s:g}) must be at least "
                f"CAMPAIGN_WORKER_LEASE_S + {RECONCILE_MARGIN_S:g} ({needed:g}), so that no "
                "request still in a worker's hands is taken for one never placed; raise it"
            )
        return self

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return check_webhook_url(value)

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        webhook_secret_key(value.get_secret_value())
        return value

    @field_validator("webhook_retry_delays")
    @classmethod
    def _retry_delays(cls, value: str) -> str:
        parse_retry_delays(value)
        return value

    @property
    def webhook_retry_delays_s(self) -> tuple[float, ...]:
        return parse_retry_delays(self.webhook_retry_delays)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a URL starting with postgresql://, or unset for embedded")
        return value

    @field_validator("plivo_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. https://api.plivo.com")
        return value.rstrip("/")

    @field_validator("plivo_auth_id")
    @classmethod
    def _auth_id(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.isalnum() or len(value) > 64:
            raise ValueError(
                "must be your Plivo Auth ID: letters and digits, e.g. MA0123456789ABCDEFGH"
            )
        return value

    @field_validator("plivo_auth_token", "metrics_token")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        return value

    @field_validator("metrics_token")
    @classmethod
    def _bearer_token(cls, value: SecretStr | None) -> SecretStr | None:
        # It travels in an HTTP header: printable ASCII without spaces (RFC 6750's token68).
        if value is not None and not all(
            "!" <= character <= "~" for character in value.get_secret_value()
        ):
            raise ValueError(
                "must be printable ASCII without spaces, e.g. from `openssl rand -hex 32`"
            )
        return value

    @property
    def has_plivo_credentials(self) -> bool:
        return self.plivo_auth_id is not None and self.plivo_auth_token is not None


def check_webhook_url(url: str) -> str:
    """A webhook endpoint's URL as given, if it is one: http(s), a host, no credentials, no
    fragment, at most 2,000 characters; else ValueError saying what is wrong."""
    if len(url) > 2000:
        raise ValueError("must be at most 2,000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password (put a token in the path)")
    if parts.fragment or any(character.isspace() for character in url):
        raise ValueError(f"{url!r} has a fragment or spaces")
    del port
    return url


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret (its base64 part decoded); ValueError when it is not
    one, with a message that never repeats the secret."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"must start with {WEBHOOK_SECRET_PREFIX} and then base64")
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"the part after {WEBHOOK_SECRET_PREFIX} is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the part after {WEBHOOK_SECRET_PREFIX} must decode to 24 to 64 bytes")
    return key


def parse_retry_delays(text: str) -> tuple[float, ...]:
    """`0,5,300` → (0.0, 5.0, 300.0): one to 20 delays in seconds, each 0 to 7 days."""
    try:
        delays = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a comma-separated list of seconds, e.g. 0,5,300"
        ) from None
    if not 1 <= len(delays) <= 20 or not all(0 <= delay <= 604_800 for delay in delays):
        raise ValueError("must be 1 to 20 delays of 0 to 604800 seconds each, e.g. 0,5,300")
    return delays


def env_name(field: str) -> str:
    """The environment variable that sets a field of Settings."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first
    return f"CAMPAIGN_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Read Settings from the environment; an invalid value raises SettingsError naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = []
        for detail in error.errors(include_input=False, include_url=False):
            message = str(detail["msg"]).removeprefix("Value error, ")
            if not detail["loc"]:  # a rule across settings: its message names them
                problems.append(message)
                continue
            field = str(detail["loc"][0])
            name = env_name(field) if field in Settings.model_fields else field
            problems.append(f"{name}: {message}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
