"""docker-compose.yml and the Dockerfile declare what the README promises (no Docker here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from campaign.cli import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_postgres_16_with_volume_and_health_check(compose: dict[str, Any]) -> None:
    """The database service is postgres:16, keeps its data in a named volume, checks health."""
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    volume, mount = postgres["volumes"][0].split(":")
    assert mount == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_engine_migrates_then_runs_the_worker(compose: dict[str, Any]) -> None:
    """The engine waits for a healthy database, runs `campaign migrate`, then the worker."""
    engine = compose["services"]["engine"]
    assert engine["build"] == "."
    assert engine["depends_on"]["postgres"]["condition"] == "service_healthy"
    script = engine["entrypoint"][-1]
    steps = [shlex.split(step) for step in script.split("&&")]
    assert steps[0] == ["campaign", "migrate"]
    assert steps[1] == ["exec", "campaign", "worker"]


def test_engine_database_url_matches_the_postgres_service(compose: dict[str, Any]) -> None:
    """CAMPAIGN_DATABASE_URL names the postgres service with its user, password and database."""
    postgres = compose["services"]["postgres"]["environment"]
    url = compose["services"]["engine"]["environment"]["CAMPAIGN_DATABASE_URL"]
    match = re.fullmatch(r"postgresql://([^:]+):([^@]+)@postgres:5432/(\w+)", url)
    assert match is not None
    assert match.groups() == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )


def test_plivo_credentials_come_from_the_host(compose: dict[str, Any]) -> None:
    """Credentials are never written in the file: compose requires them from the environment."""
    environment = compose["services"]["engine"]["environment"]
    assert environment["PLIVO_AUTH_ID"].startswith("${PLIVO_AUTH_ID:?")
    assert environment["PLIVO_AUTH_TOKEN"].startswith("${PLIVO_AUTH_TOKEN:?")


def test_every_campaign_command_in_compose_exists(compose: dict[str, Any]) -> None:
    """Each `campaign <command>` the compose file runs is a real command of the CLI."""
    used: set[str] = set()
    for service in compose["services"].values():
        entrypoint = service.get("entrypoint", [])
        if entrypoint[:1] == ["campaign"]:
            used.add(entrypoint[1])
        elif entrypoint[:2] == ["sh", "-c"]:
            used |= set(re.findall(r"\bcampaign ([a-z]+)", entrypoint[2]))
    assert {"migrate", "worker"} <= used
    assert used <= set(cli.commands), used - set(cli.commands)


def test_dockerfile_installs_the_package_with_its_migrations() -> None:
    """The image installs campaign from the repository, migrations included, as a non-root user."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY migrations ./migrations" in dockerfile
    assert "RUN pip install ." in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["campaign"]' in dockerfile


def test_engine_serves_callbacks_and_answers(compose: dict[str, Any]) -> None:
    """The worker listens on 8080 on every interface (callbacks, the answers it serves, the keys
    pressed), published by compose, with CAMPAIGN_PUBLIC_URL from the host; the account's
    limits are settings of the host too."""
    engine = compose["services"]["engine"]
    environment = engine["environment"]
    every_interface = "0.0.0.0"  # noqa: S104  # inside a container, as the service must be
    assert (environment["CAMPAIGN_HTTP_HOST"], environment["CAMPAIGN_HTTP_PORT"]) == (
        every_interface,
        "8080",
    )
    assert "8080:8080" in engine["ports"]
    assert environment["CAMPAIGN_PUBLIC_URL"].startswith("${CAMPAIGN_PUBLIC_URL")
    assert environment["CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS"].startswith(
        "${CAMPAIGN_ACCOUNT_MAX_CONCURRENT_CALLS:-"
    )
