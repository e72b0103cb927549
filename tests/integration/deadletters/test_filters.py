"""Filters over the dead-letter table as a person types them."""

from __future__ import annotations

from dataclasses import replace

from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.settings import Settings
from tests.integration.deadletters.test_forged_headers import old_row


async def test_an_error_type_filter_matches_the_short_class_name_too(
    dead_settings: Settings, store: Store
) -> None:
    row = old_row("a", queue="default", job_type="t.x")
    await store.insert_dead([
        replace(row, job_id="a", error_type="asyncio.TimeoutError"),
        replace(row, job_id="b", error_type="TimeoutError"),
        replace(row, job_id="c", error_type="myapp.NotTimeoutError"),
        replace(row, job_id="d", error_type="myapp.errors.Bounce"),
    ])  # fmt: skip

    async def ids(error_type: str) -> set[str]:
        rows = await store.list_dead(DeadFilter(error_type=error_type), limit=10)
        return {r["job_id"] for r in rows}

    assert await ids("TimeoutError") == {"a", "b"}
    assert await ids("asyncio.TimeoutError") == {"a"}
    assert await ids("Bounce") == {"d"}
    assert await ids("errors.Bounce") == {"d"}
    assert await ids("%") == set()  # typed text, never a pattern
