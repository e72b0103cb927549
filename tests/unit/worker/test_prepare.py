"""How a worker reads a delivery: its job id and its queue when the body names neither."""

from __future__ import annotations

import orjson

from engine import JobContext, handler
from engine.message import JobMessage
from engine.outcome import Outcome
from engine.worker.executor import Executor

WORKER = Executor("unit-worker")


@handler("prepare.noop")
async def noop(ctx: JobContext) -> None:
    return None


def job_of(
    body: dict[str, object], message_id: str | None = None, queue: str = "emails"
) -> JobMessage:
    prepared = WORKER.prepare(orjson.dumps(body), message_id, queue)
    assert not isinstance(prepared, Outcome), prepared
    return prepared[1]


def test_identical_bodies_without_any_id_are_two_jobs() -> None:
    body = {"type": "prepare.noop", "payload": {"same": True}}
    assert job_of(body).id != job_of(body).id


def test_the_amqp_message_id_names_a_body_without_an_id() -> None:
    assert job_of({"type": "prepare.noop"}, message_id="amqp-7").id == "amqp-7"
    assert job_of({"type": "prepare.noop", "id": "body-7"}, message_id="amqp-7").id == "body-7"


def test_a_body_without_a_queue_belongs_to_the_queue_it_came_from() -> None:
    assert job_of({"type": "prepare.noop"}, queue="emails").queue == "emails"
    assert job_of({"type": "prepare.noop", "queue": "reports"}, queue="emails").queue == "reports"
