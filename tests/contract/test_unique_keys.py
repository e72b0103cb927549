"""Enqueue-if-absent's rules, pinned against PostgreSQL and the in-memory store alike: one
job per unique key while it is not over for good."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.filters import DeadFilter
from engine.pg.port import KEY_HELD, Enqueued, JobIdTaken, UniqueJob
from engine.pg.rows import Row
from engine.states import JobState
from tests.contract.conftest import AnyStore
from tests.contract.test_store import death, report

NOW = datetime.now(UTC).replace(microsecond=0)


def unique(key: str, job_id: str | None = None, *, run_at: datetime | None = None) -> UniqueJob:
    job_id = job_id or uuid.uuid4().hex
    return UniqueJob(
        unique_key=key,
        job_id=job_id,
        job_type="mail.send",
        queue="default",
        payload={"to": "a@b.c"},
        max_retries=2,
        suspend_on_failure=None,
        created_at=NOW,
        body=f"body of {job_id}".encode(),
        run_at=run_at,
    )


def body_of(row: Row) -> bytes:
    return f"{row['job_id']}:{row['generation'] + 1}".encode()


async def outbox(store: AnyStore) -> list[tuple[Any, ...]]:
    """What the relay would send now (and sends: the rows leave the outbox)."""
    async with store.claim_outbox(1000) as rows:
        return [(r["kind"], r["job_id"], r["queue"], bytes(r["body"])) for r in rows]


async def test_of_two_hundred_concurrent_enqueues_under_one_key_one_creates(
    store: AnyStore,
) -> None:
    answers = await asyncio.gather(*(store.enqueue_unique(unique("report:42")) for _ in range(200)))
    created = [a for a in answers if a.created]
    assert len(created) == 1
    [winner] = created
    assert winner.state is JobState.PENDING
    assert {a.job_id for a in answers} == {winner.job_id}
    assert {a.state for a in answers} == {JobState.PENDING}
    job = await store.get_job(winner.job_id)
    assert job is not None
    assert (job["state"], job["generation"], job["seq"], job["unique_key"]) == (
        "pending", 0, 0, "report:42",
    )  # fmt: skip
    assert (job["job_type"], job["queue"], job["payload"], job["max_retries"]) == (
        "mail.send", "default", {"to": "a@b.c"}, 2,
    )  # fmt: skip
    assert await outbox(store) == [
        ("enqueue", winner.job_id, "default", f"body of {winner.job_id}".encode())
    ]


async def test_other_keys_do_not_conflict_and_the_run_at_time_is_staged(store: AnyStore) -> None:
    later = NOW + timedelta(hours=1)
    a = await store.enqueue_unique(unique("a", "j-a", run_at=later))
    b = await store.enqueue_unique(unique("b", "j-b"))
    assert (a, b) == (
        Enqueued("j-a", True, JobState.PENDING), Enqueued("j-b", True, JobState.PENDING),
    )  # fmt: skip
    async with store.claim_outbox(10) as rows:
        assert [(r["job_id"], r["run_at"]) for r in rows] == [("j-a", later), ("j-b", None)]


async def test_worker_reports_keep_the_key_until_the_job_succeeds(store: AnyStore) -> None:
    first = await store.enqueue_unique(unique("k", "j1"))
    assert await store.report([report("j1", seq=1, state=JobState.RUNNING)]) == {("j1", 1)}
    assert await store.enqueue_unique(unique("k")) == Enqueued("j1", False, JobState.RUNNING)
    await store.report([report("j1", seq=2, state=JobState.RETRYING, error=("E", "m", "tb"))])
    assert await store.enqueue_unique(unique("k")) == Enqueued("j1", False, JobState.RETRYING)
    job = await store.get_job("j1")
    assert job is not None and job["unique_key"] == "k"
    await store.report([report("j1", seq=7, state=JobState.SUCCEEDED)])
    second = await store.enqueue_unique(unique("k", "j2"))
    assert (first.created, second) == (True, Enqueued("j2", True, JobState.PENDING))
    done = await store.get_job("j1")
    assert done is not None and (done["state"], done["unique_key"]) == ("succeeded", "k")


async def test_a_cancelled_job_frees_its_key_and_a_suspended_one_keeps_it(
    store: AnyStore,
) -> None:
    await store.enqueue_unique(unique("k", "j1"))
    assert await store.stop_job("j1", "suspended", "Requested by user", "bob", ["pending"], 0)
    assert await store.enqueue_unique(unique("k")) == Enqueued("j1", False, JobState.SUSPENDED)
    resumed = await store.resume_job(
        "j1", retries=None, payload=None, replace_payload=False, keep_checkpoint=True,
        actor="bob", build=body_of, generation=0,
    )  # fmt: skip
    assert resumed is not None and resumed["unique_key"] == "k"
    assert await store.enqueue_unique(unique("k")) == Enqueued("j1", False, JobState.PENDING)
    assert await store.stop_job("j1", "cancelled", "Requested by user", "bob", ["pending"], 1)
    assert await store.enqueue_unique(unique("k", "j2")) == Enqueued("j2", True, JobState.PENDING)


async def test_a_dead_job_holds_its_key_and_keeps_it_when_requeued(store: AnyStore) -> None:
    await store.enqueue_unique(unique("k", "j1"))
    await store.report([report("j1", seq=11, state=JobState.DEAD, error=("E", "m", "tb"))])
    await store.insert_dead([death("j1")])
    assert await store.enqueue_unique(unique("k")) == Enqueued("j1", False, JobState.DEAD)
    [row_id] = await store.matching_ids(DeadFilter(ids=("j1",)), after_id=0, upto_id=10**9, limit=9)
    assert await store.stage_requeue([row_id], "bob", body_of) == 1
    job = await store.get_job("j1")
    assert job is not None and (job["state"], job["generation"], job["unique_key"]) == (
        "pending", 1, "k",
    )  # fmt: skip
    assert await store.enqueue_unique(unique("k")) == Enqueued("j1", False, JobState.PENDING)
    kinds = [row[0] for row in await outbox(store)]
    assert kinds == ["enqueue", "requeue"]


async def test_a_job_id_taken_outside_the_key_is_refused_and_nothing_is_staged(
    store: AnyStore,
) -> None:
    await store.report([report("j1", seq=1, state=JobState.RUNNING)])  # enqueued plainly
    with pytest.raises(JobIdTaken, match="j1"):
        await store.enqueue_unique(unique("k", "j1"))
    assert await outbox(store) == []
    # The same id under the same key: the holder, not a conflict.
    await store.enqueue_unique(unique("k2", "j2"))
    assert await store.enqueue_unique(unique("k2", "j2")) == Enqueued("j2", False, JobState.PENDING)


def test_the_states_that_hold_a_key() -> None:
    assert sorted(KEY_HELD) == sorted(
        [JobState.PENDING, JobState.RUNNING, JobState.RETRYING, JobState.SUSPENDED, JobState.DEAD]
    )


def test_the_index_and_the_holder_query_list_those_states() -> None:
    from engine.pg.queries import Q
    from engine.pg.store import migrations

    [index] = [sql for _, name, sql in migrations() if name == "008_unique_keys.sql"]
    for sql in (index, Q["key_holder"]):
        [listed] = re.findall(r"state IN \(([^)]*)\)", sql)
        assert {s.strip(" '\n") for s in listed.split(",")} == {s.value for s in KEY_HELD}
