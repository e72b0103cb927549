"""``lazarus audit``: who did what to jobs, queues and dead letters, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from engine.cli.common import print_json, reader, run_async
from engine.cli.text import inert, print_table


def when(moment: datetime | None) -> str:
    """An absolute UTC time: entries are read by people in other time zones, and later."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%F %T")


def described(selector: Any) -> str:
    """What an entry acted on, as compact JSON (what the API shows)."""
    return orjson.dumps(selector, option=orjson.OPT_SORT_KEYS, default=str).decode()


@run_async
async def audit(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Entries to show.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The audit log, newest first: requeues, deletes, purges, pauses, stops and resumes."""
    async with reader() as admin:
        rows = await admin.audit_log(limit)
    if as_json:
        print_json(rows)
        return
    table = Table("at (UTC)", "actor", "action", "selector", "count", "state", "finished (UTC)")
    for r in rows:
        table.add_row(
            when(r.at),
            inert(r.actor),
            inert(r.action),
            inert(described(r.selector)),
            str(r.count),
            inert(r.state),
            when(r.finished_at),
        )
    print_table(table)
