"""The remaining crash points of docs/dead-letters.md, each made to happen on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from engine import Client, JobContext, RetryPolicy, handler
from engine.admin.facade import Admin
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.settings import Settings
from tests.conftest import wait_for
from tests.integration.deadletters.test_recording import running
from tests.integration.lifecycle.conftest import tracking_worker

runs: dict[str, list[int]] = {}
cured: set[str] = set()


@handler("crash.points", policy=RetryPolicy(attempts=1, max_retries=0))
async def points(ctx: JobContext) -> None:
    runs.setdefault(ctx.job_id, []).append(ctx.message.generation)
    if ctx.job_id not in cured:
        raise RuntimeError("fails until cured")


async def rows(store: Store, job_id: str) -> list[tuple[int, str]]:
    return [(r["generation"], r["status"]) for r in await store.history(job_id)]


async def test_a_refused_dead_letter_publish_never_acks_the_job_away(
    dead_settings: Settings, store: Store, refuse_one_dead_letter: list[int]
) -> None:
    """W2 fails in a worker without a database: the dead letter is not confirmed, so the
    job is nacked and dies again."""
    async with running(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("crash.points", None)
        await wait_for(lambda: _has_rows(store, job_id), what="the dead letter after the retry")
    assert not refuse_one_dead_letter
    assert len(runs[job_id]) == 2  # ran, refused, redelivered, ran and died
    assert await rows(store, job_id) == [(0, "dead")]


async def _has_rows(store: Store, job_id: str) -> bool:
    return bool(await store.history(job_id))


async def test_a_relay_that_dies_after_the_confirm_republishes_and_the_job_runs_once(
    dead_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay published and died before its commit: the next pass publishes the same
    generation again; the tracking worker's claim lets only one copy run."""
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("crash.points", None)
        await wait_for(lambda: _has_rows(store, job_id), what="the first death")
        cured.add(job_id)
        real_claim = Store.claim_outbox

        @asynccontextmanager
        async def die_before_commit(self: Store, limit: int) -> AsyncIterator[list[Any]]:
            async with real_claim(self, limit) as claimed:
                yield claimed
                if claimed:
                    raise ConnectionResetError("the relay dies before its commit (on purpose)")

        monkeypatch.setattr(Store, "claim_outbox", die_before_commit)
        async with Admin(dead_settings) as admin:
            with pytest.raises(ConnectionResetError):
                await admin.requeue(DeadFilter(ids=(job_id,)))
            monkeypatch.setattr(Store, "claim_outbox", real_claim)
            assert await admin.relay() == 1  # the same message, published a second time
        await wait_for(lambda: runs[job_id][-1:] == [1], what="the requeued run")
        await asyncio.sleep(1.5)  # the second copy arrives and loses its claim
    assert runs[job_id] == [0, 1]
    assert await rows(store, job_id) == [(0, "requeued")]
