"""``lazarus worker --processes N``: N worker processes from one command, a dead one
started again, SIGTERM passed on to all of them, and bad values refused."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.acceptance.conftest import Cli, wait_for_output

pytestmark = pytest.mark.timeout(120)
OK, USAGE = 0, 2


def consuming(log: Path) -> int:
    return log.read_text(errors="replace").count("consuming default")


def wait_until(predicate: object, what: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_two_processes_run_jobs_come_back_after_a_kill_and_stop_on_sigterm(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli.run("migrate").returncode == OK
    log = tmp_path / "worker.log"
    supervisor = cli.spawn(log, "worker", "handlers.examples", "--processes", "2")
    try:
        wait_for_output(supervisor, log, "supervising 2 worker processes")
        wait_until(lambda: consuming(log) == 2, "two workers consuming")
        children = psutil.Process(supervisor.pid).children()
        assert len(children) == 2
        children[0].kill()
        wait_until(lambda: "restarting in" in log.read_text(), "the restart")
        wait_until(lambda: consuming(log) == 3, "a new worker consuming")
        alive = psutil.Process(supervisor.pid).children()
        assert len(alive) == 2 and children[0].pid not in {c.pid for c in alive}
        for n in range(6):
            assert cli.run("enqueue", "greet", json.dumps({"name": f"n{n}"})).returncode == OK

        def all_ran() -> bool:
            listed = cli.run("jobs", "list", "--state", "succeeded", "--json")
            return listed.returncode == OK and len(json.loads(listed.stdout)) == 6

        wait_until(all_ran, "the six jobs to succeed")
        workers = json.loads(cli.run("jobs", "list", "--json").stdout)
        assert len({w["job_id"] for w in workers}) == 6
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == OK
        assert not any(c.is_running() and c.status() != "zombie" for c in alive)
        assert "stopping 2 worker processes" in log.read_text()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(timeout=30)


def test_bad_process_counts_are_usage_errors(cli: Cli) -> None:
    for value in ("0", "-1", "65", "many"):
        result = cli.run("worker", "handlers.examples", "--processes", value)
        assert result.returncode == USAGE, (value, result.stderr)
    high = cli.run("worker", "handlers.examples", "--processes", "4", "--metrics-port", "65534")
    assert high.returncode == USAGE and "65535" in high.stderr


def test_killing_the_supervisor_kills_its_workers(cli: Cli, tmp_path: Path) -> None:
    """kill -9 of the command a person started leaves no worker behind holding jobs: each
    dies with it, as a single worker killed that way does, and its jobs go back."""
    assert cli.run("migrate").returncode == OK
    log = tmp_path / "worker.log"
    supervisor = cli.spawn(log, "worker", "handlers.examples", "--processes", "2")
    try:
        wait_for_output(supervisor, log, "supervising 2 worker processes")
        wait_until(lambda: len(psutil.Process(supervisor.pid).children()) == 2, "two workers")
        children = psutil.Process(supervisor.pid).children()
        supervisor.kill()
        supervisor.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert alive == [] and len(gone) == 2
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(timeout=30)
