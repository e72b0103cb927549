"""``lazarus workflows ...``: start, list, show, retry, suspend, resume, cancel, restart."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.admin.facade import Admin
from engine.admin.lifecycle import REQUESTED_BY_USER
from engine.admin.rows import WorkflowDetail, WorkflowStep, WorkflowSummary
from engine.cli.common import (
    EXIT_USAGE,
    fail,
    parse_json,
    print_json,
    reader,
    run_async,
    settings,
)
from engine.cli.text import console, id_column, inert, json_text, print_table, utc
from engine.message import MAX_ATTEMPTS
from engine.registry import load_modules
from engine.states import RequeueMode, WorkflowState

workflows_app = typer.Typer(
    help="Workflows: start, list, show, retry failed items, suspend, resume, cancel, restart."
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WorkflowIdArg = Annotated[str, typer.Argument(help="Workflow id.")]
ReasonOpt = Annotated[
    str | None, typer.Option(help=f"Why; the cause becomes '{REQUESTED_BY_USER}: REASON'.")
]


def progress_text(summary: WorkflowSummary) -> str:
    """``842/1000`` steps and items succeeded, and how many need a person."""
    text = f"{summary.done}/{summary.total}"
    stuck = sum(summary.progress.get(s, 0) for s in ("dead", "suspended", "cancelled"))
    return f"{text} ({stuck} failed)" if stuck else text


def show_summary(summary: WorkflowSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    fields: dict[str, Any] = {
        "workflow_id": summary.workflow_id,
        "type": summary.workflow_type,
        "unique_name": summary.unique_name,
        "generation": summary.generation,
        "state": summary.state,
        "progress": progress_text(summary),
        "cause": summary.cause,
        "stopped_by": summary.stopped_by,
        "created_at": summary.created_at,
        "updated_at": summary.updated_at,
        "finished_at": summary.finished_at,
    }
    for key, value in fields.items():
        if value is None:
            continue
        text = utc(value) if isinstance(value, datetime) else str(value)
        console.print(f"[bold]{key}[/bold]: {inert(text, lines=True)}", highlight=False)


def steps_table(
    steps: list[WorkflowStep], title: str, detail: WorkflowDetail, *, causes: bool = False
) -> None:
    last = "cause" if causes else "result / items"
    table = Table("step", "kind", "job type", "state", "waits on", last, title=title)
    for s in steps:
        if causes:
            text = inert(detail.causes.get(s.step, ""), limit=80)
        elif s.kind == "fan_out" and s.step in detail.fan_outs:
            items = detail.fan_outs[s.step]
            text = f"{items.get('succeeded', 0)}/{sum(items.values())} items"
        else:
            text = inert(json_text(s.result), limit=40) if s.state == "succeeded" else ""
        waits = s.state == "waiting" or (s.kind == "fan_out" and s.state != "succeeded")
        table.add_row(
            inert(s.step), s.kind, inert(s.job_type or ""), s.state,
            str(s.remaining) if waits else "", text,
        )  # fmt: skip
    print_table(table)


@workflows_app.command()
@run_async
async def start(
    workflow_type: Annotated[str, typer.Argument(help="A registered workflow's name.")],
    module: Annotated[
        list[str],
        typer.Option("--module", "-m", help="Module that registers it (repeatable)."),
    ],
    input: Annotated[str | None, typer.Option("--input", help="The input (JSON).")] = None,
    workflow_id: Annotated[str | None, typer.Option("--id", help="Its id (default: new).")] = None,
    unique_name: Annotated[
        str | None, typer.Option(help="Refuse a second one under this name while it is not over.")
    ] = None,
    if_absent: Annotated[
        bool, typer.Option("--if-absent", help="With --unique-name: answer with the holder.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a workflow that a module registers (engine.workflows.register_workflow)."""
    from engine.cli.main import importable_from_cwd

    importable_from_cwd()
    try:
        load_modules(module)
    except ImportError as exc:
        fail(str(exc), EXIT_USAGE)
    value = parse_json(input, "--input") if input is not None else None
    async with Admin(settings()) as admin:
        started = await admin.workflows.start(
            workflow_type,
            value,
            workflow_id=workflow_id,
            unique_name=unique_name,
            if_absent=if_absent,
        )
    if as_json:
        print_json(started)
        return
    verb = "started" if started.created else f"already there ({started.state})"
    typer.echo(f"workflow {started.workflow_id} {verb}")


@workflows_app.command("list")
@run_async
async def list_workflows(
    state: Annotated[
        WorkflowState | None, typer.Option(help="Only in this state.", case_sensitive=False)
    ] = None,
    workflow_type: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List workflows, newest first, with their progress."""
    async with reader() as admin:
        rows = await admin.workflows.list(state=state, workflow_type=workflow_type, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table(
        id_column("workflow id", (r.workflow_id for r in rows)),
        "type", "gen", "state", "progress", "cause", "created",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            inert(r.workflow_id),
            inert(r.workflow_type),
            str(r.generation),
            r.state,
            progress_text(r),
            inert(r.cause or "", limit=60),
            r.created_at.strftime("%F %T"),
        )
    print_table(table)


@workflows_app.command()
@run_async
async def show(workflow_id: WorkflowIdArg, as_json: JsonOpt = False) -> None:
    """A workflow: its state and progress, the steps and items that need a person first,
    then its steps."""
    async with reader() as admin:
        detail: WorkflowDetail = await admin.workflows.show(workflow_id)
    if as_json:
        print_json(detail)
        return
    show_summary(detail.summary, False)
    if detail.needs_person:
        steps_table(detail.needs_person, "need a person", detail, causes=True)
    steps_table(detail.steps, "steps", detail)


@workflows_app.command()
@run_async
async def retry(
    workflow_ids: Annotated[list[str], typer.Argument(help="Workflow ids.")],
    mode: Annotated[
        RequeueMode, typer.Option(help="restart: from the beginning; recover: from checkpoints.")
    ] = RequeueMode.RESTART,
    retries: Annotated[
        int | None, typer.Option(min=0, max=MAX_ATTEMPTS, help="New retry budget.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move back every dead or suspended step and item of these workflows."""
    async with Admin(settings()) as admin:
        total = await admin.workflows.retry(workflow_ids, mode=mode, retries=retries)
    if as_json:
        print_json({"total": total})
    else:
        typer.echo(f"{total} steps and items moved back")


@workflows_app.command()
@run_async
async def suspend(
    workflow_id: WorkflowIdArg, reason: ReasonOpt = None, as_json: JsonOpt = False
) -> None:
    """Hold a workflow: no step starts until it is resumed (running ones finish)."""
    async with Admin(settings()) as admin:
        show_summary(await admin.workflows.suspend(workflow_id, reason), as_json)


@workflows_app.command()
@run_async
async def resume(workflow_id: WorkflowIdArg, as_json: JsonOpt = False) -> None:
    """Go on with a suspended workflow from where it stopped."""
    async with Admin(settings()) as admin:
        show_summary(await admin.workflows.resume(workflow_id), as_json)


@workflows_app.command()
@run_async
async def cancel(
    workflow_id: WorkflowIdArg, reason: ReasonOpt = None, as_json: JsonOpt = False
) -> None:
    """Stop a workflow for good; its running steps are cancelled."""
    async with Admin(settings()) as admin:
        show_summary(await admin.workflows.cancel(workflow_id, reason), as_json)


@workflows_app.command()
@run_async
async def restart(
    workflow_id: WorkflowIdArg,
    from_step: Annotated[
        str | None, typer.Option("--from", help="Run this step and what follows it again.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a workflow again as a new generation, from the beginning or from a step."""
    async with Admin(settings()) as admin:
        show_summary(await admin.workflows.restart(workflow_id, from_step=from_step), as_json)
