"""The admin's statements are planned for the values they carry, every time."""

from __future__ import annotations

from engine.admin.facade import Admin
from engine.pg.store import Store
from tests.conftest import make_settings, unique_namespace


async def test_the_admins_connections_plan_each_statement_for_its_values() -> None:
    """A filter's values change how many rows match by orders of magnitude; the generic
    plan PostgreSQL gives a prepared statement after five runs is made for none of them.
    Workers keep the default: their statements run often and match alike."""
    settings = make_settings(unique_namespace())
    store = Store(settings)
    await store.connect(require_schema=False)
    try:
        await store.migrate()
        assert await store.pool.fetchval("SHOW plan_cache_mode") == "auto"
        async with Admin(settings, broker=False) as admin:
            mode = await admin.store.pool.fetchval("SHOW plan_cache_mode")
        assert mode == "force_custom_plan"
    finally:
        await store.drop_schema()
        await store.close()
