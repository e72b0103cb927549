"""The handlers of a newer release: it adds ``rolling.new``."""

from engine import JobContext, handler
from tests.acceptance.rolling_old import old

assert old


@handler("rolling.new")
async def new(ctx: JobContext) -> None:
    """A job type only the new release knows."""
