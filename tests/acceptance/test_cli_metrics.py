"""``lazarus worker --metrics-port``: where /metrics listens, and a port already taken."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import psutil

from tests.acceptance.conftest import Cli, wait_for_output

USAGE = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_taken_metrics_port_is_one_line_naming_it_and_exit_two(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli.run("worker", "handlers.examples", "--no-record", "--metrics-port", str(port))
    assert result.returncode == USAGE, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"lazarus: cannot serve metrics on 127.0.0.1:{port}: "), line


def test_metrics_listen_on_loopback_only_by_default(cli: Cli, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    process = cli.spawn(
        log, "worker", "handlers.examples", "--no-record", "--metrics-port", str(port)
    )
    try:
        wait_for_output(process, log, "consuming")
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(process.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", port)}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert b"lazarus_" in answer.read()
    finally:
        process.terminate()
        process.wait(timeout=30)
