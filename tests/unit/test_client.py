"""Which queue a job goes to when the caller does not say."""

from __future__ import annotations

from engine import JobContext, handler
from engine.client import queue_for


@handler("client.routed", queue="emails")
async def routed(ctx: JobContext) -> None:
    pass


def test_the_handlers_queue_is_the_default() -> None:
    assert queue_for("client.routed", None) == "emails"


def test_a_given_queue_wins() -> None:
    assert queue_for("client.routed", "urgent") == "urgent"


def test_an_unknown_type_goes_to_default() -> None:
    assert queue_for("client.nobody_knows_this", None) == "default"
