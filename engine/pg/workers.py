"""The workers' registry: each recording worker says who it is and what it handles.

A worker registers when it starts (host, pid, version, the queues it consumes, the job
types it knows and their queues), refreshes ``last_seen`` every ``HEARTBEAT`` seconds,
and marks itself stopped when it stops cleanly; a killed worker simply goes quiet, and
counts as gone once it has not been seen for ``ALIVE_WITHIN``. People see the registry
in ``GET /api/workers`` and the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata

from engine.message import now_utc
from engine.pg.errors import DB_ERROR
from engine.pg.port import WorkerStore
from engine.registry import registered

log = logging.getLogger("lazarus.workers")

HEARTBEAT = 10.0  # seconds between two refreshes of last_seen
ALIVE_WITHIN = 3 * HEARTBEAT  # seen this recently and not stopped: alive


def engine_version() -> str:
    try:
        return metadata.version("lazarus")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker process tells the registry about itself."""

    worker_id: str
    queues: tuple[str, ...]
    job_types: dict[str, str] = field(default_factory=dict)  # type -> its handler's queue
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    version: str = field(default_factory=engine_version)

    @classmethod
    def of_this_process(cls, worker_id: str, queues: list[str]) -> WorkerInfo:
        types = {name: h.queue for name, h in sorted(registered().items())}
        return cls(worker_id=worker_id, queues=tuple(queues), job_types=types)


async def keep_registered(
    store: WorkerStore, info: WorkerInfo, interval: float = HEARTBEAT
) -> None:
    """Register, then refresh every ``interval`` until cancelled; then mark it stopped.

    PostgreSQL being away only delays the registration: the worker runs regardless.
    """
    registered_yet = False
    try:
        while True:
            try:
                if registered_yet:
                    await store.worker_seen(info.worker_id)
                else:
                    await store.register_worker(info)
                    registered_yet = True
            except DB_ERROR as exc:
                log.warning("worker registry not updated (%r); trying again", exc)
            await asyncio.sleep(interval)
    finally:
        if registered_yet:
            with contextlib.suppress(*DB_ERROR):
                await asyncio.shield(store.worker_stopped(info.worker_id))


async def known_routes(
    store: WorkerStore, seen_within: timedelta = timedelta(days=1)
) -> dict[str, str]:
    """Job type -> queue, as the workers seen lately declare them (the running ones win):
    how a producer without the handlers routes a job to its handler's queue."""
    rows = await store.known_routes(now_utc() - seen_within)
    return {r["job_type"]: r["queue"] for r in rows}
