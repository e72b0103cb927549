"""The commands compose/docker-compose.yml runs, run here against the local services with
the same arguments and variables (no Docker engine on these machines), and its health
checks run against them: migrate exits 0, the worker and the admin become healthy."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import LAZARUS, Cli
from tests.unit.test_compose import LAZARUS as SERVICES
from tests.unit.test_compose import example_env, interpolate

# Where compose reaches a service by name, these tests reach the local one.
LOCAL = {"LAZARUS_AMQP_URL", "LAZARUS_DATABASE_URL", "LAZARUS_NAMESPACE", "LAZARUS_QUEUE_TYPE"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(cli: Cli, name: str) -> dict[str, str]:
    """The service's variables as compose sets them, the addresses of the local services."""
    env = dict(cli.env)
    for variable, value in SERVICES[name].get("environment", {}).items():
        if variable not in LOCAL:
            env[variable] = str(interpolate(value, example_env()))
    return env


def command(name: str, ports: dict[str, str]) -> list[str]:
    """The service's command with its listening ports moved to free ones (the same moves
    apply to its health check): compose's ports are taken on a shared machine."""
    return [ports.get(str(part), str(part)) for part in SERVICES[name]["command"]]


def healthy(name: str, ports: dict[str, str], timeout: float = 30) -> None:
    test: list[Any] = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python", test
    probe = [str(part) for part in test[2:]]
    for old, new in ports.items():
        probe = [part.replace(f":{old}/", f":{new}/") for part in probe]
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            [sys.executable, *probe], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode == 0:
            return
        assert time.monotonic() < deadline, f"{name} never healthy: {result.stderr[-500:]}"
        time.sleep(0.5)


def test_migrate_runs_as_compose_runs_it(cli: Cli) -> None:
    result = subprocess.run(
        [LAZARUS, *command("migrate", {})[1:]],
        env=service_env(cli, "migrate"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["worker", "admin"])
def test_service_becomes_healthy_as_compose_checks_it(cli: Cli, tmp_path: Path, name: str) -> None:
    assert cli.run("migrate").returncode == 0
    ports = {"9100": str(free_port()), "8080": str(free_port())}
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [LAZARUS, *command(name, ports)[1:]],
            env=service_env(cli, name),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        healthy(name, ports)
        assert process.poll() is None, log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=40)
