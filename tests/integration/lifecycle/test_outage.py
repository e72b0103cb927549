"""Jobs keep running while PostgreSQL is down; their states are written once it is back."""

from __future__ import annotations

from engine import Client, JobContext, Permanent, RetryPolicy, handler
from engine.pg.store import Store
from engine.settings import Settings
from tests.conftest import wait_for
from tests.integration.conftest import TcpProxy
from tests.integration.lifecycle.conftest import tracking_worker

ran: set[str] = set()


@handler("outage.ok")
async def ok(ctx: JobContext) -> None:
    ran.add(ctx.job_id)


async def test_jobs_run_during_an_outage_and_their_states_arrive_after(
    dead_settings: Settings, store: Store, pg_proxy: TcpProxy
) -> None:
    proxied = dead_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/postgres"}
    )
    async with tracking_worker(proxied), Client(dead_settings) as client:
        await pg_proxy.cut()
        ids = [await client.enqueue("outage.ok", {"i": i}) for i in range(5)]
        await wait_for(lambda: set(ids) <= ran, what="jobs to run without the database")
        assert await store.pool.fetchval("SELECT count(*) FROM jobs") == 0
        await pg_proxy.start()

        async def stored() -> bool:
            rows = await store.pool.fetch(
                "SELECT state FROM jobs WHERE job_id = ANY($1::text[])", ids
            )
            return len(rows) == 5 and {r["state"] for r in rows} == {"succeeded"}

        await wait_for(stored, timeout=30, what="the states after the outage")


@handler("outage.dies", policy=RetryPolicy(attempts=1, max_retries=0))
async def dies(ctx: JobContext) -> None:
    ran.add(ctx.job_id)
    raise Permanent("dies during the outage")


async def test_a_death_decided_during_an_outage_reaches_its_row_after(
    dead_settings: Settings, store: Store, pg_proxy: TcpProxy
) -> None:
    """The dead letter goes the recorder's way; the row must not stay RUNNING forever."""
    proxied = dead_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/postgres"}
    )
    async with tracking_worker(proxied) as worker, Client(dead_settings) as client:
        job_id = await client.enqueue("outage.ok", None)
        await wait_for(lambda: _state_is(store, job_id, "succeeded"), what="the first row")
        await pg_proxy.cut()
        dead_id = await client.enqueue("outage.dies", None)
        # Settled (dead letter published the recorder's way, acked) while still down.
        await wait_for(lambda: worker.processed == 2, what="the death without the database")
        assert await store.pool.fetchval("SELECT count(*) FROM jobs") == 1
        await pg_proxy.start()
        await wait_for(
            lambda: _state_is(store, dead_id, "dead"), timeout=30, what="its DEAD row after"
        )
        await wait_for(
            lambda: _dead_letter_stored(store, dead_id), timeout=30, what="its dead letter"
        )


async def _state_is(store: Store, job_id: str, state: str) -> bool:
    return await store.pool.fetchval("SELECT state FROM jobs WHERE job_id = $1", job_id) == state


async def _dead_letter_stored(store: Store, job_id: str) -> bool:
    found = await store.pool.fetchval("SELECT count(*) FROM dead_letters WHERE job_id = $1", job_id)
    return bool(found == 1)
