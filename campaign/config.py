"""Settings from the environment: prefixed names, bounds, secrets kept secret, units in names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
