"""Fixtures for dead-letter tests: a migrated schema per test, dropped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from engine.amqp.broker import Broker
from engine.deadletters.recorder import Recorder
from engine.pg.store import Store
from engine.settings import QueueType, Settings
from tests.conftest import delete_namespace, make_settings, unique_namespace


@pytest.fixture
async def dead_settings(queue_type: QueueType) -> AsyncIterator[Settings]:
    """A namespace whose schema is migrated; queues and schema removed afterwards."""
    config = make_settings(unique_namespace(), queue_type)
    store = Store(config)
    await store.connect(require_schema=False)
    await store.migrate()
    yield config
    await store.drop_schema()
    await store.close()
    await delete_namespace(config.namespace, ["default"])


@pytest.fixture
async def store(dead_settings: Settings) -> AsyncIterator[Store]:
    s = Store(dead_settings)
    await s.connect()
    yield s
    await s.close()


class TcpProxy:
    """A TCP proxy to PostgreSQL that a test can cut and restore: a real outage, locally."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.close()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._links.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links.difference_update({writer, up_writer})


StartRecorder = Callable[[], Awaitable[Recorder]]


@pytest.fixture
async def start_recorder(dead_settings: Settings, store: Store) -> AsyncIterator[StartRecorder]:
    """Factory: a recorder on a broker of its own; every one started is stopped afterwards."""
    broker = Broker(dead_settings, name="test-recorder")
    await broker.connect()
    started: list[Recorder] = []

    async def start() -> Recorder:
        recorder = Recorder(broker, store)
        await recorder.start()
        started.append(recorder)
        return recorder

    yield start
    for recorder in started:
        await recorder.stop()
    await broker.close()


@pytest.fixture
async def pg_proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy()
    await proxy.start()
    yield proxy
    await proxy.cut()
