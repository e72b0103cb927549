"""A worker process: the consumer, plus the recorder and relay that keep dead letters safe.

Every worker runs a recorder and a relay by default, so a single ``lazarus worker``
is a complete deployment; ``lazarus recorder`` runs them alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from engine.amqp.broker import Broker
from engine.amqp.port import BrokerPort
from engine.background import Background
from engine.deadletters.reanimate import run_reanimator
from engine.deadletters.recorder import Recorder
from engine.deadletters.retention import run_pruner
from engine.errors import SchemaMissing, ServiceUnavailable
from engine.outbox.relay import run_relay
from engine.pg.store import Store
from engine.pg.workers import WorkerInfo, keep_registered
from engine.settings import Settings
from engine.worker.consume import Worker

log = logging.getLogger("lazarus.runner")


class DeadLetterService:
    """The recorder, the relay, the reanimator and the pruner on one broker connection and
    one store."""

    def __init__(
        self,
        settings: Settings,
        broker: BrokerPort,
        store: Store | None = None,
        *,
        reanimate_interval: float = 30.0,
    ) -> None:
        self.store = store or Store(settings, min_size=0, max_size=3)
        self._owns_store = store is None
        self.recorder = Recorder(broker, self.store)
        self.settings = settings
        self.broker = broker
        self.reanimate_interval = reanimate_interval
        self._relay = Background("lazarus-relay")
        self._reanimator = Background("lazarus-reanimator")
        self._pruner = Background("lazarus-pruner")

    async def start(self) -> None:
        """Start recording; SchemaMissing if the namespace is not migrated.

        If PostgreSQL is down the service still starts: dead letters wait in their
        queue and the recorder stores them once the database answers.
        """
        if self._owns_store:
            await open_store(self.store)
        await self.recorder.start()
        self._relay.start(run_relay(self.store, self.broker))
        self._reanimator.start(
            run_reanimator(self.store, self.broker, interval=self.reanimate_interval)
        )
        self._pruner.start(run_pruner(self.settings, self.store, self.broker))

    async def stop(self) -> None:
        for loop in (self._relay, self._reanimator, self._pruner):
            await loop.stop()
        await self.recorder.stop()
        if self._owns_store:
            await self.store.close()


async def open_store(store: Store) -> None:
    """Connect lazily; SchemaMissing if not migrated, only a warning if PostgreSQL is down
    (dead letters and job states wait, and are written once it answers)."""
    await store.connect(require_schema=False)
    try:
        await store.require_schema()
    except SchemaMissing:
        await store.close()
        raise
    except (ServiceUnavailable, OSError) as exc:
        log.warning("PostgreSQL unavailable at start (%r); dead letters will wait", exc)


async def unless_stopped(start: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``start`` unless ``stop`` is set first, in which case cancel it; True if it ran.

    Connecting may wait on a service for LAZARUS_CONNECT_TIMEOUT: a SIGTERM or SIGINT
    meanwhile stops the process at once instead of being noticed only after.
    """
    starting = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
    if starting.cancelled():
        log.info("stopped while starting")
        return False
    starting.result()  # raises what starting raised
    return True


async def run_worker(
    settings: Settings, queues: list[str], concurrency: int, stop: asyncio.Event, *, record: bool
) -> None:
    """Run until ``stop`` is set, then drain in-flight jobs within the grace period.

    With ``record`` (the default) the worker also tracks job states, records dead
    letters and relays requeues; without it, it needs no database at all. ``stop``
    set while it is still starting stops it there.
    """
    store = Store(settings, min_size=0, max_size=8) if record else None
    worker = Worker(settings, queues, concurrency=concurrency, store=store)
    service = DeadLetterService(settings, worker.broker, store) if store is not None else None
    registration = Background("lazarus-registry")

    async def start() -> None:
        if store is not None:
            await open_store(store)
        await worker.start()
        if service is not None:
            await service.start()
        if store is not None:
            info = WorkerInfo.of_this_process(worker.worker_id, queues)
            registration.start(keep_registered(store, info))

    try:
        if await unless_stopped(start(), stop):
            await stop.wait()
            log.info("stopping: no new jobs, finishing in-flight ones")
    finally:
        await registration.stop()
        if service is not None:
            await service.stop()
        await worker.stop()
        if store is not None:
            await store.close()


async def run_recorder(settings: Settings, stop: asyncio.Event) -> None:
    """Record dead letters and relay requeues until ``stop`` is set (even while starting)."""
    broker = Broker(settings, name="lazarus-recorder")
    service = DeadLetterService(settings, broker)

    async def start() -> None:
        await broker.connect()
        await service.start()

    try:
        if await unless_stopped(start(), stop):
            await stop.wait()
    finally:
        await service.stop()
        await broker.close()
