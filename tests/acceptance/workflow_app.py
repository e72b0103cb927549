"""A workflow an application registers, for the CLI and HTTP tests: one fan-out over the
input's files, one fan-in. A file named "bad..." fails on its first generation only, so a
retry of the workflow's failed items lets it go on."""

from __future__ import annotations

from typing import Any

from engine import JobContext, RetryPolicy, handler
from engine.errors import Permanent
from engine.workflows import INPUT, FanOut, Step, Workflow, register_workflow


@handler("appwf.load", policy=RetryPolicy(attempts=1, max_retries=0))
async def load(ctx: JobContext) -> Any:
    if str(ctx.payload).startswith("bad") and ctx.message.generation == 0:
        raise Permanent(f"cannot read {ctx.payload}")
    return len(str(ctx.payload))


@handler("appwf.total")
async def total(ctx: JobContext) -> Any:
    return sum([v async for _, v in ctx.item_results("load")])


IMPORT = register_workflow(
    Workflow(
        "appwf.import",
        [
            FanOut("load", "appwf.load", items_from=INPUT),
            Step("total", "appwf.total", after=("load",)),
        ],
    )
)
