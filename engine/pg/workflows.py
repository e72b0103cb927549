"""Workflow queries: the PostgreSQL side of :class:`engine.pg.port.WorkflowTxn`.

Mixed into :class:`engine.pg.store.Store`; the rules that call these live in
engine.workflows.progress, once, for this store and the in-memory one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from engine.pg.jsonb import json_column
from engine.pg.port import Launch, NewStep, NewWorkflow, OutboxKind, Staged, WorkflowIdTaken
from engine.pg.queries import Q
from engine.states import WorkflowState


class PgWorkflowTxn:
    """One transaction on workflows, on one connection."""

    def __init__(self, conn: PoolConnectionProxy[asyncpg.Record], stage: Any) -> None:
        self.conn = conn
        self._stage = stage  # JobStateQueries.stage_outbox

    async def insert_workflow(
        self, workflow: NewWorkflow, steps: Sequence[NewStep], edges: Sequence[tuple[str, str]]
    ) -> bool:
        inserted = await self.conn.fetchval(
            Q["insert_workflow"],
            workflow.workflow_id,
            workflow.workflow_type,
            workflow.unique_name,
            workflow.input,
            workflow.queue,
            len(steps),
        )
        if inserted is None:
            if await self.conn.fetchval(Q["workflow_exists"], workflow.workflow_id):
                raise WorkflowIdTaken(f"workflow id {workflow.workflow_id[:64]!r} is taken")
            return False
        await self.conn.execute(
            Q["insert_workflow_steps"],
            workflow.workflow_id,
            [s.step for s in steps],
            [s.kind for s in steps],
            [s.job_type for s in steps],
            [s.queue for s in steps],
            [s.items_from for s in steps],
            [s.remaining for s in steps],
        )
        await self.conn.execute(
            Q["insert_workflow_edges"],
            workflow.workflow_id,
            [d for d, _ in edges],
            [s for _, s in edges],
        )
        return True

    async def lock(self, workflow_id: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(Q["lock_workflow"], workflow_id)

    async def finish_step(
        self, workflow_id: str, step: str, job_id: str, result: Any
    ) -> asyncpg.Record | None:
        return await self.conn.fetchrow(Q["finish_step"], workflow_id, step, job_id, result)

    async def finish_fan_out(self, workflow_id: str, step: str) -> None:
        await self.conn.execute(Q["finish_fan_out"], workflow_id, step)

    async def fail_step(self, workflow_id: str, step: str, cause: str) -> None:
        await self.conn.execute(Q["fail_step"], workflow_id, step, cause)

    async def count_down(self, workflow_id: str, steps: Sequence[str]) -> list[asyncpg.Record]:
        if not steps:
            return []
        rows = await self.conn.fetch(Q["count_down"], workflow_id, list(steps))
        return [r for r in rows if r["remaining"] == 0]

    async def dependents(self, workflow_id: str, step: str) -> list[str]:
        return [r["step"] for r in await self.conn.fetch(Q["dependents"], workflow_id, step)]

    async def ready(self, workflow_id: str) -> list[asyncpg.Record]:
        return list(await self.conn.fetch(Q["ready_steps"], workflow_id))

    async def result(self, workflow_id: str, step: str) -> Any:
        row = await self.conn.fetchrow(Q["step_result"], workflow_id, step)
        return None if row is None else row["result"]

    async def add_items(
        self, workflow_id: str, fan_out: Any, generation: int, items: Sequence[Any]
    ) -> None:
        await self.conn.execute(
            Q["add_items"],
            workflow_id,
            fan_out["step"],
            fan_out["job_type"],
            fan_out["queue"],
            generation,
            json_column(items),
        )

    async def launch(self, workflow_id: str, launches: Sequence[Launch]) -> None:
        if not launches:
            return
        await self.conn.execute(
            Q["launch_steps"],
            workflow_id,
            [x.step for x in launches],
            [x.job_id for x in launches],
            [x.job_type for x in launches],
            [x.queue for x in launches],
            json_column(x.payload for x in launches),
        )
        await self._stage(
            self.conn, [Staged(OutboxKind.STEP, x.job_id, x.queue, x.body) for x in launches]
        )

    async def top_level_done(self, workflow_id: str) -> int:
        left = await self.conn.fetchval(Q["top_level_done"], workflow_id)
        return int(left)

    async def set_state(
        self,
        workflow_id: str,
        state: WorkflowState,
        cause: str | None = None,
        actor: str | None = None,
    ) -> None:
        await self.conn.execute(Q["set_workflow_state"], workflow_id, state.value, cause, actor)

    async def top_steps(self, workflow_id: str) -> list[asyncpg.Record]:
        return list(await self.conn.fetch(Q["top_steps"], workflow_id))

    async def edges(self, workflow_id: str) -> list[tuple[str, str]]:
        rows = await self.conn.fetch(Q["workflow_all_edges"], workflow_id)
        return [(r["depends_on"], r["step"]) for r in rows]

    async def step_jobs(self, workflow_id: str, states: Sequence[str]) -> list[asyncpg.Record]:
        return list(await self.conn.fetch(Q["step_jobs"], workflow_id, list(states)))

    async def reset(self, workflow_id: str, steps: Sequence[str], generation: int) -> None:
        await self.conn.execute(Q["reset_steps"], workflow_id, list(steps), generation)
        await self.conn.execute(Q["recount_steps"], workflow_id, list(steps), generation)


class WorkflowQueries(ABC):
    """Transactions and reads on ``workflows``, ``workflow_steps`` and ``workflow_edges``."""

    @property
    @abstractmethod
    def pool(self) -> asyncpg.Pool:
        """The connection pool of the store these queries are mixed into."""

    @abstractmethod
    async def stage_outbox(
        self, conn: PoolConnectionProxy[asyncpg.Record], staged: Sequence[Staged]
    ) -> None:
        """Write publishes to the outbox inside the caller's transaction."""

    @asynccontextmanager
    async def workflow_txn(self) -> AsyncIterator[PgWorkflowTxn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PgWorkflowTxn(conn, self.stage_outbox)

    async def step_result(self, workflow_id: str, step: str) -> tuple[bool, Any]:
        row = await self.pool.fetchrow(Q["step_result"], workflow_id, step)
        if row is None:
            return False, None
        return bool(row["done"]), row["result"]

    async def item_results(
        self, workflow_id: str, fan_out: str, after: int, limit: int
    ) -> list[tuple[int, Any]]:
        rows = await self.pool.fetch(Q["item_results"], workflow_id, fan_out, after, limit)
        return [(r["item"], r["result"]) for r in rows]

    async def unique_holder(self, unique_name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(Q["unique_holder"], unique_name)

    async def get_workflow(self, workflow_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(Q["get_workflow"], workflow_id)

    async def workflow_steps(
        self,
        workflow_id: str,
        *,
        after: str = "",
        limit: int = 1000,
        top_level: bool = False,
        states: Sequence[str] | None = None,
    ) -> list[asyncpg.Record]:
        wanted = None if states is None else list(states)
        return list(
            await self.pool.fetch(Q["workflow_steps"], workflow_id, after, limit, top_level, wanted)
        )

    async def list_workflows(
        self,
        *,
        state: str | None = None,
        workflow_type: str | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[asyncpg.Record]:
        at, last = before if before is not None else (None, None)
        return list(
            await self.pool.fetch(Q["list_workflows"], state, workflow_type, limit, at, last)
        )

    async def fan_out_progress(self, workflow_id: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for r in await self.pool.fetch(Q["fan_out_progress"], workflow_id):
            counts.setdefault(r["parent"], {})[r["state"]] = int(r["n"])
        return counts

    async def progress_of(self, workflow_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for r in await self.pool.fetch(Q["progress_of"], list(workflow_ids)):
            counts.setdefault(r["workflow_id"], {})[r["state"]] = int(r["n"])
        return counts

    async def workflow_progress(self, workflow_id: str) -> dict[str, int]:
        rows = await self.pool.fetch(Q["workflow_progress"], workflow_id)
        return {r["state"]: int(r["n"]) for r in rows}
