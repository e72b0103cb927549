"""``lazarus demo``: the whole flow on the example handlers, for a newcomer to watch.

Migrates the schema, runs a worker with its recorder in this process, publishes
jobs that succeed, retry and die, waits for the dead ones to be stored, and
prints them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engine.admin import Admin
from engine.client import Client
from engine.filters import DeadFilter
from engine.registry import load_modules
from engine.runner import DeadLetterService
from engine.settings import Settings
from engine.store import Store
from engine.worker import Worker

log = logging.getLogger("lazarus.demo")

DEMO_JOBS: list[tuple[str, Any, str]] = [
    ("greet", {"name": "Ada"}, "succeeds at once"),
    ("greet", {"name": "Grace"}, "succeeds at once"),
    ("flaky", {"fail_times": 2}, "fails twice, succeeds on its third in-process try"),
    ("flaky", {"fail_times": 99}, "fails every try: 3 broker retries (1, 2, 4 s), then dies"),
    ("always_fails", None, "fails: 2 broker retries (0.5, 1 s), then dies"),
    ("invalid_input", {"bad": True}, "permanent error: dies without a retry"),
    ("no_such_type", {}, "unknown job type: dies with a clear reason"),
]
EXPECTED_DEAD = 4


async def run_demo(settings: Settings, *, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run the demo; return the dead letters it produced."""
    load_modules(["handlers.examples"])
    store = Store(settings)
    await store.connect(require_schema=False)
    try:
        await store.migrate()
    finally:
        await store.close()
    worker = Worker(settings, ["default"], concurrency=8)
    await worker.start()
    service = DeadLetterService(settings, worker.broker)
    await service.start()
    try:
        async with Client(settings, broker=worker.broker) as client:
            ids = []
            for job_type, payload, what in DEMO_JOBS:
                job_id = await client.enqueue(job_type, payload)
                ids.append(job_id)
                log.info("published %s %s: %s", job_type, job_id, what)
        async with Admin(settings, actor="lazarus-demo") as admin:
            selector = DeadFilter(ids=tuple(ids))
            deadline = asyncio.get_running_loop().time() + timeout
            while await admin.count(selector) < EXPECTED_DEAD:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("not every doomed job died within %.0f s", timeout)
                    break
                await asyncio.sleep(0.5)
            return await admin.list_dead(selector)
    finally:
        await service.stop()
        await worker.stop(grace=5)
