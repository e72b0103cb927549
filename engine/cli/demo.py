"""``lazarus demo``: the whole flow on the example handlers, for a newcomer to watch.

Migrates the schema, runs a worker in this process as ``lazarus worker`` runs one (job
states tracked in PostgreSQL, dead letters stored, requeues relayed), publishes jobs
that succeed, retry and die, waits until every one has finished, and returns what
happened to each, and the dead letters. What it leaves behind is what ``lazarus jobs
list``, ``lazarus dead list`` and the dashboard show afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from engine.admin.facade import Admin
from engine.admin.rows import DeadLetterSummary
from engine.client import Client
from engine.errors import JobNotFound
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.registry import load_modules
from engine.settings import Settings
from engine.states import JobState
from engine.worker.consume import Worker
from engine.worker.runner import DeadLetterService

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
FINAL = {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: each job as published and as it ended, and the dead letters."""

    jobs: list[dict[str, Any]]  # job_id, job_type, expected, state, attempt
    dead: list[DeadLetterSummary]


async def run_demo(settings: Settings, *, timeout: float = 60.0) -> DemoResult:
    """Run the demo; return each job's final state and the dead letters it produced."""
    # The job of an unknown type is there to die as such: no rolling deploy to wait for.
    settings = settings.model_copy(update={"unknown_type_grace": 0.0})
    load_modules(["handlers.examples"])
    store = Store(settings, min_size=0, max_size=8)
    await store.connect(require_schema=False)
    try:
        await store.migrate()
        worker = Worker(settings, ["default"], concurrency=8, store=store)
        await worker.start()
        service = DeadLetterService(settings, worker.broker, store)
        await service.start()
        try:
            published = await publish(settings, worker)
            async with Admin(settings, actor="lazarus-demo") as admin:
                jobs = await wait_until_finished(admin, published, timeout)
                dead = await admin.list_dead(DeadFilter(ids=tuple(j["job_id"] for j in jobs)))
            return DemoResult(jobs, dead)
        finally:
            await service.stop()
            await worker.stop(grace=5)
    finally:
        await store.close()


async def publish(settings: Settings, worker: Worker) -> list[dict[str, Any]]:
    published = []
    async with Client(settings, broker=worker.broker) as client:
        for job_type, payload, expected in DEMO_JOBS:
            job_id = await client.enqueue(job_type, payload)
            published.append({"job_id": job_id, "job_type": job_type, "expected": expected})
            log.info("published %s %s: %s", job_type, job_id, expected)
    return published


async def wait_until_finished(
    admin: Admin, published: list[dict[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    """Each published job with its state and attempt once every job is final (or at the
    timeout, with a warning naming those that are not)."""
    lifecycle = admin.jobs
    ids = tuple(job["job_id"] for job in published)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        # A job of a type no worker knows dies before it is tracked: its dead letter is
        # the only row it has.
        died = {r.job_id for r in await admin.list_dead(DeadFilter(ids=ids))}
        jobs = []
        for job in published:
            state: str | None
            attempt: int | None
            try:
                found = await lifecycle.show(job["job_id"])
                state, attempt = found.state, found.attempt
            except JobNotFound:
                state, attempt = JobState.DEAD if job["job_id"] in died else None, None
            jobs.append(job | {"state": state, "attempt": attempt})
        # A dead job's row says DEAD before its dead letter is stored: wait for both.
        waiting = [
            j["job_id"]
            for j in jobs
            if j["state"] not in FINAL or (j["state"] == JobState.DEAD and j["job_id"] not in died)
        ]
        if not waiting:
            return jobs
        if loop.time() > deadline:
            log.warning("not finished within %.0f s: %s", timeout, ", ".join(waiting))
            return jobs
        await asyncio.sleep(0.5)
