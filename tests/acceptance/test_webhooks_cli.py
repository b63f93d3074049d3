"""`campaign load --webhook-url`, `campaign webhook secret | list | redeliver` and a worker
process delivering, run as a user runs them: subprocesses, their output and exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from cli_fixtures import LOAD_OPTIONS, fetch_rows, run, run_cli, start_worker, worker_env
from plivo_fixtures import simulator_config
from standardwebhooks import Webhook
from webhook_fixtures import receiver
from worker_fixtures import wait_for

from campaign.simulator import running_simulator

CSV = "phone\n+14155551000\n+14155551001\n+14155551002\n"


def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text(CSV)
    return path


def test_a_private_webhook_url_is_refused_naming_the_option(
    campaign_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A URL on loopback, a private network, a link-local address or a name that resolves to
    loopback is refused with one line naming --webhook-url (or CAMPAIGN_WEBHOOK_URL when it
    came from there), and no campaign is made; a malformed URL too."""
    contacts = str(csv_file(tmp_path))
    for url, words in (
        ("http://127.0.0.1:9/hooks", "127.0.0.1 is a loopback address"),
        ("https://10.0.0.7/hooks", "10.0.0.7 is a private address"),
        ("http://169.254.169.254/latest", "is a link-local address"),
        ("http://localhost:9/hooks", "localhost resolves to"),
        ("ftp://example.com/hooks", "is not an http:// or https:// URL"),
    ):
        result = run(
            campaign_command, cli_env, "load", contacts, "--name", "refused",
            *LOAD_OPTIONS, "--webhook-url", url,
        )  # fmt: skip
        assert result.returncode == 2, (url, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("campaign: error: --webhook-url: "), lines[0]
        assert words in lines[0], lines[0]
    from_setting = run(
        campaign_command, {**cli_env, "CAMPAIGN_WEBHOOK_URL": "http://127.0.0.1:9/hooks"},
        "load", contacts, "--name", "refused", *LOAD_OPTIONS,
    )  # fmt: skip
    assert from_setting.returncode == 2
    assert from_setting.stderr.startswith("campaign: error: CAMPAIGN_WEBHOOK_URL: 127.0.0.1")
    assert run(campaign_command, cli_env, "list").stdout.count("refused") == 0


async def test_secret_list_and_redeliver(
    campaign_command: list[str], cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """With private addresses allowed, a load stores the endpoint; `webhook secret URL` prints
    its generated secret alone; `webhook list --json` shows the campaign's first event
    pending; `redeliver` of a failed one puts it back, and an unknown id is an error."""
    env = {**cli_env, "CAMPAIGN_WEBHOOK_ALLOW_PRIVATE": "1"}
    url = "http://127.0.0.1:9/hooks"
    loaded = run(
        campaign_command, env, "load", str(csv_file(tmp_path)), "--name", "hooked",
        *LOAD_OPTIONS, "--webhook-url", url,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    shown = run(campaign_command, env, "webhook", "secret", url)
    assert shown.returncode == 0, shown.stderr
    stored = await fetch_rows(database_url, "SELECT secret FROM webhook_endpoints")
    assert shown.stdout == stored[0]["secret"] + "\n"
    assert shown.stdout.startswith("whsec_")
    unknown = run(campaign_command, env, "webhook", "secret", "https://example.com/other")
    assert unknown.returncode == 2
    assert "no webhook endpoint has the URL" in unknown.stderr

    listed = run(campaign_command, env, "webhook", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["type"], row["status"], row["campaign"]) for row in rows] == [
        ("campaign.status_changed", "pending", "hooked")
    ]
    assert run(campaign_command, env, "webhook", "list", "--failed").stdout == ""

    await fetch_rows(
        database_url, "UPDATE webhook_deliveries SET status = 'failed', last_status = 500"
    )
    failed = run(campaign_command, env, "webhook", "list", "--failed")
    assert "failed" in failed.stdout
    assert "HTTP 500" in failed.stdout
    again = run(campaign_command, env, "webhook", "redeliver", "--failed", "--since", "2000-01-01")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "1 deliveries will be sent again\n"
    rows = await fetch_rows(database_url, "SELECT status, attempts FROM webhook_deliveries")
    assert [tuple(row) for row in rows] == [("pending", 0)]
    missing = run(campaign_command, env, "webhook", "redeliver", "999")
    assert missing.returncode == 1
    assert "no such delivery" in missing.stderr
    both = run(campaign_command, env, "webhook", "redeliver", "1", "--failed")
    assert both.returncode == 2


@pytest.mark.slow
async def test_a_worker_killed_mid_run_loses_no_event(
    campaign_command: list[str], cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """A worker process dialing the simulator and delivering to a slow receiver is SIGKILLed
    with events in the outbox and in flight; a second worker delivers the rest: every contact
    settled in the database has exactly one verified contact.settled at the receiver (after
    repeats are dropped), and the campaign one campaign.completed."""
    rows = 80
    path = tmp_path / "many.csv"
    path.write_text("phone\n" + "".join(f"+1415556{index:04d}\n" for index in range(rows)))
    async with (
        receiver() as hooks,
        running_simulator(simulator_config(calls_per_second=10_000.0)) as plivo,
    ):
        hooks.delay_s = 0.05
        env = worker_env(
            cli_env,
            plivo,
            CAMPAIGN_LOG_LEVEL="warning",
            CAMPAIGN_ACCOUNT_CPS="40",
            CAMPAIGN_WEBHOOK_ALLOW_PRIVATE="1",
            CAMPAIGN_WEBHOOK_TIMEOUT_S="1",
            CAMPAIGN_WEBHOOK_RETRY_DELAYS="0,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
            CAMPAIGN_WEBHOOK_POLL_INTERVAL_S="0.05",
            CAMPAIGN_WEBHOOK_BATCH_SIZE="5",
        )
        code, _out, err = await run_cli(
            campaign_command, env, "load", str(path), "--name", "killed", *LOAD_OPTIONS,
            "--batch-size", "5", "--webhook-url", hooks.url,
        )  # fmt: skip
        assert code == 0, err
        first = await start_worker(campaign_command, env, quiet=True)

        async def some_delivered() -> bool:
            return len(hooks.accepted()) >= 15

        await wait_for(some_delivered, timeout_s=30)
        first.kill()  # SIGKILL: no clean-up of any kind
        await first.wait()
        second = await start_worker(campaign_command, env, quiet=True)
        try:

            async def all_delivered() -> bool:
                left = await fetch_rows(
                    database_url,
                    "SELECT count(*) FILTER (WHERE status <> 'delivered') AS pending,"
                    " bool_or(type = 'campaign.completed') AS completed"
                    " FROM webhook_deliveries",
                )
                return bool(left[0]["completed"]) and left[0]["pending"] == 0

            await wait_for(all_delivered, timeout_s=60)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
    secret = (await fetch_rows(database_url, "SELECT secret FROM webhook_endpoints"))[0]["secret"]
    events = {
        request.headers["webhook-id"]: Webhook(secret).verify(request.body, request.headers)
        for request in hooks.accepted()
    }
    received = Counter(
        event["data"]["destination"]
        for event in events.values()
        if event["type"] == "contact.settled"
    )
    settled = await fetch_rows(
        database_url,
        "SELECT destination FROM contacts WHERE status NOT IN ('pending', 'claimed', 'sending',"
        " 'unknown')",
    )
    assert len(settled) > rows // 2
    assert received == Counter(row["destination"] for row in settled)
    assert sum(event["type"] == "campaign.completed" for event in events.values()) == 1
