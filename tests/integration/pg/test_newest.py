"""The two ways of finding the newest matches of a filter (engine.pg.newest) list and
group the same dead letters; only their cost differs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from engine.filters import DeadFilter
from engine.pg import store as store_module
from engine.pg.newest import GATHER, WALK
from engine.pg.store import Store
from tests.conftest import make_settings, unique_namespace
from tests.contract.test_store import NOW, death


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    store = Store(make_settings(unique_namespace()))
    await store.connect(require_schema=False)
    await store.migrate()
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


async def test_walking_and_gathering_find_the_same_newest_matches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    deaths = [
        replace(
            death(f"j{i}", job_type=f"t.{i % 3}", error_type=f"E{i % 2}"),
            payload={"customer": i % 7, "tags": [f"t{i % 5}"]},
            error_message=f"failed on item {i}",
            died_at=NOW - timedelta(minutes=300 - i),
        )
        for i in range(300)
    ]
    await store.insert_dead(deaths)
    await store.pool.execute("ANALYZE dead_letters")
    selectors = [
        DeadFilter(payload='{"customer": 3}'),
        DeadFilter(payload='{"tags": ["t1"]}', job_type="t.2"),
        DeadFilter(died_before=NOW - timedelta(minutes=250)),
        DeadFilter(died_after=NOW - timedelta(minutes=200), died_before=NOW - timedelta(hours=1)),
        DeadFilter(error_text="item 1"),
    ]
    found: dict[str, list[Any]] = {}
    for order in (WALK, GATHER):
        monkeypatch.setattr(store_module, "newest_order", lambda *a, _o=order, **k: _o)
        found[order] = []
        for selector in selectors:
            first = await store.list_dead(selector, limit=7)
            second = await store.list_dead(selector, limit=7, before_id=first[-1]["id"])
            groups = await store.dead_groups(selector, newest=20)
            found[order].append(([r["job_id"] for r in first + second], [tuple(g) for g in groups]))
    assert found[WALK] == found[GATHER]
    assert all(listed for listed, _ in found[WALK])
