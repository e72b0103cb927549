"""A workflow: import N files, one work item per file, then one report over all of them.

A file whose name starts with "broken" fails on its first run (its first generation),
so the workflow waits, FAILED, until the file is moved back; then it goes on.

    lazarus worker handlers.import_files
    lazarus workflows start files.import -m handlers.import_files \\
        --input '["a.csv", "broken.csv", "c.csv"]'
"""

from __future__ import annotations

from engine import JobContext, Permanent, RetryPolicy, handler
from engine.workflows import INPUT, FanOut, Step, Workflow, register_workflow


@handler("files.load", policy=RetryPolicy(attempts=1, max_retries=0))
async def load_file(ctx: JobContext) -> int:
    """Load one file; its result is the number of rows loaded."""
    name = str(ctx.payload)
    if name.startswith("broken") and ctx.message.generation == 0:
        raise Permanent(f"{name}: unreadable header")
    return 10 * len(name)


@handler("files.report")
async def report(ctx: JobContext) -> dict[str, int]:
    """Runs once every file is loaded: their results, a page at a time."""
    rows = [n async for _, n in ctx.item_results("load")]
    return {"files": len(rows), "rows": sum(rows)}


IMPORT_FILES = register_workflow(
    Workflow(
        "files.import",
        [
            FanOut("load", "files.load", items_from=INPUT),  # one item per file
            Step("report", "files.report", after=("load",)),  # once all have succeeded
        ],
    )
)
