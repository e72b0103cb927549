"""A bulk requeue publishes batch k while it stages batch k+1; nothing is lost or doubled."""

from __future__ import annotations

from typing import Any

import pytest

from engine import PublishFailed
from engine.admin import facade as admin_module
from engine.admin.facade import Admin
from engine.amqp.broker import Broker
from engine.amqp.topology import work_queue
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.settings import Settings
from tests.integration.deadletters.test_requeue import kill_without_worker

pytestmark = pytest.mark.usefixtures("small_batches")


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_module, "BATCH", 10)


async def statuses(store: Store) -> dict[str, int]:
    rows = await store.pool.fetch("SELECT status, count(*) AS n FROM dead_letters GROUP BY 1")
    return {r["status"]: r["n"] for r in rows}


async def queued(settings: Settings) -> int:
    async with Broker(settings) as broker:
        depth = await broker.queue_depth(work_queue(settings.namespace, "default"))
    assert depth is not None
    return depth[0]


async def test_a_requeue_of_many_batches_publishes_every_job_once(
    dead_settings: Settings, store: Store
) -> None:
    await kill_without_worker(dead_settings, store, 25)
    async with Admin(dead_settings, actor="test-admin") as admin:
        assert await admin.requeue(DeadFilter()) == 25
    assert await statuses(store) == {"requeued": 25}
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await queued(dead_settings) == 25


async def test_a_requeue_whose_publishing_fails_raises_and_leaves_the_rest_to_the_relay(
    dead_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kill_without_worker(dead_settings, store, 25)
    real = Broker.publish_many
    calls = []

    async def refuse_first(self: Broker, *args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise PublishFailed("the broker refused the batch (on purpose)")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(Broker, "publish_many", refuse_first)
    async with Admin(dead_settings, actor="test-admin") as admin:
        with pytest.raises(PublishFailed, match="on purpose"):
            await admin.requeue(DeadFilter())
        staged = (await statuses(store)).get("requeue_pending", 0)
        assert staged >= 10  # at least the first batch was committed before publishing failed
        assert await store.pool.fetchval("SELECT count(*) FROM outbox") == staged
        assert await queued(dead_settings) == 0
        assert await admin.relay() == staged
    assert await statuses(store) == {"requeued": staged} | (
        {"dead": 25 - staged} if staged < 25 else {}
    )
    assert await queued(dead_settings) == staged
