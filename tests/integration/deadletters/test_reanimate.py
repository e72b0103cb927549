"""Automatic reanimation moves matching dead jobs back, at most max_times per job."""

from __future__ import annotations

import asyncio

from engine import Client, JobContext, RetryPolicy, Worker, handler
from engine.admin.facade import Admin
from engine.deadletters.reanimate import REANIMATOR, reanimate_once
from engine.pg.store import Store
from engine.retry import Reanimation
from engine.settings import Settings
from engine.worker.runner import DeadLetterService
from tests.conftest import wait_for

runs: dict[str, int] = {}


@handler(
    "reanimate.flaky_service",
    policy=RetryPolicy(attempts=1, max_retries=0),
    reanimate=Reanimation(error_types=("ConnectionError",), after=0.2, retries=0, max_times=2),
)
async def flaky_service(ctx: JobContext) -> None:
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    if (ctx.payload or {}).get("kind") == "bug":
        raise KeyError("a bug, not an outage")
    raise ConnectionError("the service is down")


async def rows_of(store: Store, job_id: str) -> list[tuple[int, str, str | None]]:
    return [
        (r["generation"], r["status"], r["status_changed_by"]) for r in await store.history(job_id)
    ]


async def test_matching_dead_jobs_come_back_at_most_max_times(
    dead_settings: Settings, store: Store
) -> None:
    worker = Worker(dead_settings, ["default"], concurrency=8)
    await worker.start()
    service = DeadLetterService(dead_settings, worker.broker, reanimate_interval=0.3)
    await service.start()
    try:
        async with Client(dead_settings) as client:
            outage = await client.enqueue("reanimate.flaky_service", {"kind": "outage"})
            bug = await client.enqueue("reanimate.flaky_service", {"kind": "bug"})

        async def outage_settled() -> bool:
            history = await rows_of(store, outage)
            return len(history) == 3 and history[-1][1] == "dead"

        await wait_for(outage_settled, timeout=30, what="two reanimations, then dead for good")
        await asyncio.sleep(1.0)  # the rule must not move it a third time
        assert await rows_of(store, outage) == [
            (0, "requeued", REANIMATOR),
            (1, "requeued", REANIMATOR),
            (2, "dead", None),
        ]
        assert runs[outage] == 3
        assert await rows_of(store, bug) == [(0, "dead", None)]  # KeyError is not in the rule
        assert runs[bug] == 1
        assert await reanimate_once(store, worker.broker) == 0
    finally:
        await service.stop()
        await worker.stop()
    async with Admin(dead_settings) as admin:
        audit = [e for e in await admin.audit_log(50) if e.action == "reanimate"]
    assert sum(e.count for e in audit) == 2
    assert all(e.actor == REANIMATOR for e in audit)
