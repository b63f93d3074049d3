"""Settings: environment names, bounds, and secrets that stay secret."""

from __future__ import annotations

import pytest

from campaign.config import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no campaign or Plivo variable set."""
    import os

    for key in list(os.environ):
        if key.startswith(("CAMPAIGN_", "PLIVO_")):
            monkeypatch.delenv(key)


def test_defaults_use_embedded_database_and_real_plivo() -> None:
    """With nothing set, the database is embedded and Plivo's public API is the target."""
    settings = load_settings()
    assert settings.database_url is None
    assert settings.plivo_api_url == "https://api.plivo.com"
    assert not settings.has_plivo_credentials


def test_plivo_variables_use_the_sdk_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN and PLIVO_API_URL are read as Plivo's SDKs read them."""
    monkeypatch.setenv("PLIVO_AUTH_ID", "MAXXXXXXXXXXXXXXXXXX")
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", "token-value")
    monkeypatch.setenv("PLIVO_API_URL", "http://127.0.0.1:8080/")
    settings = load_settings()
    assert settings.plivo_auth_id == "MAXXXXXXXXXXXXXXXXXX"
    assert settings.plivo_auth_token is not None
    assert settings.plivo_auth_token.get_secret_value() == "token-value"
    assert settings.plivo_api_url == "http://127.0.0.1:8080"
    assert settings.has_plivo_credentials


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CAMPAIGN_DATABASE_URL", "mysql://localhost/x", "CAMPAIGN_DATABASE_URL: must be a URL"),
        ("PLIVO_API_URL", "api.plivo.com", "PLIVO_API_URL: must be an http:// or https:// URL"),
        ("PLIVO_AUTH_ID", "MA-not-valid!", "PLIVO_AUTH_ID: must be your Plivo Auth ID"),
        ("CAMPAIGN_PLIVO_TIMEOUT_S", "0", "CAMPAIGN_PLIVO_TIMEOUT_S: Input should be greater"),
        ("CAMPAIGN_PLIVO_RETRY_ATTEMPTS", "many", "CAMPAIGN_PLIVO_RETRY_ATTEMPTS: Input should be"),
        (
            "CAMPAIGN_DATABASE_POOL_SIZE",
            "1000",
            "CAMPAIGN_DATABASE_POOL_SIZE: Input should be less",
        ),
        ("CAMPAIGN_LOG_LEVEL", "loud", "CAMPAIGN_LOG_LEVEL: Input should be"),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """An invalid value ends in one message that names the environment variable and the rule."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_auth_token_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The auth token appears in no repr, str, or settings error, even next to a bad setting."""
    secret = "s3cr3t-token-do-not-print"
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", secret)
    settings = Settings()
    assert secret not in repr(settings)
    assert secret not in str(settings)
    monkeypatch.setenv("CAMPAIGN_PLIVO_TIMEOUT_S", "-1")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert secret not in str(raised.value)


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exported but empty variable counts as not set, as in a docker-compose file."""
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", "")
    monkeypatch.setenv("PLIVO_AUTH_ID", "")
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", "")
    settings = load_settings()
    assert settings.database_url is None
    assert not settings.has_plivo_credentials


def test_request_spacing_never_fits_more_than_the_window_allows() -> None:
    """Requests spaced at the rate used fit at most 300 in any closed 5 s window; 0 is no limit."""
    from campaign.ratelimit import request_rate_per_s

    rate = request_rate_per_s(300, 5.0)
    assert rate is not None
    # Requests at 0, 1/rate, 2/rate, ...: how many land in [0, 5] inclusive?
    assert int(5.0 * rate) + 1 <= 300
    assert request_rate_per_s(0, 5.0) is None


def test_reconcile_waits_at_least_a_lease() -> None:
    """CAMPAIGN_RECONCILE_AFTER_S shorter than the lease (plus a margin) is refused naming both:
    reconcile would take a request still in a worker's hands for one never placed."""
    with pytest.raises(SettingsError) as raised:
        load_settings(reconcile_after_s=0, worker_lease_s=180)
    message = str(raised.value)
    assert "CAMPAIGN_RECONCILE_AFTER_S (0)" in message
    assert "CAMPAIGN_WORKER_LEASE_S + 60 (240)" in message
    assert load_settings(reconcile_after_s=240, worker_lease_s=180).reconcile_after_s == 240


def test_metrics_token_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """CAMPAIGN_METRICS_TOKEN is read as a secret (never in a repr); empty means unset; one that
    cannot travel in an HTTP header is refused naming the variable, not the value."""
    monkeypatch.setenv("CAMPAIGN_METRICS_TOKEN", "s3cret-token")
    monkeypatch.setenv("CAMPAIGN_METRICS_REFRESH_S", "2.5")
    settings = load_settings()
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "s3cret-token"
    assert settings.metrics_refresh_s == 2.5
    assert "s3cret-token" not in repr(settings)
    monkeypatch.setenv("CAMPAIGN_METRICS_TOKEN", "")
    assert load_settings().metrics_token is None
    monkeypatch.setenv("CAMPAIGN_METRICS_TOKEN", "two words-s3cret")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(
        "invalid setting CAMPAIGN_METRICS_TOKEN: must be printable ASCII without spaces"
    )
    assert "s3cret" not in str(raised.value)
