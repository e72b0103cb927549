"""Migrations keep what a namespace holds: a schema at an older version, with rows, is
brought up to date without losing them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from engine.memory.broker import InMemoryBroker
from engine.outbox.relay import run_relay
from engine.pg import store as store_module
from engine.pg.store import Store, migrations
from tests.conftest import make_settings, unique_namespace, wait_for


@pytest.fixture
async def bare_store() -> AsyncIterator[Store]:
    """A namespace with no schema yet; dropped afterwards."""
    store = Store(make_settings(unique_namespace()))
    await store.connect(require_schema=False)
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


async def migrate_up_to(store: Store, version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    older = [m for m in migrations() if m[0] <= version]
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "migrations", lambda: older)
        await store.migrate()


async def test_rows_waiting_in_the_requeue_outbox_stay_in_the_outbox(
    bare_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrate_up_to(bare_store, 6, monkeypatch)
    dead_id = await bare_store.pool.fetchval(
        "INSERT INTO dead_letters (job_id, generation, job_type, queue, body, attempts,"
        " reason, error_type, error_message, died_at, status)"
        " VALUES ('j1', 0, 'mail.send', 'default', 'x', 1, 'r', 'E', 'm', now(),"
        " 'requeue_pending') RETURNING id"
    )
    await bare_store.pool.execute(
        "INSERT INTO requeue_outbox (dead_letter_id, job_id, queue, body)"
        " VALUES ($1, 'j1', 'default', 'requeued'), (NULL, 'j2', 'mail', 'resumed')",
        dead_id,
    )
    applied = await bare_store.migrate()
    assert "007_outbox.sql" in applied
    async with bare_store.claim_outbox(10) as rows:
        assert [
            (r["kind"], r["dead_letter_id"], r["job_id"], r["queue"], bytes(r["body"]))
            for r in rows
        ] == [
            ("requeue", dead_id, "j1", "default", b"requeued"),
            ("resume", None, "j2", "mail", b"resumed"),
        ]
    # Sent: the requeue's dead letter is marked as the old relay marked it.
    [status] = [r["status"] for r in await bare_store.history("j1")]
    assert status == "requeued"
    assert await bare_store.pool.fetchval("SELECT to_regclass('requeue_outbox')") is None
    # The id sequence goes on where it was.
    await bare_store.pool.execute(
        "INSERT INTO outbox (kind, job_id, queue, body) VALUES ('enqueue', 'j3', 'q', 'b')"
    )
    assert await bare_store.pool.fetchval("SELECT max(id) FROM outbox") == 3


class OldRelayStore(Store):
    """The previous release's relay claim: it still reads ``requeue_outbox``."""

    @asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[list[asyncpg.Record]]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield list(
                await conn.fetch(
                    "SELECT id, dead_letter_id, job_id, queue, body FROM requeue_outbox"
                    " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    limit,
                )
            )


async def test_an_old_relay_fails_loudly_retries_and_leaves_the_rows_waiting(
    bare_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await bare_store.migrate()
    await bare_store.pool.execute(
        "INSERT INTO outbox (kind, job_id, queue, body) VALUES ('resume', 'j1', 'default', 'b')"
    )
    old = OldRelayStore(bare_store.settings)
    await old.connect()
    relay = asyncio.create_task(run_relay(old, InMemoryBroker(bare_store.settings), interval=0.05))
    try:
        with caplog.at_level(logging.WARNING, logger="lazarus.relay"):
            await wait_for(
                lambda: sum("relay pass failed" in r.message for r in caplog.records) >= 3,
                what="three failed passes",
            )
        assert not relay.done()  # it goes on trying
        assert "requeue_outbox" in caplog.text
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        await old.close()
    assert await bare_store.pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_message_search_gets_a_trigram_index_outside_the_namespace(
    bare_store: Store,
) -> None:
    """The index serves ILIKE '%text%'; pg_trgm lives in public, so dropping a namespace
    never takes the extension (and every other namespace's index) with it."""
    await bare_store.migrate()
    where = await bare_store.pool.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    )
    if where is None:
        pytest.skip("pg_trgm is not installed on this PostgreSQL")
    assert where == "public"
    index = await bare_store.pool.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1"
        " AND indexname = 'dead_letters_error_message_trgm'",
        bare_store.schema,
    )
    assert index is not None and "gin_trgm_ops" in index
    async with bare_store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetch(
            "EXPLAIN SELECT id FROM dead_letters WHERE error_message ILIKE '%timeout talking%'"
        )
    assert "dead_letters_error_message_trgm" in "\n".join(r[0] for r in plan)


async def test_payload_search_gets_a_gin_index_over_the_rows_already_there(
    bare_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 012 indexes the payloads of dead letters stored before it, and the
    store's containment condition (the text cast included) is served by that index."""
    await migrate_up_to(bare_store, 10, monkeypatch)
    await bare_store.pool.execute(
        "INSERT INTO dead_letters (job_id, generation, job_type, queue, payload, body,"
        " attempts, reason, error_type, error_message, died_at)"
        " VALUES ('j1', 0, 'mail.send', 'default', '{\"customer\": 42}', 'x', 1, 'r', 'E',"
        " 'm', now())"
    )
    assert "012_payload_search.sql" in await bare_store.migrate()
    index = await bare_store.pool.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1"
        " AND indexname = 'dead_letters_payload_path'",
        bare_store.schema,
    )
    assert index is not None and "gin (payload jsonb_path_ops)" in index
    query = "SELECT id FROM dead_letters WHERE payload @> {}::text::jsonb"
    async with bare_store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        assert await conn.fetchval(query.format("$1"), '{"customer": 42}') is not None
        plan = await conn.fetch("EXPLAIN " + query.format("'{\"customer\": 42}'"))
    assert "dead_letters_payload_path" in "\n".join(r[0] for r in plan)
