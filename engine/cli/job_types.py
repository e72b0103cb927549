"""``lazarus types ...``: pause and resume job types."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from engine.admin.facade import Admin
from engine.admin.lifecycle import REQUESTED_BY_USER
from engine.cli.common import EXIT_FAILED, fail, print_json, run_async, settings, type_name
from engine.cli.text import inert, print_table

types_app = typer.Typer(help="Job types: pause, resume, and what is parked.")


def type_names(names: list[str] | None) -> list[str] | None:
    for name in names or []:
        type_name(name)
    return names


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TypeArg = Annotated[str, typer.Argument(callback=type_name, help="Job type.")]


@types_app.command("list")
@run_async
async def list_types(
    names: Annotated[
        list[str] | None,
        typer.Argument(callback=type_names, help="Job types (default: all seen or paused)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pause and parked jobs of each job type."""
    async with Admin(settings()) as admin:
        rows = await admin.jobs.list_types(names)
    if as_json:
        print_json(rows)
        return
    table = Table("job type", "paused", "parked", "by", "reason")
    for r in rows:
        table.add_row(
            inert(r.job_type),
            "yes" if r.paused else "no",
            str(r.parked),
            inert(r.paused_by or ""),
            inert(r.reason or ""),
        )
    print_table(table)


@types_app.command()
@run_async
async def pause(
    job_type: TypeArg,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = REQUESTED_BY_USER,
    as_json: JsonOpt = False,
) -> None:
    """Stop workers running jobs of a type: they park them in RabbitMQ until it is resumed."""
    async with Admin(settings()) as admin:
        changed = await admin.jobs.pause_type(job_type, reason)
    if as_json:
        print_json({"job_type": job_type, "paused": True, "changed": changed})
        return
    typer.echo(
        f"job type {job_type} paused" if changed else f"job type {job_type} was already paused"
    )


@types_app.command()
@run_async
async def resume(job_type: TypeArg, as_json: JsonOpt = False) -> None:
    """Let workers run a paused job type again; its parked jobs go back to their queues."""
    async with Admin(settings()) as admin:
        changed, moved = await admin.jobs.resume_type(job_type)
    if not changed and not moved:
        fail(f"job type {job_type!r} is not paused", EXIT_FAILED)
    if as_json:
        print_json({"job_type": job_type, "paused": False, "changed": changed, "moved": moved})
        return
    state = "resumed" if changed else "was not paused"
    typer.echo(f"job type {job_type} {state}; {moved} parked jobs moved back")
