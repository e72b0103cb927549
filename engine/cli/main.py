"""The ``lazarus`` command: parses arguments, calls the engine, prints. It decides nothing.

Exit codes are listed in :mod:`engine.cli.common` and the README.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from importlib.metadata import version
from typing import Annotated, Any

import typer

from engine.cli.admin import admin
from engine.cli.audit import audit
from engine.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Output,
    configure_logging,
    fail,
    parse_json,
    print_json,
    queue_name,
    report_error,
    run_async,
    settings,
    stop_on_signal,
)
from engine.cli.dead import dead_app
from engine.cli.job_types import types_app
from engine.cli.jobs import jobs_app, queues_app
from engine.cli.prune import prune
from engine.cli.text import plain
from engine.cli.workflows import workflows_app
from engine.message import MAX_ATTEMPTS
from engine.settings import Settings

app = typer.Typer(
    name="lazarus",
    help=(
        "Lazarus: asyncio jobs on RabbitMQ, with dead letters in PostgreSQL.\n\n"
        "Exit codes: 0 done, 1 the operation failed, 2 bad usage or configuration, 3 a"
        " service is unavailable. With --json, results go to stdout and a failure is one"
        ' JSON line on stderr: {"error": "...", "exit": N}.'
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dead_app, name="dead")
app.add_typer(jobs_app, name="jobs")
app.add_typer(queues_app, name="queues")
app.add_typer(types_app, name="types")
app.add_typer(workflows_app, name="workflows")
app.command()(admin)
app.command()(audit)
app.command()(prune)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
MAX_PROCESSES = 64  # worker processes one command supervises


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lazarus {version('lazarus')}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Options of ``lazarus`` itself (the help is the app's)."""


@app.command()
@run_async
async def check(as_json: JsonOpt = False) -> None:
    """Tell whether RabbitMQ and PostgreSQL answer (exit 0 if both do, 3 if not)."""
    from engine.health import check_services

    report = await check_services(settings())
    problems = [problem for problem in report.values() if problem is not None]
    if as_json:
        print_json({"status": "unavailable" if problems else "ok", **report})
    else:
        for service, problem in report.items():
            typer.echo(f"{service}: {'ok' if problem is None else plain(problem)}")
    if problems:
        if as_json:
            fail("; ".join(problems), EXIT_UNAVAILABLE)
        raise typer.Exit(EXIT_UNAVAILABLE)


def job_id_option(job_id: str | None) -> str | None:
    """A job id the wire format refuses is a usage error (exit 2) saying why."""
    from engine.message import job_id_problem

    problem = None if job_id is None else job_id_problem(job_id)
    if problem is not None:
        raise typer.BadParameter(f"job id {plain(job_id)!r} {problem}")
    return job_id


def unique_key_option(key: str | None) -> str | None:
    """A unique key out of its bounds is a usage error (exit 2) saying why."""
    from engine.client import unique_key_problem

    problem = None if key is None else unique_key_problem(key)
    if problem is not None:
        raise typer.BadParameter(f"unique key {plain(key)!r} {problem}")
    return key


def run_at(text: str | None) -> datetime | None:
    """``--at`` as an aware time; a time without its offset is a usage error (exit 2)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"--at {text[:64]!r}: use an ISO 8601 time such as 2030-01-01T06:00:00Z", EXIT_USAGE)
    if when.tzinfo is None:
        fail(f"--at {text[:64]!r}: give its offset (Z, +01:00): whose 06:00 is it?", EXIT_USAGE)
    return when


async def registry_routes(config: Settings) -> dict[str, str]:
    """Job type -> queue from the workers' registry; empty (jobs go to default or to the
    handler's queue known here) when PostgreSQL cannot be read: enqueue needs RabbitMQ only."""
    from engine.pg.store import Store
    from engine.pg.workers import known_routes

    quick = config.model_copy(update={"connect_timeout": min(2.0, config.connect_timeout)})
    store = Store(quick, min_size=0, max_size=1)
    try:
        await store.connect()
        return await known_routes(store)
    except Exception as exc:  # any failure: the producer still publishes
        logging.getLogger("lazarus.cli").debug("workers' registry unreadable: %r", exc)
        return {}
    finally:
        await store.close()


@app.command()
@run_async
async def enqueue(
    job_type: Annotated[str, typer.Argument(help="Job type, as registered by a handler.")],
    payload: Annotated[str, typer.Argument(help="Payload as JSON.")] = "null",
    queue: Annotated[
        str | None,
        typer.Option(
            callback=queue_name,
            help="Queue to publish to (default: the queue its handler declares, as the "
            "workers' registry says, else default).",
        ),
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(min=0, max=MAX_ATTEMPTS, help="Broker-level retries.")
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option(min=0, max=10 * 365 * 86400, help="Seconds before the job may run."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            help="Run no earlier than this time, ISO 8601 with its offset "
            "(2030-01-01T06:00:00Z); a time past runs it now."
        ),
    ] = None,
    job_id: Annotated[
        str | None, typer.Option(callback=job_id_option, help="Job id (default: a new UUID).")
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            callback=unique_key_option,
            help="Enqueue only if no job under this key is pending, running, retrying, "
            "suspended or dead; else print that job (needs PostgreSQL).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish one job; print its id once RabbitMQ has confirmed it. With --unique-key,
    print whether it was created or found, with its id and state."""
    from engine.client import Client

    body = parse_json(payload, "PAYLOAD")
    when = run_at(at)
    if when is not None and delay is not None:
        fail("give --delay or --at, not both", EXIT_USAGE)
    config = settings()
    routes = await registry_routes(config) if queue is None else {}
    if unique_key is not None:
        await enqueue_if_absent(
            config, routes, unique_key, as_json, job_type, body,
            queue=queue, max_retries=max_retries, delay=delay, at=when, job_id=job_id,
        )  # fmt: skip
        return
    async with Client(config, routes=routes) as client:
        new_id = await client.enqueue(
            job_type, body, queue=queue, max_retries=max_retries, delay=delay, at=when,
            job_id=job_id,
        )  # fmt: skip
    if as_json:
        print_json({"job_id": new_id})
    else:
        typer.echo(new_id)


async def enqueue_if_absent(
    config: Settings,
    routes: dict[str, str],
    key: str,
    as_json: bool,
    job_type: str,
    body: object,
    **options: Any,
) -> None:
    """``enqueue --unique-key``: created or found, exit 0 either way."""
    from engine.client import Client
    from engine.pg.store import Store

    store = Store(config, min_size=1, max_size=2)
    await store.connect()
    try:
        async with Client(config, routes=routes, store=store) as client:
            answer = await client.enqueue_if_absent(job_type, body, key=key, **options)
    finally:
        await store.close()
    if as_json:
        print_json(
            {"job_id": answer.job_id, "created": answer.created, "state": answer.state.value}
        )
    elif answer.created:
        typer.echo(f"created {answer.job_id}")
    else:
        typer.echo(f"found {plain(answer.job_id)} ({answer.state.value})")


@app.command()
def worker(
    modules: Annotated[list[str], typer.Argument(help="Modules whose handlers to register.")],
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Queue(s) to consume (default: the handlers' queues)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=10_000, help="Jobs at once per queue.")
    ] = 32,
    record: Annotated[
        bool,
        typer.Option(
            help="Track job states, record dead letters into PostgreSQL and relay requeues."
        ),
    ] = True,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve Prometheus /metrics on this port.")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address of /metrics; anything but loopback exposes it.")
    ] = "127.0.0.1",
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_PROCESSES,
            envvar="LAZARUS_WORKER_PROCESSES",
            help="Worker processes to run and keep running (default: one per core).",
        ),
    ] = None,
) -> None:
    """Run a worker until SIGTERM or SIGINT; in-flight jobs get a grace period.

    With several processes (the default: one per core) this process supervises them:
    it restarts one that dies and passes SIGTERM or SIGINT on to all of them. Process i
    serves its metrics on --metrics-port + i.
    """
    from engine.message import check_queue_name
    from engine.registry import load_modules, registered
    from engine.worker.runner import run_worker
    from engine.worker.supervisor import INDEX_VARIABLE, Supervisor, child_argv

    config = settings()
    importable_from_cwd()
    try:
        load_modules(modules)
        declared = sorted({h.queue for h in registered().values()}) or ["default"]
        queues = [check_queue_name(q) for q in (queue or declared)]
    except (ImportError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    configure_logging()
    count = processes or os.cpu_count() or 1
    if count > 1:
        if metrics_port is not None and metrics_port + count - 1 > 65535:
            fail(f"--metrics-port {metrics_port} + {count} processes passes 65535", EXIT_USAGE)
        supervisor = Supervisor(
            child_argv(sys.argv[1:]), count, config.shutdown_grace, dict(os.environ)
        )
        from engine import loop

        raise typer.Exit(loop.run(supervisor.run(), config.event_loop))
    if metrics_port is not None:
        index = int(os.environ.get(INDEX_VARIABLE, "0"))
        serve_metrics(metrics_host, metrics_port + index)

    async def serve() -> None:
        await run_worker(config, queues, concurrency, stop_on_signal(), record=record)

    run_async(serve)()


def importable_from_cwd() -> None:
    """Put the current directory first on the import path, as Celery, Dramatiq and arq do:
    ``lazarus worker myapp.jobs`` run from the project imports the project's ``myapp``.
    An installed console script starts with its own bin directory there instead."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def serve_metrics(host: str, port: int) -> None:
    """Serve /metrics from a thread; an address taken or not ours is a usage error (exit 2)."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        fail(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE)


@app.command()
def recorder() -> None:
    """Record dead letters into PostgreSQL and relay requeues, without running jobs."""
    from engine.worker.runner import run_recorder

    config = settings()
    configure_logging()

    async def serve() -> None:
        await run_recorder(config, stop_on_signal())

    run_async(serve)()


@app.command()
@run_async
async def migrate(as_json: JsonOpt = False) -> None:
    """Create or update the namespace schema in PostgreSQL (idempotent)."""
    from engine.pg.store import Store

    store = Store(settings())
    await store.connect(require_schema=False)
    try:
        applied = await store.migrate()
    finally:
        await store.close()
    if as_json:
        print_json({"applied": applied})
    else:
        typer.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@app.command()
def demo(as_json: JsonOpt = False) -> None:
    """Migrate, run a worker on the examples, publish jobs that succeed, retry and die."""
    from engine.cli.demo import run_demo

    config = settings()
    configure_logging()
    result = run_async(run_demo)(config)
    if as_json:
        print_json({"jobs": result.jobs, "dead": result.dead})
        return
    typer.echo("\nWhat happened to each job (`lazarus jobs list` shows them too):")
    for job in result.jobs:
        ended = str(job["state"] or "not seen")
        if job["attempt"] is not None:
            ended += f", broker attempt {job['attempt']}"
        typer.echo(
            f"  {plain(job['job_id'])}  {plain(job['job_type']):14} {ended:28} {job['expected']}"
        )
    typer.echo(f"\n{len(result.dead)} jobs died; see them with `lazarus dead list`:")
    for row in result.dead:
        typer.echo(
            f"  {plain(row.job_id)}  {plain(row.job_type or '-'):14} "
            f"{plain(row.reason)}: {plain(row.error_message, limit=70)}"
        )
    typer.echo(
        "\nNext: lazarus jobs list; lazarus dead show ID; lazarus dead requeue ID"
        " (with a worker running: lazarus worker handlers.examples)."
    )


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for JSON (``--json`` before any ``--``)."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in options


def main() -> None:
    """The console script. With --json, usage errors are JSON too (see :func:`fail`)."""
    argv = sys.argv[1:]
    if not wants_json(argv):
        app()
        return
    Output.json = True
    try:
        code = app(args=argv, prog_name="lazarus", standalone_mode=False)
    except Exception as exc:
        # A usage error from the parser (an unknown option, a value out of range): Click's
        # ClickException, duck-typed because Typer vendors its own copy of Click.
        message = getattr(exc, "format_message", None)
        if not callable(message):
            raise
        code = int(getattr(exc, "exit_code", EXIT_USAGE))
        report_error(str(message()), code)
    except typer.Abort:
        code = EXIT_FAILED
        report_error("aborted", code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":  # how a supervised worker process is started
    main()
