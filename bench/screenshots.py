"""Take the dashboard's screenshots for the docs: docs/dashboard-campaign.png (1280 px wide) and
docs/dashboard-phone.png (375 px wide), of the demo's campaign while a worker dials it.

    .venv/bin/python bench/screenshots.py
    .venv/bin/python bench/screenshots.py --rows 800 --dial-s 30 --out docs

A fresh database on the local PostgreSQL server (--server-url), migrated; `campaign serve` on a
free loopback port (the answers, the callbacks and the dashboard); the simulator with the demo's
callees (answers, busy lines, keypresses) in this process, calling the engine back; the demo's
campaign (`campaign demo`'s CSV and settings, calls at any hour) and a `campaign worker` process
dialing it at --cps calls per second; then headless Chromium (/usr/bin/chromium, or
CAMPAIGN_TEST_CHROMIUM) logs in with a fresh key, watches the campaign page for --dial-s seconds
and saves the two pictures. The database is dropped afterwards. Talks to nothing but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import worker as worker_bench  # bench/worker.py (bench scripts run as `python bench/<name>.py`)
from playwright.async_api import Page, async_playwright

from campaign import db, queries
from campaign.api.keys import key_hash, new_key
from campaign.config import Settings
from campaign.demo import demo_campaign, demo_message, demo_simulator_config, write_sample_csv
from campaign.destinations import Rejected
from campaign.importer import CsvSource, LoadOptions, load_csv
from campaign.models import Schedule
from campaign.simulator import running_simulator
from campaign.specs import calling_hours

NAME = "appointment-reminders"
REPOSITORY = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


class Quiet:
    """A load observer that says nothing."""

    def rejected(self, row: Rejected) -> None:
        pass

    def progressed(self, bytes_read: int) -> None:
        pass


@contextlib.asynccontextmanager
async def process(
    arguments: list[str], environment: dict[str, str], ready_url: str | None = None
) -> AsyncIterator[None]:
    """A `campaign` subprocess until the block ends (then SIGTERM), its output kept to say why
    it ended early; waits for `ready_url` to answer 200 first."""
    output = tempfile.TemporaryFile()  # noqa: SIM115  # closed in the finally below
    child = await asyncio.create_subprocess_exec(
        str(worker_bench.CAMPAIGN_EXECUTABLE),
        *arguments,
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        if ready_url is not None:
            async with aiohttp.ClientSession() as session:
                give_up = time.monotonic() + 30
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(ready_url) as reply:
                            if reply.status == 200:
                                break
                    if child.returncode is not None or time.monotonic() > give_up:
                        output.seek(0)
                        raise SystemExit(
                            f"campaign {arguments[0]} did not start:\n{output.read().decode()}"
                        )
                    await asyncio.sleep(0.1)
        yield
        if child.returncode is not None:
            output.seek(0)
            raise SystemExit(f"campaign {arguments[0]} ended early:\n{output.read().decode()}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        try:
            await asyncio.wait_for(child.wait(), 20)
        except TimeoutError:
            child.kill()
            await child.wait()
        output.close()


async def log_in(page: Page, base_url: str, key: str, next_path: str) -> None:
    await page.goto(f"{base_url}/login?next={next_path}")
    await page.fill("input#key", key)
    async with page.expect_navigation():
        await page.click("button#login-submit")


async def main_async(arguments: argparse.Namespace) -> None:
    chromium = os.environ.get("CAMPAIGN_TEST_CHROMIUM", "/usr/bin/chromium")
    arguments.out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(16)
    account = demo_simulator_config(token)
    port = worker_bench.free_port()
    engine_url = f"http://127.0.0.1:{port}"
    async with (
        worker_bench.scratch_database(arguments.server_url) as url,
        running_simulator(account) as simulator,
    ):
        settings = Settings(database_url=url)
        key = new_key()
        with tempfile.TemporaryDirectory() as folder:
            csv_path = Path(folder) / "contacts.csv"
            write_sample_csv(csv_path, arguments.rows)
            spec = demo_campaign(
                NAME, engine_url, Schedule(calling_hours=calling_hours("any")),
                demo_message(csv_path),
            )  # fmt: skip
            async with db.open_pool(settings) as pool:
                await queries.create_api_key(pool, "operator", key_hash(key), read_only=False)
                source = CsvSource(csv_path)
                try:
                    await load_csv(pool, source, spec, LoadOptions(default_region="US"), Quiet())
                finally:
                    source.close()
        environment = {
            **os.environ,
            "CAMPAIGN_DATABASE_URL": url,
            "CAMPAIGN_HTTP_PORT": str(port),
            "PLIVO_AUTH_ID": account.auth_id,
            "PLIVO_AUTH_TOKEN": token,
            "PLIVO_API_URL": simulator.base_url,
            "CAMPAIGN_ACCOUNT_CPS": format(arguments.cps, "g"),
            "CAMPAIGN_LOG_LEVEL": "warning",
        }
        # The worker serves no HTTP of its own: `campaign serve` has the port.
        worker_environment = {k: v for k, v in environment.items() if k != "CAMPAIGN_HTTP_PORT"}
        async with (
            process(["serve"], environment, ready_url=engine_url + "/healthz"),
            process(["worker"], worker_environment),
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                wide = await browser.new_page(viewport={"width": 1280, "height": 900})
                await log_in(wide, engine_url, key, f"/campaigns/{NAME}")
                print(f"watching the campaign page for {arguments.dial_s:g} s …", flush=True)
                await asyncio.sleep(arguments.dial_s)
                target = arguments.out / "dashboard-campaign.png"
                await wide.screenshot(path=target, full_page=True)
                print(f"wrote {target}")
                phone = await browser.new_page(viewport={"width": 375, "height": 812})
                await log_in(phone, engine_url, key, f"/campaigns/{NAME}")
                await asyncio.sleep(2.0)  # a live update or two
                target = arguments.out / "dashboard-phone.png"
                await phone.screenshot(path=target, full_page=True)
                print(f"wrote {target}")
            finally:
                await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=600, help="contacts of the demo campaign")
    parser.add_argument("--cps", type=float, default=10.0, help="the worker's calls per second")
    parser.add_argument("--dial-s", type=float, default=25.0, help="seconds of dialing first")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs")
    arguments = parser.parse_args()
    try:
        asyncio.run(main_async(arguments))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
