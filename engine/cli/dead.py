"""``lazarus dead ...``: list, show, requeue, delete and purge dead letters."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.admin.facade import Admin
from engine.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    MAX_ID,
    fail,
    fail_all,
    print_json,
    reader,
    run_async,
    settings,
)
from engine.cli.text import console, err_console, id_column, inert, json_text, print_table
from engine.filters import DeadFilter, age_ago, bulk_selection, dead_filter, stored_error_type
from engine.message import MAX_ATTEMPTS
from engine.states import DeadStatus, RequeueMode

dead_app = typer.Typer(help="Inspect dead letters and move them back to their queues.")

TypeOpt = Annotated[str | None, typer.Option("--type", help="Only this job type.")]
QueueOpt = Annotated[str | None, typer.Option("--queue", help="Only this queue.")]


ErrorTypeOpt = Annotated[
    str | None,
    typer.Option(
        "--error-type",
        callback=stored_error_type,
        help="Only this error type: its class name (TimeoutError, Gone) or dotted name.",
    ),
]
ErrorOpt = Annotated[
    str | None, typer.Option("--error", help="Only errors whose message contains this text.")
]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only deaths within this age, e.g. 2h, 30d.")
]
BeforeOpt = Annotated[
    datetime | None, typer.Option("--before", help="Only deaths before this time (ISO 8601).")
]
AfterOpt = Annotated[
    datetime | None, typer.Option("--after", help="Only deaths after this time (ISO 8601).")
]
PayloadOpt = Annotated[
    str | None,
    typer.Option(
        "--payload",
        metavar="<json>",
        help="Only dead letters whose payload contains this JSON: keys with these values, "
        """arrays with these elements (PostgreSQL's @>), e.g. '{"customer": 42}'.""",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def age_option(flag: str, text: str) -> timedelta:
    """:func:`~engine.filters.age_ago` for an option; a bad age is a usage error."""
    try:
        return age_ago(flag, text)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def build_filter(
    ids: list[str] | None,
    job_type: str | None,
    queue: str | None,
    error_type: str | None,
    error: str | None,
    since: str | None,
    after: datetime | None,
    before: datetime | None,
    payload: str | None = None,
    status: DeadStatus | None = DeadStatus.DEAD,
) -> DeadFilter:
    try:
        return dead_filter(
            ids=ids or (),
            job_type=job_type,
            queue=queue,
            error_type=error_type,
            error_text=error,
            since=since,
            after=after,
            before=before,
            status=status,
            payload=payload,
            since_name="--since",
            payload_name="--payload",
        )
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def selection(ids: list[str] | None, all_: bool, selector: DeadFilter) -> DeadFilter:
    """A bulk command needs ids, a filter, or an explicit --all: never everything by accident."""
    try:
        return bulk_selection(ids or (), replace(selector, ids=()), all_)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def progress_bar(total: int) -> tuple[Progress, Any]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = bar.add_task("moving", total=total)
    return bar, lambda done: bar.update(task, completed=done)


@dead_app.command("list")
@run_async
async def list_(
    job_type: TypeOpt = None,
    queue: QueueOpt = None,
    error_type: ErrorTypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    payload: PayloadOpt = None,
    status: Annotated[
        str, typer.Option(help="dead, requeue_pending, requeued, deleted, or all.")
    ] = "dead",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per page.")] = 50,
    before_id: Annotated[
        int | None,
        typer.Option(
            "--before-id", min=1, max=MAX_ID, help="Next page: the last id of the previous."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters, newest first."""
    try:
        wanted = None if status == "all" else DeadStatus(status)
    except ValueError:
        fail(
            f"--status {status!r}: use dead, requeue_pending, requeued, deleted or all", EXIT_USAGE
        )
    selector = build_filter(
        None, job_type, queue, error_type, error, since, after, before, payload, wanted
    )
    async with reader() as admin:
        rows = await admin.list_dead(selector, limit=limit, before_id=before_id)
    if as_json:
        print_json(rows)
        return
    ids = id_column("job id", (r.job_id for r in rows))
    table = Table("id", ids, "gen", "type", "queue", "error", "died", "status")
    for r in rows:
        table.add_row(
            str(r.id),
            inert(r.job_id),
            str(r.generation),
            inert(r.job_type or "-"),
            inert(r.queue),
            inert(f"{r.error_type}: {r.error_message}", limit=80),
            r.died_at.strftime("%F %T"),
            inert(r.status),
        )
    print_table(table)
    if len(rows) == limit:
        console.print(f"more: --before-id {rows[-1].id}")


@dead_app.command()
@run_async
async def show(
    job_id: Annotated[str, typer.Argument(help="Job id.")], as_json: JsonOpt = False
) -> None:
    """Show every death of a job with its traceback, and what was done about it."""
    async with reader() as admin:
        history = await admin.show(job_id)
    if as_json:
        print_json(history)
        return
    for death in history:
        console.rule()
        # Not the rule's title: a rule cuts a long job id to the terminal's width.
        console.print(
            f"[bold]job {inert(death.job_id)}[/bold] generation {death.generation}: "
            f"{inert(death.status)}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            f"type {inert(death.job_type or '-')}  queue {inert(death.queue)}  "
            f"worker {inert(death.worker)}"
        )
        console.print(
            f"died {death.died_at:%F %T %Z} after {death.attempts} attempts "
            f"(max retries {default_if_none(death.max_retries)}): {inert(death.reason)}"
        )
        console.print(
            f"[bold]{inert(death.error_type)}[/bold]: {inert(death.error_message, lines=True)}"
        )
        if death.traceback:
            console.print(inert(death.traceback, lines=True), highlight=False)
        console.print(f"payload {inert(json_text(death.payload))}", highlight=False)
        if death.checkpoint is not None:
            console.print(f"checkpoint {inert(json_text(death.checkpoint))}", highlight=False)
        if death.status_changed_at:
            console.print(
                f"{inert(death.status)} at {death.status_changed_at:%F %T} "
                f"by {inert(death.status_changed_by)}"
            )


def default_if_none(value: object) -> str:
    """A job's own value, or what None means for it: its handler's policy decides."""
    return "the handler's" if value is None else str(value)


@dead_app.command()
@run_async
async def requeue(
    ids: Annotated[list[str] | None, typer.Argument(help="Job ids to move back.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
    job_type: TypeOpt = None,
    queue: QueueOpt = None,
    error_type: ErrorTypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    payload: PayloadOpt = None,
    retries: Annotated[
        int | None,
        typer.Option(min=0, max=MAX_ATTEMPTS, help="New retry budget (default: the job's own)."),
    ] = None,
    mode: Annotated[
        RequeueMode, typer.Option(help="restart: from the beginning; recover: from checkpoint.")
    ] = RequeueMode.RESTART,
    rate: Annotated[float | None, typer.Option(min=0.1, help="At most this many jobs/s.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would move.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move dead jobs back to their queues as a new generation with a fresh attempt count."""
    selector = selection(
        ids,
        all_,
        build_filter(ids, job_type, queue, error_type, error, since, after, before, payload),
    )
    async with Admin(settings()) as admin:
        if dry_run:
            report(as_json, "would requeue", await admin.count(selector))
            return
        total = await admin.count(selector)
        bar, update = progress_bar(total)
        with bar:
            moved = await admin.requeue(
                selector, retries=retries, mode=mode, rate=rate, progress=update
            )
        report(as_json, "requeued", moved)
        if ids:
            await explain_missing(admin, ids, moved)


@dead_app.command()
@run_async
async def delete(
    ids: Annotated[list[str] | None, typer.Argument(help="Job ids to delete.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
    job_type: TypeOpt = None,
    queue: QueueOpt = None,
    error_type: ErrorTypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    payload: PayloadOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mark dead letters deleted (kept as history until purged)."""
    selector = selection(
        ids,
        all_,
        build_filter(ids, job_type, queue, error_type, error, since, after, before, payload),
    )
    async with Admin(settings()) as admin:
        if dry_run:
            report(as_json, "would delete", await admin.count(selector))
            return
        deleted = await admin.delete(selector)
        report(as_json, "deleted", deleted)
        if ids:
            await explain_missing(admin, ids, deleted)


@dead_app.command()
@run_async
async def purge(
    older_than: Annotated[str, typer.Option(help="Age, e.g. 30d, 12h.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove dead letters (and their history) that died longer ago than --older-than."""
    age = age_option("--older-than", older_than)
    async with Admin(settings()) as admin:
        report(as_json, "purged", await admin.purge(age))


def report(as_json: bool, verb: str, count: int) -> None:
    if as_json:
        print_json({"total": count})
    else:
        typer.echo(f"{verb} {count}")


async def explain_missing(admin: Admin, ids: list[str], done: int) -> None:
    """Name every given id that did not move, with why; exit 1 if any."""
    if done == len(set(ids)):
        return
    problems = await admin.unmoved(ids)
    if problems:
        fail_all(problems, EXIT_FAILED)
