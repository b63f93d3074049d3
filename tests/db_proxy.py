"""A TCP proxy in front of the tests' PostgreSQL that a test can take away and give back.

`cut()` resets every connection through it and refuses new ones, as a server that went down
does; `restore()` lets them through again. The listening socket stays open meanwhile (a new
connection is reset at once): giving its port back would let another socket take it (an
ephemeral port of the worker's own reconnects), and the proxy could not listen there again.
Everything between is real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class DatabaseProxy:
    """Forwards 127.0.0.1:<port> to the server of `upstream_url` (TCP or a unix socket); with
    `one_way_s`, each chunk arrives that long after it was read, in order (a far database)."""

    def __init__(self, upstream_url: str, one_way_s: float = 0.0) -> None:
        self._one_way_s = one_way_s
        parts = urlsplit(upstream_url)
        query = dict(parse_qsl(parts.query))
        self._socket_dir = query.get("host") if query.get("host", "").startswith("/") else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432
        self._upstream_url = upstream_url
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._down = False
        self.port = 0

    def url(self) -> str:
        """The upstream URL, pointed at the proxy (same user and database)."""
        parts = urlsplit(self._upstream_url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "host"]
        user = parts.username or "postgres"
        netloc = f"{user}@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._socket_dir is not None:
            return await asyncio.open_unix_connection(f"{self._socket_dir}/.s.PGSQL.{self._port}")
        return await asyncio.open_connection(self._host, self._port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._one_way_s > 0:
            await self._delayed_pipe(reader, writer)
            return
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _delayed_pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await chunks.get()
                await asyncio.sleep(max(due - loop.time(), 0.0))
                if data is None:
                    return
                writer.write(data)
                await writer.drain()

        deliverer = asyncio.create_task(deliver())
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                chunks.put_nowait((loop.time() + self._one_way_s, data))
            chunks.put_nowait((loop.time() + self._one_way_s, None))
            await deliverer
        deliverer.cancel()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()  # refused: reset at once
            return
        try:
            upstream_reader, upstream_writer = await self._open_upstream()
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, upstream_writer)),
            asyncio.create_task(self._pipe(upstream_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._tasks.difference_update(pipes)
        self._writers -= {writer, upstream_writer}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """The database goes away: every connection is reset, new ones are refused."""
        self._down = True
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()

    async def restore(self) -> None:
        """The database answers again, on the same port."""
        self._down = False

    async def close(self) -> None:
        """Stop listening, and reset every connection."""
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


@contextlib.asynccontextmanager
async def database_proxy(upstream_url: str, one_way_s: float = 0.0) -> AsyncIterator[DatabaseProxy]:
    proxy = DatabaseProxy(upstream_url, one_way_s)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
