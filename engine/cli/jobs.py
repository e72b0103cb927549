"""``lazarus jobs ...`` and ``lazarus queues ...``: job states and queue pauses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.admin.facade import Admin
from engine.admin.lifecycle import REQUESTED_BY_USER
from engine.admin.rows import Attempt, Job
from engine.cli.common import (
    EXIT_FAILED,
    fail,
    parse_json,
    print_json,
    queue_name,
    reader,
    run_async,
    settings,
)
from engine.cli.text import console, id_column, inert, json_text, print_table, utc
from engine.message import MAX_ATTEMPTS, MAX_GENERATION
from engine.states import JobState, RequeueMode

jobs_app = typer.Typer(help="Job states: list, show, suspend, resume, cancel.")
queues_app = typer.Typer(help="Queues: depth, consumers, pause and resume.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobIdArg = Annotated[str, typer.Argument(help="Job id.")]
GenerationOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=MAX_GENERATION,
        help="Fail unless the job is still in this generation (the one you saw).",
    ),
]
QueueArg = Annotated[str, typer.Argument(callback=queue_name, help="Queue name.")]


def queue_names(names: list[str] | None) -> list[str] | None:
    for name in names or []:
        queue_name(name)
    return names


# What ``jobs show`` tells a person, in this order. The row's bookkeeping (the order of
# transitions, redelivery counts, a worker's report token) stays out: it means nothing
# to the reader and would change under their eyes.
SHOWN_FIELDS = (
    "job_id",
    "generation",
    "job_type",
    "queue",
    "state",
    "attempt",
    "max_retries",
    "created_at",
    "started_at",
    "updated_at",
    "worker",
    "cause",
    "stopped_by",
    "error_type",
    "error_message",
    "traceback",
    "suspend_on_failure",
    "payload",
    "checkpoint",
)
JSON_FIELDS = {"payload", "checkpoint"}


def shown(job: Job) -> dict[str, Any]:
    """The fields of a job a person reads, in :data:`SHOWN_FIELDS` order."""
    return {key: getattr(job, key) for key in SHOWN_FIELDS}


def as_text(key: str, value: Any) -> str:
    """A value as a person reads it: JSON for payloads and checkpoints, times in UTC."""
    if key in JSON_FIELDS:
        return json_text(value)
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def show_row(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        if value is not None and value != "":
            text = inert(as_text(key, value), lines=True)
            console.print(f"[bold]{key}[/bold]: {text}", highlight=False)


@jobs_app.command("list")
@run_async
async def list_jobs(
    state: Annotated[
        JobState | None, typer.Option(help="Only jobs in this state.", case_sensitive=False)
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, most recently changed first."""
    async with reader() as admin:
        rows = await admin.jobs.list_jobs(state=state, job_type=job_type, queue=queue, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table(
        id_column("job id", (r.job_id for r in rows)),
        "gen",
        "type",
        "queue",
        "state",
        "attempt",
        "cause / error",
        "updated",
    )
    for r in rows:
        why = r.cause or (f"{r.error_type}: {r.error_message}" if r.error_type else "")
        table.add_row(
            inert(r.job_id),
            str(r.generation),
            inert(r.job_type),
            inert(r.queue),
            inert(r.state),
            str(r.attempt),
            inert(why, limit=60),
            r.updated_at.strftime("%F %T"),
        )
    print_table(table)


@jobs_app.command()
@run_async
async def show(job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """State, attempts, times, last error, cause and checkpoint of a job, then every failed
    attempt recorded with its error and time (with --json, an "attempts" list)."""
    async with reader() as admin:
        job = await admin.jobs.show(job_id)
        attempts = await admin.jobs.attempts(job_id)
    if as_json:
        print_json(shown(job) | {"attempts": attempts})
        return
    show_row(shown(job), as_json)
    if attempts:
        show_attempts(attempts)


def show_attempts(attempts: list[Attempt]) -> None:
    """The failed attempts, oldest first: generation, attempt, outcome, error, time (UTC)."""
    table = Table("gen", "attempt", "outcome", "error type", "message", "at",
                  title="attempts")  # fmt: skip
    for a in attempts:
        table.add_row(
            str(a.generation),
            str(a.attempt),
            inert(a.outcome),
            inert(a.error_type),
            inert(a.error_message, limit=200),
            utc(a.at),
        )
    print_table(table)


def show_stopped(job: Job, as_json: bool) -> None:
    """What a person's suspend or cancel left: the job, its state and the recorded cause."""
    show_row({"job_id": job.job_id, "state": job.state, "cause": job.cause}, as_json)


@jobs_app.command()
@run_async
async def suspend(
    job_id: JobIdArg,
    reason: Annotated[
        str | None, typer.Option(help=f"Why; the cause becomes '{REQUESTED_BY_USER}: REASON'.")
    ] = None,
    generation: GenerationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop a pending, running or retrying job, keeping its checkpoint."""
    async with Admin(settings()) as admin:
        row = await admin.jobs.suspend(job_id, reason, generation=generation)
    show_stopped(row, as_json)


@jobs_app.command()
@run_async
async def cancel(
    job_id: JobIdArg, generation: GenerationOpt = None, as_json: JsonOpt = False
) -> None:
    """Stop a job for good."""
    async with Admin(settings()) as admin:
        row = await admin.jobs.cancel(job_id, generation=generation)
    show_stopped(row, as_json)


@jobs_app.command()
@run_async
async def cause(job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """Why a suspended job stopped."""
    async with reader() as admin:
        found = await admin.jobs.cause(job_id)
    if as_json:
        print_json(found)
        return
    by = f"by {inert(found.stopped_by)}, " if found.stopped_by else ""
    console.print(f"{inert(found.cause, lines=True)} ({by}since {found.since:%F %T})")
    if found.traceback:
        console.print(inert(found.traceback, lines=True), highlight=False)


@jobs_app.command()
@run_async
async def resume(
    job_id: JobIdArg,
    mode: Annotated[
        RequeueMode, typer.Option(help="recover: from the checkpoint; restart: from scratch.")
    ] = RequeueMode.RECOVER,
    retries: Annotated[
        int | None, typer.Option(min=0, max=MAX_ATTEMPTS, help="New retry budget.")
    ] = None,
    payload: Annotated[
        str | None, typer.Option(help="Replace the payload (JSON) before resuming.")
    ] = None,
    generation: GenerationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a suspended job back to its queue."""
    new_payload = parse_json(payload, "--payload") if payload is not None else None
    async with Admin(settings()) as admin:
        row = await admin.jobs.resume(
            job_id,
            mode=mode,
            retries=retries,
            payload=new_payload,
            replace_payload=payload is not None,
            generation=generation,
        )
    show_row(
        {"job_id": row.job_id, "state": row.state, "generation": row.generation},
        as_json,
    )


@queues_app.command("list")
@run_async
async def list_queues(
    names: Annotated[
        list[str] | None,
        typer.Argument(callback=queue_names, help="Queues (default: all seen)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Depth, consumers and pause of each queue."""
    async with Admin(settings()) as admin:
        rows = await admin.jobs.list_queues(names)
    if as_json:
        print_json(rows)
        return
    table = Table("queue", "messages", "consumers", "jobs/min", "paused", "by", "reason")
    for r in rows:
        table.add_row(
            inert(r.queue),
            str(r.messages) if r.exists else "(missing)",
            str(r.consumers),
            str(r.per_minute),
            "yes" if r.paused else "no",
            inert(r.paused_by or ""),
            inert(r.reason or ""),
        )
    print_table(table)


@queues_app.command()
@run_async
async def pause(
    queue: QueueArg,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = REQUESTED_BY_USER,
    as_json: JsonOpt = False,
) -> None:
    """Stop workers taking jobs from a queue; messages stay in RabbitMQ."""
    async with Admin(settings()) as admin:
        changed = await admin.jobs.pause_queue(queue, reason)
    if as_json:
        print_json({"queue": queue, "paused": True, "changed": changed})
    else:
        typer.echo(f"queue {queue} paused" if changed else f"queue {queue} was already paused")


@queues_app.command("resume")
@run_async
async def resume_queue(queue: QueueArg, as_json: JsonOpt = False) -> None:
    """Let workers take jobs from a paused queue again."""
    async with Admin(settings()) as admin:
        changed = await admin.jobs.resume_queue(queue)
    if not changed:
        fail(f"queue {queue!r} is not paused", EXIT_FAILED)
    if as_json:
        print_json({"queue": queue, "paused": False, "changed": True})
    else:
        typer.echo(f"queue {queue} resumed")
