"""A service that accepts connections and never answers: commands give up, workers stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.acceptance.conftest import Cli

OK, FAILED, UNAVAILABLE = 0, 1, 3
# Longer than any of these commands should take; reaching it means the command hung.
HUNG = 30.0


class SilentServer:
    """An asyncio TCP server on a free loopback port, in a thread of its own, that accepts
    every connection and never writes a byte."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.accepted.set()
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass  # read what the client says, answer nothing

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    server.start()
    yield server
    server.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def silent_rabbitmq(port: int) -> dict[str, str]:
    return {
        "LAZARUS_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/",
        "LAZARUS_CONNECT_TIMEOUT": "1",
    }


@pytest.mark.parametrize(
    "args",
    [
        ("enqueue", "greet", "{}"),
        ("queues", "list"),
        ("dead", "requeue", "--all"),
        ("jobs", "resume", "some-job"),
    ],
    ids=lambda args: " ".join(args),
)
def test_commands_give_up_on_a_silent_rabbitmq_in_one_line(
    cli: Cli, silent: SilentServer, args: tuple[str, ...]
) -> None:
    assert cli.run("migrate").returncode == OK
    result = cli.run(*args, timeout=HUNG, **silent_rabbitmq(silent.port))
    assert result.returncode == UNAVAILABLE, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"lazarus: RabbitMQ at 127.0.0.1:{silent.port} did not answer within 1 s "
        "(LAZARUS_CONNECT_TIMEOUT)"
    )


@pytest.mark.parametrize(
    "args", [("dead", "list"), ("jobs", "list"), ("migrate",)], ids=lambda a: " ".join(a)
)
def test_commands_give_up_on_a_silent_postgresql_in_one_line(
    cli: Cli, silent: SilentServer, args: tuple[str, ...]
) -> None:
    result = cli.run(
        *args,
        timeout=HUNG,
        LAZARUS_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{silent.port}/postgres",
        LAZARUS_CONNECT_TIMEOUT="1",
    )
    assert result.returncode == UNAVAILABLE, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"lazarus: PostgreSQL at 127.0.0.1:{silent.port} did not answer")


def test_check_names_each_silent_service(cli: Cli, silent: SilentServer) -> None:
    result = cli.run(
        "check",
        timeout=HUNG,
        LAZARUS_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{silent.port}/postgres",
        **silent_rabbitmq(silent.port),
    )
    assert result.returncode == UNAVAILABLE
    assert result.stdout.splitlines() == [
        f"rabbitmq: unreachable: RabbitMQ at 127.0.0.1:{silent.port} did not answer within "
        "1 s (LAZARUS_CONNECT_TIMEOUT)",
        f"postgresql: unreachable: PostgreSQL at 127.0.0.1:{silent.port} did not answer within "
        "1 s (LAZARUS_CONNECT_TIMEOUT)",
    ]


def test_reading_commands_work_while_rabbitmq_is_down(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    down = {"LAZARUS_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{closed_port()}/"}
    for args in [("dead", "list", "--json"), ("jobs", "list", "--json")]:
        result = cli.run(*args, **down)
        assert result.returncode == OK, (args, result.stderr)
        assert orjson.loads(result.stdout) == []
    for args in [("dead", "show", "no-such-job"), ("jobs", "show", "no-such-job")]:
        result = cli.run(*args, **down)
        assert result.returncode == FAILED, (args, result.stderr)
        assert "no-such-job" in result.stderr and "RabbitMQ" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(
    "command", [("worker", "handlers.examples"), ("recorder",)], ids=["worker", "recorder"]
)
def test_a_process_still_connecting_stops_on_a_signal(
    cli: Cli, silent: SilentServer, tmp_path: Path, command: tuple[str, ...], signum: int
) -> None:
    assert cli.run("migrate").returncode == OK
    # Far longer than the test: only the signal can end the wait.
    waiting = Cli(cli.env | silent_rabbitmq(silent.port) | {"LAZARUS_CONNECT_TIMEOUT": "600"})
    log = tmp_path / "process.log"
    process = waiting.spawn(log, *command)
    try:
        assert silent.accepted.wait(timeout=HUNG), log.read_text()
        process.send_signal(signum)
        assert process.wait(timeout=HUNG) == OK, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "stopped while starting" in log.read_text()
