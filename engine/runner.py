"""A worker process: the consumer, plus the recorder and relay that keep dead letters safe.

Every worker runs a recorder and a relay by default, so a single ``lazarus worker``
is a complete deployment; ``lazarus recorder`` runs them alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from engine.broker import Broker
from engine.errors import SchemaMissing, ServiceUnavailable
from engine.recorder import Recorder
from engine.relay import run_relay
from engine.settings import Settings
from engine.store import Store
from engine.worker import Worker

log = logging.getLogger("lazarus.runner")


class DeadLetterService:
    """The recorder and the relay on one broker connection and one store."""

    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.store = Store(settings, min_size=0, max_size=3)
        self.recorder = Recorder(broker, self.store)
        self.broker = broker
        self._relay: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start recording; SchemaMissing if the namespace is not migrated.

        If PostgreSQL is down the service still starts: dead letters wait in their
        queue and the recorder stores them once the database answers.
        """
        await self.store.connect(require_schema=False)
        try:
            await self.store.require_schema()
        except SchemaMissing:
            await self.store.close()
            raise
        except (ServiceUnavailable, OSError) as exc:
            log.warning("PostgreSQL unavailable at start (%r); dead letters will wait", exc)
        await self.recorder.start()
        self._relay = asyncio.create_task(run_relay(self.store, self.broker), name="lazarus-relay")

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
        await self.recorder.stop()
        await self.store.close()


async def run_worker(
    settings: Settings, queues: list[str], concurrency: int, stop: asyncio.Event, *, record: bool
) -> None:
    """Run until ``stop`` is set, then drain in-flight jobs within the grace period."""
    worker = Worker(settings, queues, concurrency=concurrency)
    await worker.start()
    service = DeadLetterService(settings, worker.broker) if record else None
    try:
        if service is not None:
            await service.start()
        await stop.wait()
        log.info("stopping: no new jobs, finishing in-flight ones")
    finally:
        if service is not None:
            await service.stop()
        await worker.stop()


async def run_recorder(settings: Settings, stop: asyncio.Event) -> None:
    async with Broker(settings, name="lazarus-recorder") as broker:
        service = DeadLetterService(settings, broker)
        await service.start()
        try:
            await stop.wait()
        finally:
            await service.stop()
