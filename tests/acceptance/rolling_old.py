"""The handlers of an older release: it does not know ``rolling.new`` yet."""

from engine import JobContext, handler


@handler("rolling.old")
async def old(ctx: JobContext) -> None:
    """A job type both releases know."""
