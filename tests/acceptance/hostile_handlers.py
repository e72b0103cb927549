"""Handlers for CLI tests whose jobs fail with whatever text the payload gives.

Run them with ``PYTHONPATH=<repo> lazarus worker tests.acceptance.hostile_handlers``.
"""

from __future__ import annotations

from engine import JobContext, Permanent, handler


@handler("hostile.fail")
async def fail(ctx: JobContext) -> None:
    """Dies at once, its error message the payload's ``error``, verbatim."""
    raise Permanent(ctx.payload["error"])
