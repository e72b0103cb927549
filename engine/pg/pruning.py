"""The SQL of a retention pass: counts and batched deletes of what is older than an age,
on one connection that holds the prune lock.

The policy (which ages, a dry run, the broker's retained copies) is
:mod:`engine.deadletters.retention`'s; this module only runs the statements, so that SQL
stays in the store wing.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from engine.pg.queries import Q

PRUNE_LOCK = 0x1A2A_0002  # advisory lock key held while pruning
BATCH = 5000  # rows per delete: no lock is held long
# What a pass can prune: the kind, its count query and its delete query.
QUERIES = {
    "jobs": ("count_finished_jobs", "prune_finished_jobs"),
    "workflows": ("count_finished_workflows", "prune_finished_workflows"),
    "attempts": ("count_attempts", "prune_attempts"),
    "workers": ("count_workers", "prune_workers"),
    "audit": ("count_audit", "prune_audit"),
    "dead_history": ("count_dead_history", "prune_dead_history"),
}


class Pruner:
    """Counts and deletes on the connection that holds the prune lock."""

    def __init__(self, conn: PoolConnectionProxy[asyncpg.Record]) -> None:
        self._conn = conn

    async def count(self, kind: str, before: datetime) -> int:
        """How many rows of ``kind`` a delete with ``before`` would remove."""
        return int(await self._conn.fetchval(Q[QUERIES[kind][0]], before))

    async def delete(self, kind: str, before: datetime) -> int:
        """Delete the rows of ``kind`` older than ``before``, ``BATCH`` at a time."""
        query = Q[QUERIES[kind][1]]
        total = 0
        while True:
            status = await self._conn.execute(query, before, BATCH)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < BATCH:
                return total
