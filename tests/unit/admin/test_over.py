"""Admin and Lifecycle over ports they do not own: the in-memory store, no services."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.admin.facade import Admin
from engine.admin.lifecycle import Lifecycle
from engine.errors import LazarusError
from engine.filters import DeadFilter
from engine.memory.store import InMemoryStore
from engine.pg.port import NeedsPostgres
from engine.pg.store import DeadRecord
from engine.settings import Settings
from engine.states import DeadStatus, JobState


class UnownedBroker:
    """A broker Admin must neither connect nor close."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def connect(self) -> None:
        self.calls.append("connect")

    async def close(self) -> None:
        self.calls.append("close")


def dead(job_id: str) -> DeadRecord:
    now = datetime.now(UTC)
    return DeadRecord(
        job_id, 0, "mail.send", "default", None, b"{}", {}, 1, 0, "permanent error",
        "ValueError", "bad address", "", None, None, now, "w1",
    )  # fmt: skip


def over(store: InMemoryStore, broker: UnownedBroker) -> Admin[InMemoryStore]:
    settings = Settings(namespace="ns")  # type: ignore[call-arg]
    return Admin.over(store, broker, settings=settings, actor="ann")  # type: ignore[arg-type]


async def test_admin_over_ports_neither_opens_nor_closes_them() -> None:
    store, broker = InMemoryStore(), UnownedBroker()
    await store.insert_dead([dead("j1"), dead("j2")])
    async with over(store, broker) as admin:
        assert await admin.count(DeadFilter()) == 2
        await admin.delete_one("j1")
        assert [d.status for d in await admin.show("j1")] == [DeadStatus.DELETED]
        assert (await admin.audit_log(1))[0].actor == "ann"
    assert broker.calls == []
    assert await store.count_dead(DeadFilter()) == 1  # still open: its owner closes it


async def test_dashboard_queries_say_they_need_postgresql() -> None:
    admin = over(InMemoryStore(), UnownedBroker())
    with pytest.raises(NeedsPostgres, match="needs PostgreSQL"):
        await admin.groups(DeadFilter())
    with pytest.raises(NeedsPostgres, match="needs PostgreSQL"):
        await admin.jobs.activity()
    # Refused on purpose, as every Lazarus error: the CLI and the API print its message.
    assert issubclass(NeedsPostgres, LazarusError)


async def test_lifecycle_suspends_a_job_in_memory() -> None:
    store = InMemoryStore()
    now = datetime.now(UTC)
    row: tuple[Any, ...] = (
        "j1", 0, 1, 0, "mail.send", "default", "running", 0, 2, {"to": "x"}, False,
        None, None, None, None, "w1", now, now, None, None,
    )  # fmt: skip
    await store.report([row])
    stopped = await Lifecycle(over(store, UnownedBroker())).suspend("j1", "deploy")
    assert (stopped.state, stopped.stopped_by) == (JobState.SUSPENDED, "ann")
    assert await Lifecycle(over(store, UnownedBroker())).counts() == {"suspended": 1}
