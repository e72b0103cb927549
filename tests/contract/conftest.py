"""A store per test, PostgreSQL (a migrated schema of its own, dropped afterwards) or in
memory: the contract tests run once against each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.memory.store import InMemoryStore
from engine.pg.store import Store
from tests.conftest import make_settings, unique_namespace

AnyStore = Store | InMemoryStore


@pytest.fixture(params=["pg", "memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AnyStore]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    pg = Store(make_settings(unique_namespace()), max_size=10)
    await pg.connect(require_schema=False)
    await pg.migrate()
    try:
        yield pg
    finally:
        await pg.drop_schema()
        await pg.close()
