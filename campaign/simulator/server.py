"""Serving the simulator: in this event loop for tests and demos (`running_simulator`), or as
the `campaign simulator` command (`serve_simulator`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from campaign.simulator.api import LEDGER_PATH, PlivoSimulator
from campaign.simulator.config import SimulatorConfig
from campaign.simulator.ledger import Ledger


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator serving on loopback: where to reach it and what it recorded."""

    simulator: PlivoSimulator
    base_url: str

    @property
    def ledger(self) -> Ledger:
        self.simulator.promote_due_calls()
        return self.simulator.ledger

    @property
    def config(self) -> SimulatorConfig:
        return self.simulator.config


@contextlib.asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator in this event loop (a free port unless given) until the block ends."""
    simulator = PlivoSimulator(config, clock=clock)
    runner = web.AppRunner(simulator.create_app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield RunningSimulator(simulator, f"http://{bound_host}:{bound_port}")
    finally:
        await runner.cleanup()


def serve_simulator(
    config: SimulatorConfig,
    *,
    host: str,
    port: int,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until interrupted (the `campaign simulator` command)."""
    simulator = PlivoSimulator(config)
    concurrent = (
        f", at most {config.max_concurrent_calls} concurrent calls"
        if config.max_concurrent_calls
        else ""
    )
    announce(
        f"Plivo simulator on http://{host}:{port} (auth id {config.auth_id}, "
        f"{config.calls_per_second:g} calls/s{concurrent}, ledger at {LEDGER_PATH})"
    )
    web.run_app(
        simulator.create_app(),
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
    )
