"""Handlers for worker subprocesses in test_faults: each notes its progress in a file.

The payload names the file; every line is ``<event> <job id> <pid>``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from engine import JobContext, handler


def note(ctx: JobContext, event: str) -> None:
    with Path(ctx.payload["file"]).open("a") as log:
        log.write(f"{event} {ctx.job_id} {os.getpid()}\n")


def events(path: Path, event: str, job_id: str | None = None) -> list[str]:
    """Lines of ``path`` for ``event`` (of ``job_id`` if given)."""
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [line[1] for line in lines if line[0] == event and (job_id is None or line[1] == job_id)]


@handler("faults.sleep")
async def sleep(ctx: JobContext) -> None:
    """Sleep ``first_run_seconds`` the first time this job runs, ``seconds`` after that."""
    path = Path(ctx.payload["file"])
    first = not events(path, "start", ctx.job_id)
    note(ctx, "start")
    await asyncio.sleep(ctx.payload["first_run_seconds"] if first else ctx.payload["seconds"])
    note(ctx, "done")


@handler("faults.crash")
async def crash(ctx: JobContext) -> None:
    """Kill the worker process, as a segfault or the OOM killer would."""
    note(ctx, "start")
    os._exit(1)
