"""One snapshot per interval per server process, fanned out to every page watching.

Each thing watched (the campaigns list, or one campaign) has one task while at least one page
listens, and none otherwise: it computes a snapshot, hands the same object to every listener,
then waits at least `refresh_s` (the debounce) and at most `poll_s` (the fallback when nothing
is notified) before the next. A NOTIFY on campaign_work, campaign_room or campaign_changed
(a load, a resume, a hangup freeing a slot, an action on the dashboard or the CLI) ends the
wait early; 100 pages cost the database what one costs.

A page that joins while a change is pending (woken, not yet computed) waits for the next
snapshot rather than get the last one, which is older than the page itself (a pause's page
would otherwise show "running" again for a moment). When the server stops, every stream gets
CLOSED and ends (the app's on_shutdown), so an open page never holds a SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import asyncpg

from campaign import db

logger = logging.getLogger(__name__)

CHANNELS = ("campaign_work", "campaign_room", "campaign_changed")
Snapshot = dict[str, Any] | None
# What a page's queue gets when the server stops: its stream ends.
CLOSED: Final = "closed"
Item = Snapshot | Literal["closed"]
Compute = Callable[[str | None], Awaitable[Snapshot]]


@dataclass
class _Watch:
    listeners: set[asyncio.Queue[Item]] = field(default_factory=set)
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    last: Snapshot = None
    computed: bool = False
    task: asyncio.Task[None] | None = None


class Hub:
    """Snapshots by what is watched (None: the campaigns list; else a campaign's name)."""

    def __init__(
        self, pool: asyncpg.Pool, compute: Compute, *, refresh_s: float, poll_s: float
    ) -> None:
        self._pool = pool
        self._compute = compute
        self._refresh_s = refresh_s
        self._poll_s = max(poll_s, refresh_s)
        self._watches: dict[str | None, _Watch] = {}
        self._listener: asyncpg.pool.PoolConnectionProxy | None = None
        self._listening: asyncio.Task[None] | None = None
        # How many snapshots were computed (tests and the bench count them).
        self.computations = 0
        self._closed = False

    @property
    def watching(self) -> int:
        """How many pages watch something now."""
        return sum(len(watch.listeners) for watch in self._watches.values())

    @contextlib.asynccontextmanager
    async def watch(self, key: str | None) -> AsyncIterator[asyncio.Queue[Item]]:
        """A queue that gets each new snapshot of `key` (the latest only, if it falls behind),
        and CLOSED when the server stops."""
        queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=1)
        if self._closed:
            queue.put_nowait(CLOSED)
            yield queue
            return
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch()
            watch.task = asyncio.create_task(self._run(key, watch))
        if watch.computed and not watch.woken.is_set():
            queue.put_nowait(watch.last)
        watch.listeners.add(queue)
        if self._listening is None:
            self._listening = asyncio.create_task(self._listen())
        try:
            yield queue
        finally:
            watch.listeners.discard(queue)
            if not watch.listeners and self._watches.get(key) is watch:
                del self._watches[key]
                if watch.task is not None:
                    watch.task.cancel()
            if not self._watches:
                await self._stop_listening()

    def wake(self, *_args: object) -> None:
        """Something changed: every watch computes again once its debounce allows."""
        for watch in self._watches.values():
            watch.woken.set()

    async def close(self) -> None:
        """Stop computing and end every page's stream (CLOSED); later pages get CLOSED too."""
        self._closed = True
        for watch in list(self._watches.values()):
            if watch.task is not None:
                watch.task.cancel()
            for queue in watch.listeners:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(CLOSED)
        self._watches.clear()
        await self._stop_listening()

    async def _run(self, key: str | None, watch: _Watch) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            watch.woken.clear()
            try:
                snapshot = await self._compute(key)
            except db.DATABASE_ERRORS as error:
                logger.warning("dashboard: a snapshot failed (%s)", type(error).__name__)
            else:
                self.computations += 1
                watch.last, watch.computed = snapshot, True
                for queue in watch.listeners:
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(snapshot)
            await asyncio.sleep(max(0.0, started + self._refresh_s - loop.time()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, started + self._poll_s - loop.time())):
                    await watch.woken.wait()

    async def _listen(self) -> None:
        """Hold one connection of the dashboard's pool LISTENing while anyone watches."""
        try:
            connection = await self._pool.acquire()
        except db.DATABASE_ERRORS as error:
            logger.warning("dashboard: cannot LISTEN (%s); polling", type(error).__name__)
            return
        self._listener = connection
        try:
            for channel in CHANNELS:
                await connection.add_listener(channel, self.wake)
        except db.DATABASE_ERRORS as error:
            logger.warning("dashboard: cannot LISTEN (%s); polling", type(error).__name__)

    async def _stop_listening(self) -> None:
        listening, self._listening = self._listening, None
        if listening is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await listening
        connection, self._listener = self._listener, None
        if connection is not None:
            with contextlib.suppress(*db.DATABASE_ERRORS):
                for channel in CHANNELS:
                    await connection.remove_listener(channel, self.wake)
            with contextlib.suppress(*db.DATABASE_ERRORS):
                await self._pool.release(connection)
