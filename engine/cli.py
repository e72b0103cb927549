"""The ``lazarus`` command: parses arguments, calls the engine, prints. It decides nothing.

Exit codes (the same for every command)::

    0  done
    1  the operation failed (unknown id, job in another state, publish not confirmed)
    2  bad usage or configuration (a bad argument, a bad LAZARUS_* value)
    3  a service is unavailable (RabbitMQ or PostgreSQL down, schema not migrated)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import orjson
import typer

from engine.errors import ConfigError, LazarusError, ServiceUnavailable
from engine.settings import Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3

app = typer.Typer(
    name="lazarus",
    help="Lazarus: asyncio jobs on RabbitMQ, with dead letters in PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
T = TypeVar("T")


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"lazarus: {message}", err=True)
    raise typer.Exit(code)


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
            return asyncio.run(func(*args, **kwargs))
        except ServiceUnavailable as exc:
            fail(str(exc), EXIT_UNAVAILABLE)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        except (LazarusError, ValueError) as exc:
            fail(str(exc), EXIT_FAILED)

    return wrapper


def parse_json(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc}", EXIT_USAGE)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


@app.command()
@run_async
async def check() -> None:
    """Tell whether RabbitMQ and PostgreSQL answer (exit 0 if both do, 3 if not)."""
    from engine.health import check_services

    report = await check_services(settings())
    for service, problem in report.items():
        typer.echo(f"{service}: {'ok' if problem is None else problem}")
    if any(problem is not None for problem in report.values()):
        raise typer.Exit(EXIT_UNAVAILABLE)


@app.command()
@run_async
async def enqueue(
    job_type: Annotated[str, typer.Argument(help="Job type, as registered by a handler.")],
    payload: Annotated[str, typer.Argument(help="Payload as JSON.")] = "null",
    queue: Annotated[str, typer.Option(help="Queue to publish to.")] = "default",
    max_retries: Annotated[int | None, typer.Option(min=0, help="Broker-level retries.")] = None,
    delay: Annotated[float, typer.Option(min=0, help="Seconds before the job may run.")] = 0,
    job_id: Annotated[str | None, typer.Option(help="Job id (default: a new UUID).")] = None,
) -> None:
    """Publish one job; print its id once RabbitMQ has confirmed it."""
    from engine.client import Client

    body = parse_json(payload, "PAYLOAD")
    async with Client(settings()) as client:
        typer.echo(
            await client.enqueue(
                job_type, body, queue=queue, max_retries=max_retries, delay=delay, job_id=job_id
            )
        )


@app.command()
def worker(
    modules: Annotated[list[str], typer.Argument(help="Modules whose handlers to register.")],
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Queue(s) to consume.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=10_000, help="Jobs at once per queue.")
    ] = 32,
) -> None:
    """Run a worker until SIGTERM or SIGINT; in-flight jobs get a grace period."""
    from engine.message import check_queue_name
    from engine.registry import load_modules

    config = settings()
    try:
        load_modules(modules)
        queues = [check_queue_name(q) for q in (queue or ["default"])]
    except (ImportError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    configure_logging()
    run_async(_run_worker)(config, queues, concurrency)


async def _run_worker(config: Settings, queues: list[str], concurrency: int) -> None:
    from engine.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = Worker(config, queues, concurrency=concurrency)
    await runner.start()
    await stop.wait()
    logging.getLogger("lazarus.worker").info("stopping: no new jobs, finishing in-flight ones")
    await runner.stop()


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)


def main() -> None:
    app()
