"""The engine's web app and the simulator side by side on loopback, for tests whose calls call
back: the simulator's signed callbacks (and answer fetches, and keys) reach the engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from plivo_fixtures import AUTH_TOKEN, simulator_config

from campaign.metrics import Metrics
from campaign.simulator import Ledger, RunningSimulator, running_simulator
from campaign.web import WebConfig, serving


@dataclass
class Rig:
    """The engine's web app (callbacks, answers, keys) and the simulator, both on loopback."""

    app_url: str
    simulator: RunningSimulator

    @property
    def ledger(self) -> Ledger:
        return self.simulator.ledger


@contextlib.asynccontextmanager
async def rig(
    pool: asyncpg.Pool,
    status_pool: asyncpg.Pool,
    *,
    account_capped: bool = False,
    **simulator: Any,
) -> AsyncIterator[Rig]:
    """Both running; every call answered unless the test says otherwise (`outcome_shares`);
    `account_capped`: the account has a cap of concurrent calls (its hangups wake workers)."""
    async with (
        serving(
            pool,
            Metrics(),
            WebConfig(public_url=None, auth_tokens=(AUTH_TOKEN,), account_capped=account_capped),
            "127.0.0.1",
            0,
            status_pool=status_pool,
        ) as app_url,
        running_simulator(
            simulator_config(
                send_callbacks=True, **{"outcome_shares": {"completed": 1.0}, **simulator}
            )
        ) as running,
    ):
        yield Rig(app_url, running)
