"""The store's rules, pinned against PostgreSQL and the in-memory store alike.

If the double cannot match PostgreSQL on one of these, the double is wrong.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.filters import DeadFilter
from engine.memory.store import InMemoryStore
from engine.message import MAX_ERROR_MESSAGE, MAX_ERROR_TYPE, MAX_TRACEBACK
from engine.pg.errors import DB_REJECTED, DB_UNAVAILABLE
from engine.pg.port import (
    AdminStore,
    OutboxStore,
    StepStore,
    UniqueJobStore,
    WorkerStore,
    WorkflowStore,
    WorkflowTxn,
)
from engine.pg.rows import Row
from engine.pg.store import DeadRecord
from engine.pg.workers import WorkerInfo
from engine.states import PERSON_SEQ, DeadStatus, JobState
from tests.contract.conftest import AnyStore

NOW = datetime.now(UTC).replace(microsecond=0)


def death(
    job_id: str,
    generation: int = 0,
    *,
    job_type: str = "mail.send",
    queue: str = "default",
    error_type: str = "ValueError",
    error_message: str = "boom",
    died_at: datetime = NOW,
    checkpoint: Any = None,
    payload: Any = None,
) -> DeadRecord:
    return DeadRecord(
        job_id=job_id,
        generation=generation,
        job_type=job_type,
        queue=queue,
        payload={"to": "a@b.c"} if payload is None else payload,
        body=b'{"id": "%s"}' % job_id.encode(),
        headers={"x-lazarus-reason": "retries exhausted"},
        attempts=3,
        max_retries=2,
        reason="retries exhausted",
        error_type=error_type,
        error_message=error_message,
        traceback="Traceback ...",
        checkpoint=checkpoint,
        enqueued_at=NOW - timedelta(minutes=1),
        died_at=died_at,
        worker="w1",
    )


def report(
    job_id: str,
    *,
    generation: int = 0,
    seq: int = 1,
    redeliveries: int = 0,
    state: JobState = JobState.RUNNING,
    token: str | None = None,
    error: tuple[str, str, str] | None = None,
    checkpoint: Any = None,
    payload: Any = None,
) -> tuple[Any, ...]:
    """A worker's report row, in the tracker's column order."""
    running = state is JobState.RUNNING
    return (
        job_id, generation, seq, redeliveries, "mail.send", "default", state.value, seq // 4, 2,
        payload if running else None, False, *(error or (None, None, None)), None, "w1",
        NOW, NOW if running else None, checkpoint if running else None, token,
    )  # fmt: skip


async def ids_of(store: AnyStore, selector: DeadFilter) -> list[int]:
    return await store.matching_ids(selector, after_id=0, upto_id=10**9, limit=1000)


def body_of(row: Row) -> bytes:
    return f"{row['job_id']}:{row['generation'] + 1}".encode()


# -- dead letters: one per (job, generation) ----------------------------------------------


async def test_a_second_copy_of_a_death_is_ignored(store: AnyStore) -> None:
    assert await store.insert_dead([death("j1"), death("j1"), death("j2")]) == 2
    assert await store.insert_dead([death("j1"), death("j1", generation=1)]) == 1
    assert [r["generation"] for r in await store.history("j1")] == [0, 1]
    stored = await store.stored_death("j1", 0)
    assert stored is not None
    assert (bytes(stored["body"]), stored["traceback"]) == (b'{"id": "j1"}', "Traceback ...")
    assert await store.stored_death("j1", 5) is None


async def test_json_arrays_and_scalars_are_stored_as_they_are(store: AnyStore) -> None:
    """A payload or checkpoint that is an array stays one (a batch is not read as one more
    dimension of an array parameter)."""
    values: list[Any] = [["a"], [1, "two"], [[1, 2]], [], "text", 7, {"a": [1]}]
    deaths = [death(f"d{i}", payload=v, checkpoint=v) for i, v in enumerate(values)]
    assert await store.insert_dead(deaths) == len(values)
    for i, value in enumerate(values):
        [full] = await store.history(f"d{i}")
        assert (full["payload"], full["checkpoint"]) == (value, value)
    await store.report([report(f"j{i}", payload=v, checkpoint=v) for i, v in enumerate(values)])
    for i, value in enumerate(values):
        job = await store.get_job(f"j{i}")
        assert job is not None and (job["payload"], job["checkpoint"]) == (value, value)


async def test_two_hundred_concurrent_requeues_give_one_winner_and_one_outbox_row(
    store: AnyStore,
) -> None:
    await store.insert_dead([death("j1")])
    [row_id] = await ids_of(store, DeadFilter(ids=("j1",)))
    won = await asyncio.gather(
        *(store.stage_requeue([row_id], f"admin{i}", body_of) for i in range(200))
    )
    assert sorted(won) == [0] * 199 + [1]
    async with store.claim_outbox(100) as rows:
        assert [(r["kind"], r["dead_letter_id"], r["job_id"], bytes(r["body"])) for r in rows] == [
            ("requeue", row_id, "j1", b"j1:1")
        ]
        assert rows[0]["run_at"] is None
    [row] = await store.history("j1")
    assert row["status"] == DeadStatus.REQUEUED
    assert row["status_changed_by"].startswith("admin")


async def test_a_requeue_whose_build_fails_changes_nothing(store: AnyStore) -> None:
    await store.insert_dead([death("j1")])
    ids = await ids_of(store, DeadFilter())

    def broken(row: Row) -> bytes:
        raise RuntimeError("cannot build")

    with pytest.raises(RuntimeError):
        await store.stage_requeue(ids, "admin", broken)
    [row] = await store.history("j1")
    assert row["status"] == DeadStatus.DEAD
    async with store.claim_outbox(10) as rows:
        assert list(rows) == []


async def test_a_requeue_starts_the_tracked_jobs_next_generation(store: AnyStore) -> None:
    await store.report([report("j1", state=JobState.RUNNING, checkpoint={"step": 2})])
    await store.report([report("j1", seq=3, state=JobState.DEAD, error=("E", "bad", "tb"))])
    await store.insert_dead([death("j1", checkpoint={"step": 1})])
    seen: list[Any] = []

    def build(row: Row) -> bytes:
        seen.append(row["checkpoint"])
        return b"next"

    assert await store.stage_requeue(await ids_of(store, DeadFilter()), "admin", build) == 1
    assert seen == [{"step": 2}]  # the job's saved checkpoint wins over the message's
    job = await store.get_job("j1")
    assert job is not None
    assert (job["state"], job["generation"], job["seq"], job["attempt"], job["token"]) == (
        "pending", 1, 0, 0, None,
    )  # fmt: skip


async def test_no_requeue_of_a_stopped_job_a_later_generation_or_a_bad_queue(
    store: AnyStore,
) -> None:
    await store.report([report("stopped"), report("later", generation=1)])
    await store.stop_job("stopped", "suspended", "Requested by user", "ann", ["running"], 0)
    await store.insert_dead(
        [death("stopped"), death("later"), death("forged", queue="(invalid)"), death("ok")]
    )
    moved = await store.stage_requeue(await ids_of(store, DeadFilter()), "admin", body_of)
    assert moved == 1
    assert [r["job_id"] for r in await store.list_dead(DeadFilter())] == [
        "forged", "later", "stopped",
    ]  # fmt: skip


# -- the outbox claim ---------------------------------------------------------------------


async def test_two_concurrent_claims_never_share_a_row(store: AnyStore) -> None:
    await store.insert_dead([death(f"j{i}") for i in range(5)])
    assert await store.stage_requeue(await ids_of(store, DeadFilter()), "admin", body_of) == 5
    async with store.claim_outbox(3) as first, store.claim_outbox(10) as second:
        a = {r["job_id"] for r in first}
        b = {r["job_id"] for r in second}
    assert (len(a), len(b), a & b) == (3, 2, set())
    async with store.claim_outbox(10) as rest:
        assert list(rest) == []


async def test_claims_running_at_once_take_disjoint_rows(store: AnyStore) -> None:
    await store.insert_dead([death(f"j{i}") for i in range(6)])
    assert await store.stage_requeue(await ids_of(store, DeadFilter()), "admin", body_of) == 6
    both_in = asyncio.Barrier(2)

    async def claim() -> set[str]:
        async with store.claim_outbox(4) as rows:
            await both_in.wait()  # each holds its rows while the other claims
            return {r["job_id"] for r in rows}

    a, b = await asyncio.gather(claim(), claim())
    assert (sorted([len(a), len(b)]), a & b, len(a | b)) == ([2, 4], set(), 6)


async def test_a_claim_that_fails_leaves_its_rows(store: AnyStore) -> None:
    await store.insert_dead([death("j1")])
    await store.stage_requeue(await ids_of(store, DeadFilter()), "admin", body_of)
    with pytest.raises(RuntimeError):
        async with store.claim_outbox(10) as rows:
            assert len(rows) == 1
            raise RuntimeError("the broker refused it")
    assert [r["status"] for r in await store.history("j1")] == ["requeue_pending"]
    async with store.claim_outbox(10) as again:
        assert [r["job_id"] for r in again] == ["j1"]


# -- job-state reports --------------------------------------------------------------------


async def test_a_report_with_a_lower_seq_does_not_override(store: AnyStore) -> None:
    assert await store.report([report("j1", seq=5, state=JobState.RETRYING)]) == {("j1", 5)}
    assert await store.report([report("j1", seq=4, state=JobState.RUNNING)]) == set()
    assert await store.report([report("j1", seq=5, state=JobState.RUNNING)]) == set()
    job = await store.get_job("j1")
    assert job is not None and (job["state"], job["seq"]) == ("retrying", 5)
    # a later redelivery of the same attempt, or a new generation, wins
    assert await store.report([report("j1", seq=5, redeliveries=1)]) == {("j1", 5)}
    assert await store.report([report("j1", generation=1, seq=1)]) == {("j1", 1)}


async def test_a_report_sent_again_with_its_token_is_applied_again(store: AnyStore) -> None:
    assert await store.report([report("j1", seq=3, state=JobState.SUCCEEDED, token="t1")])
    again = report("j1", seq=3, state=JobState.SUCCEEDED, token="t1")
    assert await store.report([again]) == {("j1", 3)}
    other = report("j1", seq=3, state=JobState.SUCCEEDED, token="t2")
    assert await store.report([other]) == set()


async def test_errors_stay_while_a_generation_retries_and_clear_on_success(
    store: AnyStore,
) -> None:
    await store.report([report("j1", seq=2, state=JobState.RETRYING, error=("E", "m", "tb"))])
    await store.report([report("j1", seq=5, state=JobState.RUNNING, payload={"p": 1})])
    job = await store.get_job("j1")
    assert job is not None
    assert (job["error_type"], job["payload"], job["job_type"]) == ("E", {"p": 1}, "mail.send")
    await store.report([report("j1", seq=7, state=JobState.SUCCEEDED)])
    job = await store.get_job("j1")
    assert job is not None
    assert (job["error_type"], job["payload"]) == (None, {"p": 1})


async def test_each_applied_failure_with_an_error_records_one_attempt(store: AnyStore) -> None:
    def failed(seq: int, state: JobState, token: str, generation: int = 0) -> tuple[Any, ...]:
        error = (f"E{generation}.{seq}", f"m{seq}", "tb")
        return report("j1", generation=generation, seq=seq, state=state, error=error, token=token)

    await store.report([failed(2, JobState.RETRYING, "t1"), report("j2", seq=3,
                        state=JobState.SUCCEEDED)])  # fmt: skip
    await store.report([failed(2, JobState.RETRYING, "t1")])  # sent again: applied, not recorded
    await store.report([report("j1", seq=5, state=JobState.RUNNING)])  # no error: nothing
    await store.report([failed(2, JobState.RETRYING, "t9")])  # stale: refused, nothing
    await store.report([failed(6, JobState.RETRYING, "t2")])
    await store.report([failed(7, JobState.DEAD, "t3")])
    await store.report([failed(3, JobState.SUSPENDED, "t4", generation=1)])
    rows = await store.attempts("j1")
    assert [(r["generation"], r["attempt"], r["outcome"], r["error_type"]) for r in rows] == [
        (0, 0, "retrying", "E0.2"), (0, 1, "retrying", "E0.6"), (0, 1, "dead", "E0.7"),
        (1, 0, "suspended", "E1.3"),
    ]  # fmt: skip
    assert (rows[0]["error_message"], rows[0]["traceback"], rows[0]["worker"]) == ("m2", "tb", "w1")
    assert all(a["at"] <= b["at"] for a, b in itertools.pairwise(rows))
    assert await store.attempts("j2") == [] and await store.attempts("nope") == []


async def test_an_attempts_error_texts_are_bounded(store: AnyStore) -> None:
    huge = ("T" * 300, "m" * 10_000, "t" * 40_000 + "the end")
    await store.report([report("j1", seq=2, state=JobState.RETRYING, error=huge)])
    [row] = await store.attempts("j1")
    assert (len(row["error_type"]), len(row["error_message"]), len(row["traceback"])) == (
        MAX_ERROR_TYPE, MAX_ERROR_MESSAGE, MAX_TRACEBACK,
    )  # fmt: skip
    assert row["traceback"].endswith("the end") and "more characters" in row["error_message"]


async def test_a_checkpoint_is_saved_only_on_the_running_generation(store: AnyStore) -> None:
    await store.report([report("j1", generation=2)])
    assert await store.save_checkpoint("j1", 2, {"step": 9}) is True
    assert await store.save_checkpoint("j1", 1, {"step": 1}) is False
    job = await store.get_job("j1")
    assert job is not None and job["checkpoint"] == {"step": 9}


# -- a person's stop and resume -----------------------------------------------------------


async def test_stop_and_resume_are_compare_and_sets(store: AnyStore) -> None:
    await store.report([report("j1", seq=1, payload={"p": 1}, checkpoint={"c": 1})])
    assert await store.stop_job("j1", "suspended", "why", "ann", ["running"], 1) is None
    assert await store.stop_job("j1", "suspended", "why", "ann", ["pending"], 0) is None
    stopped = await store.stop_job("j1", "suspended", "why", "ann", ["running"], 0)
    assert stopped is not None
    assert (stopped["state"], stopped["seq"], stopped["stopped_by"]) == (
        "suspended", PERSON_SEQ, "ann",
    )  # fmt: skip
    # a late worker report cannot beat a person's stop
    assert await store.report([report("j1", seq=6, state=JobState.RETRYING)]) == set()
    assert await store.stopped_among(["j1", "nope"]) == {"j1": 0}

    async def resume(generation: int) -> Row | None:
        return await store.resume_job(
            "j1", retries=5, payload={"p": 2}, replace_payload=True, keep_checkpoint=False,
            actor="bob", build=body_of, generation=generation,
        )  # fmt: skip

    assert await resume(1) is None
    resumed = await resume(0)
    assert resumed is not None
    assert (resumed["state"], resumed["generation"], resumed["seq"], resumed["max_retries"]) == (
        "pending", 1, 0, 5,
    )  # fmt: skip
    assert (resumed["payload"], resumed["checkpoint"], resumed["stopped_by"]) == (
        {"p": 2}, None, "bob",
    )  # fmt: skip
    assert await resume(0) is None
    async with store.claim_outbox(10) as rows:
        assert [(r["kind"], r["dead_letter_id"], r["job_id"], bytes(r["body"])) for r in rows] == [
            ("resume", None, "j1", b"j1:2")
        ]


# -- dead-letter filters ------------------------------------------------------------------


async def test_filters_match_as_the_sql_does(store: AnyStore) -> None:
    await store.insert_dead(
        [
            death("a", error_type="asyncio.TimeoutError", error_message="Timed OUT after 5s"),
            death("b", error_type="TimeoutError", job_type="pdf.render", queue="slow"),
            death("c", error_type="myapp.NotTimeoutError", error_message="100% done_"),
            death("d", error_type="ValueError", died_at=NOW - timedelta(hours=2)),
        ]
    )

    async def jobs(**fields: Any) -> list[str]:
        rows = await store.list_dead(DeadFilter(**fields))
        return sorted(r["job_id"] for r in rows)

    assert await jobs(error_type="TimeoutError") == ["a", "b"]
    assert await jobs(error_type="asyncio.TimeoutError") == ["a"]
    assert await jobs(error_type="Timeout") == []
    assert await jobs(error_text="timed out") == ["a"]
    assert await jobs(error_text="0% done_") == ["c"]
    assert await jobs(error_text="%") == ["c"]
    assert await jobs(error_text="d_ne") == []
    assert await jobs(job_type="pdf.render") == ["b"]
    assert await jobs(queue="slow") == ["b"]
    assert await jobs(ids=("a", "d", "zz")) == ["a", "d"]
    assert await jobs(died_before=NOW - timedelta(hours=1)) == ["d"]
    assert await jobs(died_after=NOW) == ["a", "b", "c"]
    await store.mark_deleted(await ids_of(store, DeadFilter(ids=("a",))), "ann")
    assert await jobs() == ["b", "c", "d"]
    assert await jobs(status=DeadStatus.DELETED) == ["a"]
    assert await jobs(status=None) == ["a", "b", "c", "d"]
    assert await store.count_dead(DeadFilter(status=None)) == 4
    assert await store.count_dead(DeadFilter(status=None), cap=2) == 3


async def test_the_payload_filter_is_jsonb_containment(store: AnyStore) -> None:
    order = {
        "customer": 42,
        "items": [{"sku": "A", "n": 1}, {"sku": "B", "n": 2}],
        "tags": ["vip", "eu"],
        "address": {"country": "FR", "zip": "75001"},
        "total": 12.5,
    }
    await store.insert_dead(
        [
            death("order", payload=order),
            death("other", payload={"customer": 420, "items": [], "tags": ["eu"], "total": 13}),
            death("flag", payload={"customer": "42", "active": True, "note": None}),
            death("list", payload=[1, "two", [3, 4], {"five": 5}]),
            death("scalar", payload=42),
            death("text", payload="vip"),
        ]
    )

    async def jobs(payload: str) -> list[str]:
        rows = await store.list_dead(DeadFilter(payload=payload))
        return sorted(r["job_id"] for r in rows)

    cases = {
        '{"customer": 42}': ["order"],  # not the string "42", not 420
        '{"customer": 42.0}': ["order"],  # numbers by value
        '{"address": {"country": "FR"}}': ["order"],  # a sub-object, recursively
        '{"address": "FR"}': [],
        '{"tags": ["eu"]}': ["order", "other"],
        '{"tags": ["eu", "vip", "eu"]}': ["order"],  # any order, any count
        '{"tags": "eu"}': [],  # below the top, an array holds no bare scalar
        '{"items": [{"sku": "B"}]}': ["order"],  # an element contained in an element
        '{"items": []}': ["order", "other"],
        '{"active": 1}': [],  # true is not 1
        '{"active": true, "note": null}': ["flag"],
        '{"customer": 42, "tags": ["eu"], "total": 12.5}': ["order"],
        "{}": ["flag", "order", "other"],  # every object
        "[]": ["list"],
        '[[4], {"five": 5}, "two"]': ["list"],
        "[3]": [],  # 3 is in an element, not an element
        "42": ["scalar"],
        '"two"': ["list"],  # at the top, an array holds a bare scalar
        '"vip"': ["text"],
        "null": [],
    }
    for text, expected in cases.items():
        assert await jobs(text) == expected, text
    selector = DeadFilter(payload='{"tags": ["eu"]}', job_type="mail.send")
    assert await store.count_dead(selector) == 2
    assert await store.count_dead(selector, cap=1) == 2
    assert len(await ids_of(store, selector)) == 2
    assert await jobs('{"tags": ["eu"]}') == ["order", "other"]
    assert await store.list_dead(replace(selector, job_type="other.type")) == []


async def test_listing_pages_newest_first_and_bulk_walks_oldest_first(store: AnyStore) -> None:
    await store.insert_dead([death(f"j{i}") for i in range(5)])
    ids = await ids_of(store, DeadFilter())
    assert ids == sorted(ids) and await store.last_dead_id() == ids[-1]
    page = await store.list_dead(DeadFilter(), limit=2)
    assert [r["id"] for r in page] == ids[:-3:-1]
    after = await store.list_dead(DeadFilter(), limit=2, before_id=page[-1]["id"])
    assert [r["id"] for r in after] == ids[-3:-5:-1]
    walked = await store.matching_ids(DeadFilter(), after_id=ids[0], upto_id=ids[3], limit=2)
    assert walked == ids[1:3]


async def test_reanimation_candidates_and_purge(store: AnyStore) -> None:
    old = NOW - timedelta(hours=1)
    await store.insert_dead(
        [
            death("a", died_at=old, error_type="asyncio.TimeoutError"),
            death("b", died_at=old, error_type="TimeoutError"),
            death("c", died_at=NOW),
        ]
    )
    found = await store.reanimation_candidates(
        "mail.send", ["TimeoutError"], NOW - timedelta(minutes=1), "rule", 1, 10
    )
    assert [r["job_id"] for r in await store.list_dead(DeadFilter()) if r["id"] in found] == ["b"]
    await store.stage_requeue(found, "rule", body_of)
    assert await store.reanimation_candidates("mail.send", [], NOW, "rule", 1, 10) != []
    assert await store.purge(NOW) == 1  # "a"; "b" is a requeue in progress, "c" is younger
    assert sorted(r["job_id"] for r in await store.list_dead(DeadFilter(status=None))) == [
        "b", "c",
    ]  # fmt: skip


# -- pauses and audit ---------------------------------------------------------------------


async def test_pauses_are_set_once_and_listed_by_name(store: AnyStore) -> None:
    assert await store.pause_queue("slow", "ann", "deploy") is True
    assert await store.pause_queue("slow", "bob", "again") is False
    assert await store.pause_queue("fast", "ann", "") is True
    assert [(r["queue"], r["paused_by"]) for r in await store.paused_queues()] == [
        ("fast", "ann"), ("slow", "ann"),
    ]  # fmt: skip
    assert await store.resume_queue("slow") is True
    assert await store.resume_queue("slow") is False
    assert await store.pause_type("pdf.render", "ann", "bug") is True
    assert await store.pause_type("pdf.render", "ann", "bug") is False
    assert [r["job_type"] for r in await store.paused_types()] == ["pdf.render"]
    assert await store.resume_type("pdf.render") is True
    assert await store.paused_types() == []


async def test_audit_entries_run_then_finish(store: AnyStore) -> None:
    entry = await store.audit_begin("ann", "requeue", {"job_type": "x"})
    await store.audit("bob", "purge", {"older_than_seconds": 60.0}, 3)
    [latest, running] = await store.audit_recent(10)
    assert (running["id"], running["state"], running["finished_at"]) == (entry, "running", None)
    assert (latest["action"], latest["count"], latest["state"]) == ("purge", 3, "done")
    await store.audit_progress(entry, 7, "done")
    [only] = await store.audit_recent(10, before_id=latest["id"])
    assert (only["count"], only["state"], only["selector"]) == (7, "done", {"job_type": "x"})
    assert only["finished_at"] is not None


# -- values PostgreSQL refuses ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"error_message": "a NUL \x00 here"},
        {"checkpoint": {"text": "a NUL \x00 in JSON"}},
        {"generation": 2**31},
    ],
    ids=["nul-text", "nul-json", "int32"],
)
async def test_a_batch_with_a_refused_value_adds_nothing(
    store: AnyStore, bad: dict[str, Any]
) -> None:
    with pytest.raises(DB_REJECTED):
        await store.insert_dead([death("ok"), replace(death("bad"), **bad)])
    assert await store.count_dead(DeadFilter(status=None)) == 0


async def test_a_report_with_a_refused_value_changes_nothing(store: AnyStore) -> None:
    with pytest.raises(DB_REJECTED):
        await store.report([report("ok"), report("bad", payload={"p": "\x00"})])
    assert await store.get_job("ok") is None


# -- jobs and workers as people see them --------------------------------------------------


async def test_jobs_listed_counted_and_known(store: AnyStore) -> None:
    await store.report([report("j1", state=JobState.SUCCEEDED, seq=3)])
    await store.report([report("j2"), report("j3", seq=2, state=JobState.RETRYING)])
    await store.insert_dead([death("j9", job_type="pdf.render", queue="slow"),
                             death("j8", job_type="", queue="(invalid)")])  # fmt: skip
    listed = await store.list_jobs(state="running")
    assert [r["job_id"] for r in listed] == ["j2"]
    assert set(dict(listed[0])) >= {"job_id", "generation", "state", "cause", "updated_at"}
    assert {r["job_id"] for r in await store.list_jobs(job_type="mail.send", limit=10)} == {
        "j1", "j2", "j3",
    }  # fmt: skip
    assert len(await store.list_jobs(limit=2)) == 2
    assert await store.count_jobs_by_state() == {"succeeded": 1, "running": 1, "retrying": 1}
    assert await store.finished_last_minute() == {"default": 1}
    assert sorted(await store.known_types()) == ["mail.send", "pdf.render"]
    assert sorted(await store.known_queues()) == ["(invalid)", "default", "slow"]


async def test_the_workers_registry(store: AnyStore) -> None:
    old = WorkerInfo("w-old", ("default",), {"mail.send": "old", "pdf.render": "slow"})
    new = WorkerInfo("w-new", ("default",), {"mail.send": "default"})
    await store.register_worker(old)
    await store.register_worker(new)
    await store.worker_stopped("w-new")
    await store.worker_seen("w-old")
    now = datetime.now(UTC)
    rows = await store.list_workers(now - timedelta(days=1), now - timedelta(minutes=1), 10)
    assert [(r["worker_id"], r["alive"]) for r in rows] == [("w-old", True), ("w-new", False)]
    assert list(rows[0]["queues"]) == ["default"] and rows[0]["job_types"] == old.job_types
    routes = await store.known_routes(now - timedelta(days=1))
    assert {r["job_type"]: r["queue"] for r in routes} == {"mail.send": "old", "pdf.render": "slow"}
    assert await store.list_workers(now + timedelta(days=1), now, 10) == []


async def test_changing_a_row_read_changes_nothing_stored(store: AnyStore) -> None:
    await store.report([report("j1", payload={"items": [1]})])
    job = await store.get_job("j1")
    assert job is not None
    job["payload"]["items"].append(2)
    again = await store.get_job("j1")
    assert again is not None and again["payload"] == {"items": [1]}


async def test_recovering_after_an_error_keeps_the_store_usable(store: AnyStore) -> None:
    await store.recover(RuntimeError("a statement failed"))
    assert await store.get_job("j1") is None


# -- what the double adds -----------------------------------------------------------------


async def test_an_outage_fails_every_call_as_postgresql_down_does() -> None:
    store = InMemoryStore()
    with store.outage():
        with pytest.raises(DB_UNAVAILABLE):
            await store.get_job("j1")
        with pytest.raises(DB_UNAVAILABLE):
            await store.insert_dead([death("j1")])
    assert await store.insert_dead([death("j1")]) == 1


def test_every_port_method_has_a_contract_test() -> None:
    """A method added to a port needs a rule pinned here, or the double can drift."""
    here = Path(__file__).parent
    files = ("test_store.py", "test_unique_keys.py", "test_workflows.py")
    source = "".join((here / name).read_text() for name in files)
    ports = (WorkerStore, OutboxStore, AdminStore, UniqueJobStore, StepStore, WorkflowStore)
    methods = {name for port in ports for name in vars(port) if not name.startswith("_")}
    untested = sorted(m for m in methods if f"store.{m}(" not in source)
    assert untested == []
    steps = {name for name in vars(WorkflowTxn) if not name.startswith("_")}
    assert sorted(m for m in steps if f"txn.{m}(" not in source) == []
