"""Logging: JSON lines for machines, plain text on a terminal, job context on every line.

The worker binds the job id, type, attempt and queue to the asyncio task handling a
delivery (structlog contextvars), so every line logged while a job runs, by Lazarus
or by the handler through stdlib ``logging``, carries them.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

QUIET = ("aio_pika", "aiormq", "asyncio")


def configure_logging(
    level: int = logging.INFO, *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Route stdlib logging through structlog; ``json`` defaults to "not a terminal"."""
    out = stream or sys.stderr
    as_json = not out.isatty() if json is None else json
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
