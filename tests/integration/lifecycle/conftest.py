"""Lifecycle fixtures: a migrated namespace, a tracking worker, and the admin facades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from engine.admin.facade import Admin
from engine.admin.lifecycle import Lifecycle
from engine.pg.store import Store
from engine.settings import Settings
from engine.worker.consume import Worker
from engine.worker.runner import DeadLetterService


@asynccontextmanager
async def tracking_worker(
    settings: Settings, queues: list[str] | None = None, concurrency: int = 16
) -> AsyncIterator[Worker]:
    """A worker that tracks job states, with its recorder and relay."""
    job_store = Store(settings)
    await job_store.connect()
    worker = Worker(settings, queues or ["default"], concurrency=concurrency, store=job_store)
    await worker.start()
    service = DeadLetterService(settings, worker.broker)
    await service.start()
    try:
        yield worker
    finally:
        await service.stop()
        await worker.stop(grace=5)
        await job_store.close()


@pytest.fixture
async def control(dead_settings: Settings) -> AsyncIterator[Lifecycle]:
    async with Admin(dead_settings, actor="operator") as admin:
        yield admin.jobs
