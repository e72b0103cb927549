"""Retention: old finished jobs, audit entries, acted-on dead letters and retained copies
are pruned, by one process at a time; dead letters still waiting for a person never are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import asyncpg
import pytest

from engine.amqp.broker import Broker
from engine.amqp.topology import dead_exchange, retained_queue
from engine.deadletters.retention import prune
from engine.errors import ConfigError
from engine.message import H_DIED_AT, now_utc
from engine.pg.pruning import PRUNE_LOCK
from engine.pg.store import Store
from engine.settings import Settings, load_settings
from engine.workflows import Step, Workflow, start_workflow
from tests.conftest import DATABASE_URL

OLD, NEW = timedelta(days=100), timedelta(hours=1)


@pytest.fixture
async def broker(dead_settings: Settings) -> AsyncIterator[Broker]:
    b = Broker(dead_settings)
    await b.connect()
    yield b
    await b.close()


async def add_job(store: Store, job_id: str, state: str, age: timedelta) -> None:
    await store.pool.execute(
        "INSERT INTO jobs (job_id, generation, seq, job_type, queue, state, created_at,"
        " updated_at) VALUES ($1, 0, 3, 't.x', 'default', $2, $3, $3)",
        job_id, state, now_utc() - age,
    )  # fmt: skip


async def add_dead(store: Store, job_id: str, status: str, age: timedelta) -> None:
    when = now_utc() - age
    await store.pool.execute(
        "INSERT INTO dead_letters (job_id, generation, job_type, queue, body, attempts, reason,"
        " error_type, error_message, died_at, status, status_changed_at)"
        " VALUES ($1, 0, 't.x', 'default', '', 1, 'r', 'E', 'm', $2, $3, $2)",
        job_id, when, status,
    )  # fmt: skip


async def add_audit(store: Store, age: timedelta, state: str = "done") -> None:
    await store.pool.execute(
        "INSERT INTO audit_log (at, actor, action, selector, count, state)"
        " VALUES ($1, 'me', 'requeue', '{}', 1, $2)",
        now_utc() - age, state,
    )  # fmt: skip


async def add_attempt(store: Store, job_id: str, age: timedelta) -> None:
    await store.pool.execute(
        "INSERT INTO job_attempts (job_id, generation, attempt, outcome, error_type,"
        " error_message, traceback, at) VALUES ($1, 0, 0, 'retrying', 'E', 'm', 'tb', $2)",
        job_id, now_utc() - age,
    )  # fmt: skip


async def ids(store: Store, sql: str) -> set[str]:
    return {r[0] for r in await store.pool.fetch(sql)}


async def seed(store: Store) -> None:
    for state in ("succeeded", "cancelled", "dead", "suspended", "running", "retrying"):
        await add_job(store, f"old-{state}", state, OLD)
        await add_job(store, f"new-{state}", state, NEW)
        await add_attempt(store, f"old-{state}", OLD)
        await add_attempt(store, f"new-{state}", NEW)
    await add_attempt(store, "gone", OLD)  # its job row was pruned before
    for status in ("dead", "requeued", "deleted"):
        await add_dead(store, f"old-{status}", status, OLD)
        await add_dead(store, f"new-{status}", status, NEW)
    await add_audit(store, OLD)
    await add_audit(store, OLD, state="running")  # a bulk operation still going
    await add_audit(store, NEW)


async def test_a_pass_prunes_what_is_past_its_age_and_nothing_a_person_still_needs(
    dead_settings: Settings, store: Store
) -> None:
    await seed(store)
    dry = await prune(dead_settings, store, None, dry_run=True)
    assert (dry.jobs, dry.audit, dry.dead_history, dry.dead_copies) == (3, 1, 2, None)
    assert dry.attempts == 4  # those of the 3 old finished jobs, and one whose job is gone
    assert len(await ids(store, "SELECT job_id FROM jobs")) == 12  # a dry run changes nothing

    done = await prune(dead_settings, store, None)
    assert (done.jobs, done.audit, done.dead_history) == (dry.jobs, dry.audit, dry.dead_history)
    assert done.attempts == dry.attempts
    jobs = await ids(store, "SELECT job_id FROM jobs")
    assert {j for j in jobs if j.startswith("old-")} == {"old-suspended", "old-running",
                                                         "old-retrying"}  # fmt: skip
    attempts = await ids(store, "SELECT job_id FROM job_attempts")
    assert attempts == jobs  # each kept job keeps its attempts, old or new
    dead = await ids(store, "SELECT job_id FROM dead_letters")
    assert dead == {"old-dead", "new-dead", "new-requeued", "new-deleted"}
    states = await ids(store, "SELECT state FROM audit_log")
    assert states == {"running", "done"}
    assert (await prune(dead_settings, store, None)).jobs == 0  # nothing left to do


async def test_never_keeps_everything(dead_settings: Settings, store: Store) -> None:
    await seed(store)
    keep = dead_settings.model_copy(
        update={f"retain_{k}": "never" for k in ("jobs", "audit", "dead_history")}
    )
    done = await prune(keep, store, None)
    assert (done.jobs, done.audit, done.dead_history) == (0, 0, 0)


async def test_one_process_prunes_at_a_time(dead_settings: Settings, store: Store) -> None:
    await seed(store)
    other = await asyncpg.connect(DATABASE_URL)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", PRUNE_LOCK)
        busy = await prune(dead_settings, store, None)
        assert busy.busy and busy.jobs == 0
        assert len(await ids(store, "SELECT job_id FROM jobs")) == 12
        await other.fetchval("SELECT pg_advisory_unlock($1)", PRUNE_LOCK)
        assert (await prune(dead_settings, store, None)).jobs == 3
    finally:
        await other.close()


async def test_retained_copies_older_than_their_age_are_taken_from_the_head(
    dead_settings: Settings, store: Store, broker: Broker
) -> None:
    exchange = await broker.channel.get_exchange(dead_exchange(dead_settings.namespace))
    for name, age in (("a", OLD), ("b", OLD), ("c", NEW), ("d", OLD)):
        died = (now_utc() - age).isoformat()
        message = aio_pika.Message(name.encode(), headers={H_DIED_AT: died}, message_id=name)
        await exchange.publish(message, routing_key="")
    done = await prune(dead_settings, store, broker)
    assert done.dead_copies == 2  # a and b; c is younger, so d behind it waits for a later pass
    queue = await broker.channel.get_queue(retained_queue(dead_settings.namespace), ensure=False)
    left = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        left.append(message.body)
    assert sorted(left) == [b"c", b"d"]


def test_a_bad_retention_age_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAZARUS_RETAIN_JOBS", "a week")
    with pytest.raises(ConfigError, match="LAZARUS_RETAIN_JOBS"):
        load_settings()


async def test_finished_workflows_go_with_their_steps_and_failed_ones_stay(
    dead_settings: Settings, store: Store
) -> None:
    flow = Workflow("ret.flow", [Step("only", "ret.step")])
    for name in ("old-done", "old-cancelled", "old-failed", "new-done"):
        await start_workflow(store, None, flow, None, workflow_id=name)
    ended = {"old-done": "succeeded", "old-cancelled": "cancelled", "old-failed": "failed",
             "new-done": "succeeded"}  # fmt: skip
    for name, state in ended.items():
        age = NEW if name.startswith("new") else OLD
        await store.pool.execute(
            "UPDATE workflows SET state = $2, finished_at = $3 WHERE workflow_id = $1",
            name, state, now_utc() - age,
        )  # fmt: skip
    dry = await prune(dead_settings, store, None, dry_run=True)
    assert dry.workflows == 2
    done = await prune(dead_settings, store, None)
    assert done.workflows == 2
    assert await ids(store, "SELECT workflow_id FROM workflows") == {"old-failed", "new-done"}
    assert await ids(store, "SELECT DISTINCT workflow_id FROM workflow_steps") == {
        "old-failed",
        "new-done",
    }
