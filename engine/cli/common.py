"""Helpers every ``lazarus`` command shares: settings, exit codes, errors, JSON output.

Exit codes (the same for every command)::

    0  done
    1  the operation failed (unknown id, job in another state, publish not confirmed)
    2  bad usage or configuration (a bad argument, a bad LAZARUS_* value, a port to serve
       on that is taken)
    3  a service is unavailable (RabbitMQ or PostgreSQL down, schema not migrated)

With ``--json`` a failure is one JSON line on stderr, ``{"error": "...", "exit": N}``,
with the same exit code: stdout holds only results, so ``lazarus ... --json | jq`` never
reads an error as data.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, ParamSpec, TypeVar

import orjson
import typer

from engine import loop as event_loop
from engine.admin.facade import Admin
from engine.cli.text import plain
from engine.errors import ConfigError, LazarusError, ServiceUnavailable
from engine.message import check_queue_name, check_type_name
from engine.pg.errors import DB_REJECTED
from engine.settings import Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
# Bounds of integer options, from their PostgreSQL columns: a larger number is a usage
# error from typer, not a traceback from asyncpg.
MAX_ID = 2**63 - 1  # bigint: dead-letter ids

P = ParamSpec("P")
T = TypeVar("T")


class Output:
    """How this run reports: set once by ``main`` from the command line."""

    json = False


def report_error(message: str, code: int) -> None:
    """One line on stderr: ``lazarus: ...`` (made inert), or with --json the JSON error."""
    if Output.json:
        line = orjson.dumps({"error": message, "exit": code}).decode()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    else:
        typer.echo(f"lazarus: {plain(message)}", err=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Report one error (a server's or a message's text in it made inert) and exit."""
    report_error(message, code)
    raise typer.Exit(code)


def fail_all(messages: list[str], code: int = EXIT_FAILED) -> NoReturn:
    """Report several errors (one line each; one JSON error joining them) and exit."""
    if Output.json:
        fail("; ".join(messages), code)
    for message in messages:
        typer.echo(f"lazarus: {plain(message)}", err=True)
    raise typer.Exit(code)


def reader() -> Admin:
    """An Admin on PostgreSQL only, for the commands that only read: they keep working
    while RabbitMQ is down or does not answer."""
    return Admin(settings(), broker=False)


def settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def run_async(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run a coroutine command, turning engine errors into one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            choice = load_settings().event_loop
            return event_loop.run(func(*args, **kwargs), choice)
        except ServiceUnavailable as exc:
            fail(str(exc), EXIT_UNAVAILABLE)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        except DB_REJECTED as exc:  # a value PostgreSQL cannot take: a NUL, a huge number
            fail(f"PostgreSQL refused a value: {exc}", EXIT_USAGE)
        except (LazarusError, ValueError) as exc:
            fail(str(exc), EXIT_FAILED)

    return wrapper


def name_callback(check: Callable[[str], str]) -> Callable[[str | None], str | None]:
    """A Typer callback: a name ``check`` refuses is a usage error (exit 2) naming it."""

    def callback(name: str | None) -> str | None:
        if name is None:
            return None
        try:
            return check(name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return callback


queue_name = name_callback(check_queue_name)
type_name = name_callback(check_type_name)


def parse_json(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc}", EXIT_USAGE)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def stop_on_signal() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def configure_logging() -> None:
    from engine.logs import configure_logging as configure

    configure()
