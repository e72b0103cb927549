"""``lazarus prune``: one retention pass now, as every recording worker runs one hourly."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.admin.facade import Admin
from engine.cli.common import EXIT_FAILED, fail, print_json, run_async, settings


@run_async
async def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would go (not the copies).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Remove what is past its LAZARUS_RETAIN_* age: finished jobs and their attempts, audit
    entries, requeued or deleted dead letters, and retained dead-letter copies."""
    from engine.deadletters.retention import prune as prune_once

    config = settings()
    async with Admin(config, broker=not dry_run) as admin:
        done = await prune_once(
            config, admin.store, None if dry_run else admin.broker, dry_run=dry_run
        )
    if as_json:
        print_json(done.as_dict() | {"dry_run": dry_run})
    if done.busy:
        fail("another process is pruning now; try again later", EXIT_FAILED)
    if as_json:
        return
    verb = "would remove" if dry_run else "removed"
    copies = (
        "not counted (a dry run cannot read them)"
        if done.dead_copies is None
        else (str(done.dead_copies))
    )
    typer.echo(
        f"{verb}: {done.jobs} finished jobs, {done.attempts} of their attempts, "
        f"{done.workflows} finished workflows, "
        f"{done.audit} audit entries, "
        f"{done.dead_history} requeued or deleted dead letters; retained copies: {copies}"
    )
